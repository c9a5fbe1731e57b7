import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { ByteWriter, FragmentCodec } from './fragment-codec.js';
import type { Fragment, ImageGroup } from '../types.js';

/**
 * Groups fragments by image with memory bounded by `memoryBudget` bytes.
 *
 * Each fragment goes to one of `partitions` buffers, chosen by a hash of
 * the image's ref. When the buffers pass the budget, every buffer is
 * written, one after another, to the end of a spill file (a segment) and
 * memory is cleared; the join notes where each partition's bytes went. At
 * the end each partition's bytes are read back into one buffer and the
 * partition is grouped on its own (in a worker thread when there are
 * several), so memory is about budget + the partitions being grouped.
 *
 * Output order is the same whether or not anything spilled: by partition,
 * then by ref. So a run with a tiny budget writes byte-identical shards.
 */
export interface JoinOptions {
  memoryBudget: number;
  /** Parent folder for the spill folder (default: the OS temp folder). */
  tmpDir?: string;
  partitions?: number;
  /** A codec to encode with (one sharing tables with other threads); default a new one. */
  codec?: FragmentCodec;
  /** Spill into this folder (made by the caller, removed by `cleanup`) instead of a new one. */
  spillDir?: string;
  /** Start a new segment file once the current one holds this many bytes (default 256 MiB). */
  segmentBytes?: number;
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
 * One partition's fragments, ready to group: what every thread that read
 * spilled for it and what was still in memory, as one buffer of framed
 * records (see FragmentCodec). The buffer is the partition's own, so it
 * can be handed to a worker thread without a copy.
 */
export interface PartitionInput {
  partition: number;
  bytes: Uint8Array;
}

/**
 * What a join left on disk: its segment files, and for each partition where
 * its bytes lie in them, as (segment, offset, length) triples in the order
 * they were written (null: nothing spilled).
 */
export interface SpilledJoin {
  segments: string[];
  ranges: (number[] | null)[];
}

/**
 * The next spill starts a new segment once the current one holds this
 * much. One spill file per partition, as before, meant one open, write and
 * close per partition at every spill: 15,000 of each reading 300 MB, 0.5 s
 * of CPU on the two threads of a phase that keeps both busy. A spill now
 * opens its segment once; the size only bounds the files of very long runs.
 */
const SEGMENT_BYTES = 256 * 1024 * 1024;

function segmentPath(dir: string, index: number): string {
  return path.join(dir, `segment-${String(index).padStart(4, '0')}.fragments`);
}

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

/**
 * Holds fragments serialised, one byte buffer per partition. Serialised
 * fragments cost the garbage collector nothing to keep (bytes outside the
 * heap, no pointers to trace), a spill is a plain append, and a partition
 * can be handed to a worker thread as bytes.
 */
export class FragmentJoin {
  readonly stats: JoinStats = { fragments: 0, spills: 0, spilledBytes: 0, peakHeldBytes: 0 };
  private buffers: (ByteWriter | null)[];
  private held = 0;
  private spillDir: string | null = null;
  /** Segment files written so far; spills append to the last. */
  private segments: string[] = [];
  private segmentBytes = 0;
  /** Per partition: (segment, offset, length) triples of what it spilled. */
  private ranges: (number[] | null)[];
  /** The spill being written, if any: spills never overlap (they share files and the folder). */
  private spilling: Promise<void> | null = null;
  private budget: number;
  private readonly segmentLimit: number;
  readonly partitions: number;
  private readonly tmpParent: string;
  readonly codec: FragmentCodec;

  constructor(opts: JoinOptions) {
    if (!(opts.memoryBudget > 0)) throw new InstructifyError('E_OPTION', `memory budget must be a positive number of bytes, got ${opts.memoryBudget}`);
    const p = opts.partitions ?? DEFAULT_PARTITIONS;
    if (!Number.isInteger(p) || p < 1 || p > 4096) throw new InstructifyError('E_OPTION', `partitions must be an integer from 1 to 4096, got ${p}`);
    this.budget = opts.memoryBudget;
    this.partitions = p;
    const seg = opts.segmentBytes ?? SEGMENT_BYTES;
    if (!Number.isInteger(seg) || seg < 1) throw new InstructifyError('E_OPTION', `segment size must be a positive whole number of bytes, got ${seg}`);
    this.segmentLimit = seg;
    this.tmpParent = opts.tmpDir ?? os.tmpdir();
    this.buffers = new Array<ByteWriter | null>(p).fill(null);
    this.ranges = new Array<number[] | null>(p).fill(null);
    this.codec = opts.codec ?? new FragmentCodec();
    this.spillDir = opts.spillDir ?? null;
  }

