import { Worker } from 'node:worker_threads';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Transform } from 'node:stream';
import { offloadingJsonValues } from '../../transforms/json-values.js';
import { fileURLToPath } from 'node:url';
import { batchTransferList, type ElementBatch } from './element-batches.js';
import { InstructifyError, errorFromData, type ErrorData } from '../errors.js';
import type { CodecTables } from '../join/fragment-codec.js';
import { removeStaleSpills, type FragmentJoin, type JoinStats, type SpilledJoin } from '../join/join.js';
import type { Shard } from './sharding.js';
import type { FileHandler, IngestState, PlannedFile } from '../sources/types.js';
import type { Reject } from '../types.js';

/**
 * Read workers: threads that parse batches of elements the main thread has
 * cut out of a file, run the source's handler on them and add the fragments
 * to a join of their own (same partitions, same codec tables, their own
 * spill folder). When reading ends each spills what it holds and hands its
 * folder over: the emit phase reads partition p from every join.
 *
 * Sending fragments back to the main thread cost as much as the second core
 * saved (measured, see bench/RESULTS.md); a join per worker sends nothing back
 * but a count per batch.
 */
export interface ReadWorkerInit {
  codec: CodecTables;
  memoryBudget: number;
  partitions: number;
  /** Made by the main thread (so it can remove it whatever happens to the worker). */
  spillDir: string;
  shard: Shard | null;
}

/** Everything a worker needs to make its copy of a file's handler. */
export interface ReadFileStart {
  file: number;
  kind: string;
  planned: PlannedFile;
  source: string;
  family: string;
  state: IngestState;
  cocoNaming: '2017' | '2014';
  images: string | null;
  imageDirs?: Partial<Record<string, string>>;
}

export type ToReadWorker = { type: 'file'; start: ReadFileStart } | { type: 'batch'; seq: number; batch: ElementBatch } | { type: 'close' };

export interface BatchDone {
  seq: number;
  /** Fragments added to the worker's join (after the shard filter). */
  fragments: number;
  rejects: Reject[];
}

export type FromReadWorker =
  | ({ type: 'batch-done' } & BatchDone)
  | { type: 'closed'; spilled: SpilledJoin | null; stats: JoinStats }
  | { type: 'error'; seq: number | null; error: ErrorData };

function readWorkerFile(): string {
  const here = fileURLToPath(import.meta.url);
  // From TypeScript sources (the tests), the worker still runs from the build in dist/.
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'read-worker.js');
  return path.join(path.dirname(here), '..', '..', 'dist', 'src', 'read', 'read-worker.js');
}

/** Batches each worker may hold: one being parsed and three waiting, so it never idles while the main thread parses a stretch itself. */
const IN_FLIGHT_PER_WORKER = 4;

interface ReadWorker {
  worker: Worker;
  inFlight: number;
  closed: ((v: { spilled: SpilledJoin | null; stats: JoinStats }) => void) | null;
}

export class ReadPool {
  private readonly workers: ReadWorker[] = [];
  private readonly waiting = new Map<number, { resolve: (d: BatchDone) => void; reject: (e: Error) => void }>();
  private nextSeq = 0;
  /** The first failure of any worker: every later call fails with it. */
  failure: Error | null = null;
  private idleWaiters: (() => void)[] = [];

  /** One worker per spill folder. */
  constructor(init: Omit<ReadWorkerInit, 'spillDir'>, spillDirs: string[]) {
    for (const [i, spillDir] of spillDirs.entries()) {
      const rw: ReadWorker = { worker: new Worker(readWorkerFile(), { workerData: { ...init, spillDir } satisfies ReadWorkerInit }), inFlight: 0, closed: null };
      rw.worker.on('message', (m: FromReadWorker) => this.onMessage(rw, m));
      rw.worker.on('error', (err) => this.fail(new InstructifyError('E_INTERNAL', `read worker ${i}: ${err.message}`, { cause: err })));
      rw.worker.on('exit', (code) => {
        if (rw.inFlight > 0 || rw.closed) this.fail(new InstructifyError('E_INTERNAL', `read worker ${i} exited (code ${code}) with work outstanding`));
      });
      this.workers.push(rw);
    }
  }

  private onMessage(rw: ReadWorker, m: FromReadWorker): void {
    if (m.type === 'closed') {
      const done = rw.closed;
      rw.closed = null;
      done?.({ spilled: m.spilled, stats: m.stats });
      return;
    }
    if (m.type === 'error') {
      const err = errorFromData(m.error);
      if (m.seq !== null) {
        rw.inFlight--;
        this.settle(m.seq, null, err);
      }
      this.fail(err);
      return;
    }
    rw.inFlight--;
    this.settle(m.seq, m, null);
  }

