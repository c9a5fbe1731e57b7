import { mkdtemp, rm, appendFile, readFile, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstructifyError } from './errors.js';
import type { Fragment, ImageGroup } from './types.js';

/**
 * Groups fragments by image with memory bounded by `memoryBudget` bytes.
 *
 * Fragments are held in memory until their estimated size passes the budget;
 * then every group is appended to one of `partitions` spill files, chosen by
 * a hash of the image's ref, and memory is cleared. At the end each partition
 * is read back and grouped on its own, so memory is about budget + one
 * partition.
 *
 * Output order is the same whether or not anything spilled: by partition,
 * then by ref. So a run with a tiny budget writes byte-identical shards.
 */
export interface JoinOptions {
  memoryBudget: number;
  /** Parent folder for the spill folder (default: the OS temp folder). */
  tmpDir?: string;
  partitions?: number;
}

export interface JoinStats {
  fragments: number;
  spills: number;
  spilledBytes: number;
  peakHeldBytes: number;
}

export const DEFAULT_PARTITIONS = 256;

/** FNV-1a over UTF-16 code units: fast and stable across runs and machines. */
export function hashRef(ref: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < ref.length; i++) {
    h ^= ref.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A rough size in bytes of a fragment held in memory: enough to keep the
 * budget honest without serialising every fragment to measure it.
 */
export function estimateFragmentBytes(f: Fragment): number {
  let n = 400;
  for (const c of f.captions) n += 40 + 2 * c.length;
  for (const b of f.boxes) {
    n += 300 + 2 * (b.label?.length ?? 0);
    for (const a of b.attributes) n += 40 + 2 * a.length;
    for (const r of b.relations) n += 40 + 2 * r.length;
    const m = b.mask;
    if (m) {
      n += 100;
      // One-byte strings: about a byte a character.
      if (m.polygons) n += 24 + m.polygons.length;
      if (m.rle) n += 24 + m.rle.length;
    }
  }
  for (const q of f.qa) n += 120 + 2 * ((q.question?.length ?? 0) + (q.answer?.length ?? 0)) + q.answers.reduce((s, a) => s + 40 + 2 * a.length, 0);
  for (const r of f.regions) n += 120 + 2 * r.text.length;
  return n;
}

export class FragmentJoin {
  readonly stats: JoinStats = { fragments: 0, spills: 0, spilledBytes: 0, peakHeldBytes: 0 };
  private groups = new Map<string, Fragment[]>();
  private held = 0;
  private spillDir: string | null = null;
  /** The spill being written, if any: spills never overlap (they share files and the folder). */
  private spilling: Promise<void> | null = null;
  private readonly budget: number;
  private readonly partitions: number;
  private readonly tmpParent: string;

  constructor(opts: JoinOptions) {
    if (!(opts.memoryBudget > 0)) throw new InstructifyError('E_OPTION', `memory budget must be a positive number of bytes, got ${opts.memoryBudget}`);
    const p = opts.partitions ?? DEFAULT_PARTITIONS;
    if (!Number.isInteger(p) || p < 1 || p > 4096) throw new InstructifyError('E_OPTION', `partitions must be an integer from 1 to 4096, got ${p}`);
    this.budget = opts.memoryBudget;
    this.partitions = p;
    this.tmpParent = opts.tmpDir ?? os.tmpdir();
  }

  /** Add one fragment; resolves once any spill it caused is written (backpressure). */
  add(f: Fragment): Promise<void> | undefined {
    this.stats.fragments++;
    let list = this.groups.get(f.ref);
    if (!list) {
      list = [];
      this.groups.set(f.ref, list);
    }
    list.push(f);
    this.held += estimateFragmentBytes(f);
    if (this.held > this.stats.peakHeldBytes) this.stats.peakHeldBytes = this.held;
    if (this.held > this.budget && this.spilling === null) {
      this.spilling = this.spillWhileOver().finally(() => {
        this.spilling = null;
      });
    }
    return this.spilling ?? undefined;
  }

  /** Spill until under budget: adds made while a spill is written are caught by the next round. */
  private async spillWhileOver(): Promise<void> {
    do await this.spill();
    while (this.held > this.budget);
  }

  private partitionOf(ref: string): number {
    return hashRef(ref) % this.partitions;
  }

  private partitionFile(p: number): string {
    return path.join(this.spillDir!, `part-${String(p).padStart(4, '0')}.ndjson`);
  }

  private async spill(): Promise<void> {
    if (this.spillDir === null) this.spillDir = await mkdtemp(path.join(this.tmpParent, 'instructify-join-'));
    const byPartition: Fragment[][][] = Array.from({ length: this.partitions }, () => []);
    for (const [ref, list] of this.groups) byPartition[this.partitionOf(ref)]!.push(list);
    this.groups = new Map();
    this.held = 0;
    this.stats.spills++;
    // One partition's text at a time keeps the extra memory of a spill small.
    for (let p = 0; p < this.partitions; p++) {
      const lists = byPartition[p]!;
      if (!lists.length) continue;
      let text = '';
      for (const list of lists) for (const f of list) text += JSON.stringify(f) + '\n';
      byPartition[p] = [];
      this.stats.spilledBytes += text.length;
      await appendFile(this.partitionFile(p), text);
    }
  }

  /** All groups, in partition-then-ref order. Call once, after the last `add`. */
  async *groupsInOrder(): AsyncGenerator<ImageGroup> {
    await this.spilling;
    if (this.spillDir === null) {
      const refs = [...this.groups.keys()];
      const order = refs.map((ref) => ({ ref, p: this.partitionOf(ref) }));
      order.sort((a, b) => a.p - b.p || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
      const groups = this.groups;
      this.groups = new Map();
      for (const { ref } of order) {
        const fragments = groups.get(ref)!;
        groups.delete(ref);
        yield { ref, fragments };
      }
      return;
    }
    if (this.groups.size) await this.spill();
    for (let p = 0; p < this.partitions; p++) {
      const file = this.partitionFile(p);
      const groups = new Map<string, Fragment[]>();
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const line of text.split('\n')) {
        if (!line) continue;
        const f = JSON.parse(line) as Fragment;
        let list = groups.get(f.ref);
        if (!list) groups.set(f.ref, (list = []));
        list.push(f);
      }
      text = '';
      await unlink(file);
      const refs = [...groups.keys()].sort();
      for (const ref of refs) yield { ref, fragments: groups.get(ref)! };
    }
  }

  /** Remove the spill folder; safe to call more than once and after errors. */
  async cleanup(): Promise<void> {
    await this.spilling?.catch(() => {});
    if (this.spillDir !== null) {
      await rm(this.spillDir, { recursive: true, force: true });
      this.spillDir = null;
    }
  }
}
