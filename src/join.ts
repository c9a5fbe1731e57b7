import { mkdtemp, rm, appendFile, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstructifyError } from './errors.js';
import { FragmentCodec, RECORD } from './fragment-codec.js';
import type { Fragment, ImageGroup } from './types.js';

/**
 * Groups fragments by image with memory bounded by `memoryBudget` bytes.
 *
 * Each fragment goes to one of `partitions` buffers, chosen by a hash of
 * the image's ref. When the buffers pass the budget, every buffer is
 * appended to its partition's spill file and memory is cleared. At the end
 * each partition is grouped on its own (in a worker thread when there are
 * several), so memory is about budget + one partition per worker.
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

/** One partition's fragments, ready to group: its spill file (if it spilled) and what is still in memory. */
export interface PartitionInput {
  partition: number;
  spillFile: string | null;
  /** Encoded fragments held in memory (after those in the spill file), separated by RECORD. */
  lines: string;
}

/**
 * Holds fragments serialised, one buffer per partition. Serialised fragments
 * cost the garbage collector almost nothing to keep (a string has no
 * pointers to trace), a spill is a plain append, and a partition can be
 * handed to a worker thread as text.
 */
/**
 * Spill folders of runs that were killed (kill -9, a crash) cannot be removed
 * by those runs: the next run removes them. A folder names its process; it
 * is stale when that process is gone.
 */
export async function removeStaleSpills(parent: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const m = /^instructify-join-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') await rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
}

export class FragmentJoin {
  readonly stats: JoinStats = { fragments: 0, spills: 0, spilledBytes: 0, peakHeldBytes: 0 };
  private buffers: string[][];
  private held = 0;
  private spillDir: string | null = null;
  private spilled = new Set<number>();
  /** The spill being written, if any: spills never overlap (they share files and the folder). */
  private spilling: Promise<void> | null = null;
  private readonly budget: number;
  readonly partitions: number;
  private readonly tmpParent: string;
  readonly codec = new FragmentCodec();

  constructor(opts: JoinOptions) {
    if (!(opts.memoryBudget > 0)) throw new InstructifyError('E_OPTION', `memory budget must be a positive number of bytes, got ${opts.memoryBudget}`);
    const p = opts.partitions ?? DEFAULT_PARTITIONS;
    if (!Number.isInteger(p) || p < 1 || p > 4096) throw new InstructifyError('E_OPTION', `partitions must be an integer from 1 to 4096, got ${p}`);
    this.budget = opts.memoryBudget;
    this.partitions = p;
    this.tmpParent = opts.tmpDir ?? os.tmpdir();
    this.buffers = Array.from({ length: p }, () => []);
  }

  /** Add one fragment; returns a promise while a spill it caused is written (backpressure). */
  add(f: Fragment): Promise<void> | undefined {
    this.stats.fragments++;
    const line = this.codec.encode(f);
    this.buffers[hashRef(f.ref) % this.partitions]!.push(line);
    // A one-byte string costs about its length plus a small header.
    this.held += line.length + 40;
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

  private partitionFile(p: number): string {
    return path.join(this.spillDir!, `part-${String(p).padStart(4, '0')}.fragments`);
  }

  private async spill(): Promise<void> {
    if (this.spillDir === null) {
      await removeStaleSpills(this.tmpParent);
      this.spillDir = await mkdtemp(path.join(this.tmpParent, `instructify-join-${process.pid}-`));
    }
    const buffers = this.buffers;
    this.buffers = Array.from({ length: this.partitions }, () => []);
    this.held = 0;
    this.stats.spills++;
    for (let p = 0; p < this.partitions; p++) {
      const lines = buffers[p]!;
      if (!lines.length) continue;
      const text = lines.join(RECORD) + RECORD;
      buffers[p] = [];
      this.stats.spilledBytes += text.length;
      this.spilled.add(p);
      await appendFile(this.partitionFile(p), text);
    }
  }

  /** Resolves when no spill is being written. */
  async settled(): Promise<void> {
    await this.spilling;
  }

  /** How many partitions hold anything (for progress). */
  nonEmptyPartitions(): number {
    let n = 0;
    for (let p = 0; p < this.partitions; p++) if (this.buffers[p]!.length || this.spilled.has(p)) n++;
    return n;
  }

  /** Every non-empty partition in order. Call once, after the last `add`. */
  async *partitionsInOrder(): AsyncGenerator<PartitionInput> {
    await this.spilling;
    for (let p = 0; p < this.partitions; p++) {
      const lines = this.buffers[p]!;
      this.buffers[p] = [];
      const spillFile = this.spilled.has(p) ? this.partitionFile(p) : null;
      if (!lines.length && spillFile === null) continue;
      yield { partition: p, spillFile, lines: lines.join(RECORD) };
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

/** Group one partition's fragments by image, images in ref order, fragments in arrival order. */
export async function groupPartition(input: PartitionInput, codec: FragmentCodec): Promise<ImageGroup[]> {
  const groups = new Map<string, Fragment[]>();
  const take = (text: string) => {
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf(RECORD, start);
      if (end === -1) end = text.length;
      if (end > start) {
        const f = codec.decode(text.slice(start, end));
        let list = groups.get(f.ref);
        if (!list) groups.set(f.ref, (list = []));
        list.push(f);
      }
      start = end + 1;
    }
  };
  if (input.spillFile !== null) take(await readFile(input.spillFile, 'utf8'));
  take(input.lines);
  const refs = [...groups.keys()].sort();
  return refs.map((ref) => ({ ref, fragments: groups.get(ref)! }));
}