  private settle(seq: number, done: BatchDone | null, err: Error | null): void {
    const w = this.waiting.get(seq);
    this.waiting.delete(seq);
    if (w) {
      if (err) w.reject(err);
      else w.resolve(done!);
    }
    if (this.waiting.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    for (const [seq, w] of [...this.waiting]) {
      this.waiting.delete(seq);
      w.reject(this.failure);
    }
    for (const rw of this.workers) rw.inFlight = 0;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Tell every worker which file the next batches come from. */
  startFile(start: ReadFileStart): void {
    for (const rw of this.workers) rw.worker.postMessage({ type: 'file', start } satisfies ToReadWorker);
  }

  /** Whether a worker has room for a batch now. */
  hasRoom(): boolean {
    return this.failure === null && this.workers.some((w) => w.inFlight < IN_FLIGHT_PER_WORKER);
  }

  /** Hand a batch to the least busy worker (its buffers move there: do not touch the batch afterwards). */
  submit(batch: ElementBatch): Promise<BatchDone> {
    if (this.failure) return Promise.reject(this.failure);
    let best = this.workers[0]!;
    for (const w of this.workers) if (w.inFlight < best.inFlight) best = w;
    const seq = this.nextSeq++;
    best.inFlight++;
    const done = new Promise<BatchDone>((resolve, reject) => this.waiting.set(seq, { resolve, reject }));
    best.worker.postMessage({ type: 'batch', seq, batch } satisfies ToReadWorker, batchTransferList(batch));
    return done;
  }

  /** Resolves when every submitted batch is done; fails with the first worker failure. */
  async idle(): Promise<void> {
    if (this.waiting.size > 0 && !this.failure) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.failure) throw this.failure;
  }

  /** Reading is over: each worker spills what it holds and says where. */
  async close(): Promise<{ spilled: SpilledJoin[]; stats: JoinStats[] }> {
    await this.idle();
    const results = await Promise.all(
      this.workers.map(
        (rw) =>
          new Promise<{ spilled: SpilledJoin | null; stats: JoinStats }>((resolve, reject) => {
            rw.closed = resolve;
            rw.worker.once('exit', () => rw.closed && reject(this.failure ?? new InstructifyError('E_INTERNAL', 'a read worker exited before handing over its join')));
            rw.worker.postMessage({ type: 'close' } satisfies ToReadWorker);
          }),
      ),
    );
    if (this.failure) throw this.failure;
    return { spilled: results.flatMap((r) => (r.spilled ? [r.spilled] : [])), stats: results.map((r) => r.stats) };
  }

  /** Stop every worker (after close, or on failure). */
  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((rw) => rw.worker.terminate()));
  }
}

/** What the read workers took: batches, elements in them, fragments they added (all zero without workers). */
export interface ReadWorkStats {
  workers: number;
  batches: number;
  elements: number;
  fragments: number;
}

/**
 * prepare's side of the read workers: their spill folders (made here, so
 * they are removed whatever becomes of a worker), the share of the memory
 * budget, the JSON stage of files they help with, and the first failure
 * (a worker's, or a strict-mode reject one reported), raised at the main
 * thread's next step.
 */
export class ReadWorkers {
  readonly stats: ReadWorkStats = { workers: 0, batches: 0, elements: 0, fragments: 0 };
  private failure: unknown = null;

  private constructor(
    private readonly pool: ReadPool,
    private readonly dirs: string[],
    private readonly onBatch: (source: string, done: BatchDone) => void,
  ) {
    this.stats.workers = dirs.length;
  }

  /**
   * Start `count` workers. The memory budget is shared by the joins of all
   * reading threads: the main thread's join is given its share here.
   */
  static async start(
    count: number,
    opts: { tmpParent: string; memoryBudget: number; join: FragmentJoin; shard: Shard | null; onBatch: (source: string, done: BatchDone) => void },
  ): Promise<ReadWorkers> {
    await removeStaleSpills(opts.tmpParent);
    const dirs: string[] = [];
    for (let i = 0; i < count; i++) dirs.push(await mkdtemp(path.join(opts.tmpParent, `instructify-join-${process.pid}-`)));
    const share = Math.max(1, Math.floor(opts.memoryBudget / (count + 1)));
    opts.join.setBudget(share);
    const pool = new ReadPool({ codec: opts.join.codec.tables(), memoryBudget: share, partitions: opts.join.partitions, shard: opts.shard }, dirs);
    return new ReadWorkers(pool, dirs, opts.onBatch);
  }

  /** Throw the first failure, if any. */
  check(): void {
    if (this.failure !== null) throw this.failure;
    if (this.pool.failure !== null) throw this.pool.failure;
  }

  /** The JSON stage for a file whose bulk arrays (`handler.parallelKeys`) the workers may parse. */
  values(start: ReadFileStart, handler: FileHandler, batchBytes: number): Transform {
    this.pool.startFile(start);
    const source = start.source;
    return offloadingJsonValues({
      file: start.planned.path,
      skipKeys: handler.skipKeys,
      rawKeys: handler.rawKeys,
      parallelKeys: handler.parallelKeys!,
      fileNumber: start.file,
      batchBytes,
      canOffload: () => {
        this.check();
        return this.pool.hasRoom();
      },
      offload: (b: ElementBatch) => {
        this.stats.batches++;
        this.stats.elements += b.count;
        this.pool.submit(b).then(
          (done) => {
            this.stats.fragments += done.fragments;
            try {
              this.onBatch(source, done);
            } catch (err) {
              this.failure ??= err;
            }
          },
          (err: unknown) => void (this.failure ??= err),
        );
      },
    });
  }

  /** Wait until every batch handed out is done (at the end of a file), then raise any failure. */
  async idle(): Promise<void> {
    await this.pool.idle();
    this.check();
  }

  /** Reading is over: the workers' joins, spilled, for the emit phase. */
  async finish(): Promise<{ spilled: SpilledJoin[]; stats: JoinStats[] }> {
    const closed = await this.pool.close();
    this.check();
    await this.pool.terminate();
    return closed;
  }

  /** Stop the workers and remove their spill folders (after the emit phase, or on failure). */
  async cleanup(): Promise<void> {
    await this.pool.terminate();
    for (const dir of this.dirs) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}