  /** Change the memory budget (when other threads' joins start to share it). */
  setBudget(bytes: number): void {
    if (!(bytes > 0)) throw new InstructifyError('E_OPTION', `memory budget must be a positive number of bytes, got ${bytes}`);
    this.budget = bytes;
  }

  /**
   * Add one fragment with its read order (see `readOrder`); returns a promise
   * while a spill it caused is written (backpressure).
   */
  add(f: Fragment, order = 0): Promise<void> | undefined {
    this.stats.fragments++;
    const p = hashRef(f.ref) % this.partitions;
    // A partition's buffer starts small: there may be thousands, most holding a few KB between spills.
    let buf = this.buffers[p];
    if (!buf) {
      buf = this.buffers[p] = new ByteWriter(1024);
      this.held += buf.capacity;
    }
    // The budget counts what the buffers take, not only what is written in them: a buffer
    // grows by doubling, and counting only the written bytes let the join's memory reach
    // about 1.5x the budget.
    const before = buf.capacity;
    this.codec.encodeInto(buf, f, order);
    this.held += buf.capacity - before;
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

  /**
   * Write everything held to disk (a join in a worker thread does this when
   * reading ends, and hands the segments over); null when nothing was ever
   * spilled.
   */
  async spillAll(): Promise<SpilledJoin | null> {
    await this.spilling;
    // A hand-over, not a spill to stay under the budget: not counted as one.
    if (this.held > 0) await this.spill(false);
    if (!this.segments.length) return null;
    return { segments: this.segments, ranges: this.ranges };
  }

  private async spill(counted = true): Promise<void> {
    if (this.spillDir === null) {
      await removeStaleSpills(this.tmpParent);
      this.spillDir = await mkdtemp(path.join(this.tmpParent, `instructify-join-${process.pid}-`));
    }
    const buffers = this.buffers;
    this.buffers = new Array<ByteWriter | null>(this.partitions).fill(null);
    this.held = 0;
    if (counted) this.stats.spills++;
    if (!this.segments.length || this.segmentBytes >= this.segmentLimit) {
      this.segments.push(segmentPath(this.spillDir, this.segments.length));
      this.segmentBytes = 0;
    }
    const segment = this.segments.length - 1;
    // Synchronous on purpose: the thread-pool round trip of an async write
    // cost more than the write itself (reading 300 MB: 11.2 s with async
    // appends, 8.8-10 s with synchronous ones). Closed before the spill
    // ends, even when a write fails: a join in a worker thread may be
    // stopped without a chance to close what it holds open.
    const fd = openSync(this.segments[segment]!, 'a');
    try {
      for (let p = 0; p < this.partitions; p++) {
        const buf = buffers[p];
        if (!buf) continue;
        const bytes = buf.bytes();
        buffers[p] = null;
        this.stats.spilledBytes += bytes.length;
        (this.ranges[p] ??= []).push(segment, this.segmentBytes, bytes.length);
        for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
        this.segmentBytes += bytes.length;
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Resolves when no spill is being written. */
  async settled(): Promise<void> {
    await this.spilling;
  }

  /** How many partitions hold anything, here or in `others` (for progress). */
  nonEmptyPartitions(others: SpilledJoin[] = []): number {
    let n = 0;
    for (let p = 0; p < this.partitions; p++) if (this.buffers[p] || this.ranges[p] || others.some((o) => o.ranges[p])) n++;
    return n;
  }

  /**
   * Every non-empty partition in order, with the same partition of other
   * threads' joins (same partition count) added: this join's spilled bytes,
   * then the others' in their order, then what this join holds in memory.
   * Call once, after the last `add`.
   */
  async *partitionsInOrder(others: SpilledJoin[] = []): AsyncGenerator<PartitionInput> {
    await this.spilling;
    const joins: SpilledJoin[] = [{ segments: this.segments, ranges: this.ranges }, ...others];
    // Each segment is opened once, when first needed, and all are closed at the end.
    const fds = new Map<string, number>();
    const fdOf = (file: string): number => {
      let fd = fds.get(file);
      if (fd === undefined) fds.set(file, (fd = openSync(file, 'r')));
      return fd;
    };
    try {
      for (let p = 0; p < this.partitions; p++) {
        const held = this.buffers[p]?.bytes() ?? null;
        this.buffers[p] = null;
        if (held === null && !joins.some((j) => j.ranges[p])) continue;
        let total = held?.length ?? 0;
        for (const j of joins) for (let k = 2, r = j.ranges[p]; r && k < r.length; k += 3) total += r[k]!;
        // Read synchronously, as spills are written: a partition's bytes are a few hundred KB
        // just written and in the page cache, so reading them is a copy of well under a
        // millisecond; through the thread pool, with both cores busy, a lane waited 3-4 ms for
        // each (18% of a write phase).
        const bytes = Buffer.allocUnsafeSlow(total);
        let at = 0;
        for (const j of joins) {
          const r = j.ranges[p];
          for (let k = 0; r && k < r.length; k += 3) {
            const fd = fdOf(j.segments[r[k]!]!);
            const end = at + r[k + 2]!;
            for (let pos = r[k + 1]!; at < end; ) {
              const n = readSync(fd, bytes, at, end - at, pos);
              if (n === 0) throw new InstructifyError('E_IO', `spill segment ${j.segments[r[k]!]} ends before partition ${p}'s bytes (the temporary folder was changed while the run was going on?)`, { file: j.segments[r[k]!] });
              at += n;
              pos += n;
            }
          }
        }
        if (held) bytes.set(held, at);
        yield { partition: p, bytes };
      }
    } finally {
      for (const fd of fds.values()) closeSync(fd);
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

/** One image's records in a partition, found but not yet decoded (see `indexPartition`). */
export interface PendingGroup {
  ref: string;
  records: { bytes: Uint8Array; start: number; order: number }[];
}

/**
 * Find each image's records in one partition: images in ref order, records
 * in read order (the order one thread reading the files in turn would have
 * added them, whichever threads did the reading). Only the frame heads are
 * read; `decodeGroup` decodes an image's fragments when they are wanted.
 */
export function indexPartition(input: PartitionInput, codec: FragmentCodec): PendingGroup[] {
  const index: RefIndex = { groups: new Map(), sorted: true, bytes: input.bytes };
  codec.scan(input.bytes, index, addToIndex);
  const refs = [...index.groups.keys()].sort();
  const out: PendingGroup[] = [];
  for (const ref of refs) {
    const records = index.groups.get(ref)!;
    // Sort is stable: records with equal order keep their arrival order.
    if (!index.sorted && records.length > 1) records.sort(compareOrder);
    out.push({ ref, records });
  }
  return out;
}

// Module-level functions rather than closures made per partition or per
// image: V8 keeps a function's optimised code only while some closure of it
// is alive, so closures made per call were compiled again after every full
// collection.
interface RefIndex {
  groups: Map<string, PendingGroup['records']>;
  sorted: boolean;
  bytes: Uint8Array;
}

function addToIndex(index: RefIndex, start: number, order: number, ref: string): void {
  let list = index.groups.get(ref);
  if (!list) index.groups.set(ref, (list = []));
  else if (order < list[list.length - 1]!.order) index.sorted = false;
  list.push({ bytes: index.bytes, start, order });
}

function compareOrder(a: { order: number }, b: { order: number }): number {
  return a.order - b.order;
}

/** An indexed image's fragments, decoded. */
export function decodeGroup(g: PendingGroup, codec: FragmentCodec): ImageGroup {
  const fragments: Fragment[] = [];
  for (const r of g.records) fragments.push(codec.decodeAt(r.bytes, r.start).fragment);
  return { ref: g.ref, fragments };
}

/** Group one partition's fragments by image, all decoded at once (see `indexPartition` for the order). */
export function groupPartition(input: PartitionInput, codec: FragmentCodec): ImageGroup[] {
  return indexPartition(input, codec).map((g) => decodeGroup(g, codec));
}
