import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parquetModule } from '../write/parquet-wasm.js';
import { processPartition, type EmitConfig, type PartitionSummary } from './emit.js';
import { InstructifyError } from '../errors.js';
import type { PartitionInput } from '../join/join.js';
import { ShardWriter, type ShardFormat, type ShardInfo } from '../write/shards.js';
import { ObjectSink, StreamSink, type StreamFormat } from '../write/stdout-sink.js';

/**
 * The emit phase runs in lanes. Lane `w` of `W` takes partitions p with
 * p % W == w, in order, builds their records and writes its own shards
 * (`part-<w>-<n>`). A lane is a worker thread, or the main thread itself
 * when there are no workers: the same `LaneCore` either way.
 */
export interface LaneSettings {
  config: EmitConfig;
  /** A folder for shards, or '-' to stream every record to stdout (main-thread lane only). */
  out: string;
  /** When out is '-': NDJSON or an Arrow IPC stream. */
  streamFormat?: StreamFormat;
  /** When out is '-' and this is set: records go to it instead of stdout (main-thread lane only, e.g. `run`). */
  recordStream?: import('node:stream').Writable;
  format: ShardFormat;
  rowsPerShard: number;
  rowGroupRows: number;
  /** Put into every shard name, e.g. "s3of8-" for shard 3 of 8. */
  tag?: string;
  metadata: [string, string][];
}

export class LaneCore {
  private readonly writer: ShardWriter | StreamSink | ObjectSink;
  constructor(
    lane: number,
    private readonly s: LaneSettings,
  ) {
    this.writer =
      s.out === '-' && s.recordStream
        ? new ObjectSink(s.recordStream)
        : s.out === '-'
        ? new StreamSink(process.stdout, s.streamFormat ?? 'ndjson', s.rowGroupRows)
        : new ShardWriter({ dir: s.out, prefix: `part-${s.tag ?? ''}${lane}`, format: s.format, rowsPerShard: s.rowsPerShard, rowGroupRows: s.rowGroupRows, metadata: s.metadata });
  }

  async partition(input: PartitionInput): Promise<PartitionSummary> {
    return processPartition(input, this.s.config, (records) => this.writer.add(records));
  }

  finish(): Promise<ShardInfo[]> {
    return this.writer.close();
  }

  abort(): Promise<void> {
    return this.writer.abort();
  }
}

/** Messages between the main thread and a lane worker. */
export type ToLane = { type: 'partition'; input: PartitionInput } | { type: 'finish' } | { type: 'abort' };
export type FromLane =
  | { type: 'summary'; summary: PartitionSummary }
  | { type: 'finished'; shards: ShardInfo[] }
  | { type: 'aborted' }
  | { type: 'error'; message: string; code?: string };

function laneWorkerFile(): string {
  const here = fileURLToPath(import.meta.url);
  // From TypeScript sources (the tests), the worker still runs from the build in dist/.
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'lane-worker.js');
  return path.join(path.dirname(here), '..', '..', 'dist', 'src', 'prepare', 'lane-worker.js');
}

/** A lane takes partitions in order and resolves each with its summary. */
interface Lane {
  process(input: PartitionInput): Promise<PartitionSummary>;
  inFlight: number;
  finish(): Promise<ShardInfo[]>;
  abort(): Promise<void>;
  close(): Promise<void>;
}

class LocalLane implements Lane {
  inFlight = 0;
  private readonly core: LaneCore;
  /** Partitions run one after another: their rows must reach the shard writer in order. */
  private tail: Promise<unknown> = Promise.resolve();
  constructor(lane: number, settings: LaneSettings) {
    this.core = new LaneCore(lane, settings);
  }
  async process(input: PartitionInput): Promise<PartitionSummary> {
    this.inFlight++;
    const run = this.tail.then(() => this.core.partition(input));
    this.tail = run.catch(() => {});
    try {
      return await run;
    } finally {
      this.inFlight--;
    }
  }
  finish(): Promise<ShardInfo[]> {
    return this.core.finish();
  }
  abort(): Promise<void> {
    return this.core.abort();
  }
  async close(): Promise<void> {}
}

/** Old-generation heap of a worker lane, in MB. */
const LANE_HEAP_MB = 256;
/**
 * Young generation of a worker lane, in MB (three semi-spaces' worth: 8 MB
 * each, against V8's 16). A lane's objects now die within a window of
 * images, so a smaller young generation costs little scavenging, and it is
 * memory every lane holds at once with the main thread. 600 MB, auto
 * workers, seven runs each: peak RSS median 326 MB (299-335) against 340 MB
 * (324-347), time within the runs' noise (paired differences -0.7 to
 * +2.8 s of 22-30 s).
 */
const LANE_YOUNG_MB = 24;

/** A lane in a worker thread: replies come back in the order partitions were sent. */
class WorkerLane implements Lane {
  inFlight = 0;
  private readonly worker: Worker;
  private readonly pending: { resolve: (v: never) => void; reject: (e: Error) => void }[] = [];
  private failed: Error | null = null;

  constructor(lane: number, settings: LaneSettings) {
    // A lane holds a partition or two (about a MiB of fragments each) and a row group: its heap
    // is capped, because uncapped V8 let it grow with the length of the run (bench/scale: peak
    // RSS 422-455 MB at 1 GB, 476-540 MB at 2 GB; capped at 256 MB: 414 and 416 MB).
    // Parquet lanes get the main thread's compiled parquet-wasm rather than compiling their own.
    const parquet = settings.format === 'parquet' && settings.out !== '-' ? parquetModule() : null;
    this.worker = new Worker(laneWorkerFile(), { workerData: { lane, settings, parquet }, resourceLimits: { maxOldGenerationSizeMb: LANE_HEAP_MB, maxYoungGenerationSizeMb: LANE_YOUNG_MB } });
    this.worker.on('message', (m: FromLane) => {
      const waiter = this.pending.shift();
      if (!waiter) return;
      if (m.type === 'error') waiter.reject(new InstructifyError((m.code as 'E_IO') ?? 'E_INTERNAL', `worker lane ${lane}: ${m.message}`));
      else if (m.type === 'summary') waiter.resolve(m.summary as never);
      else if (m.type === 'finished') waiter.resolve(m.shards as never);
      else waiter.resolve(undefined as never);
    });
    const fail = (err: Error) => {
      this.failed = err;
      for (const w of this.pending.splice(0)) w.reject(err);
    };
    this.worker.on('error', (err: Error & { code?: string }) =>
      fail(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new InstructifyError('E_INTERNAL', `worker lane ${lane} ran out of its ${LANE_HEAP_MB} MB heap (a partition of unusually large records?): rerun with --workers 0`, { cause: err })
          : err,
      ),
    );
    this.worker.on('exit', (code) => {
      if (this.pending.length) fail(new InstructifyError('E_INTERNAL', `worker lane ${lane} exited (code ${code}) with work outstanding`));
    });
  }

  private call<T>(msg: ToLane, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ resolve: resolve as (v: never) => void, reject });
      this.worker.postMessage(msg, transfer);
    });
  }

  async process(input: PartitionInput): Promise<PartitionSummary> {
    this.inFlight++;
    try {
      // The partition's bytes are its own buffer (see FragmentJoin.partitionsInOrder): moved, not copied.
      const whole = input.bytes.byteOffset === 0 && input.bytes.byteLength === input.bytes.buffer.byteLength;
      return await this.call<PartitionSummary>({ type: 'partition', input }, whole ? [input.bytes.buffer as ArrayBuffer] : []);
    } finally {
      this.inFlight--;
    }
  }
  finish(): Promise<ShardInfo[]> {
    return this.call<ShardInfo[]>({ type: 'finish' });
  }
  abort(): Promise<void> {
    return this.call<void>({ type: 'abort' });
  }
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/**
 * Lane 0 is the main thread; lanes 1..workers are worker threads. Partition
 * p goes to lane p % lanes. Summaries come back in partition order, so
 * rejects.jsonl does not depend on timing.
 */
export class LanePool {
  private readonly lanes: Lane[];

  constructor(
    workers: number,
    settings: LaneSettings,
    /**
     * Partitions queued per lane. Lanes take partitions in turn, so a lane
     * that is ahead waits for the other once its queue is empty: the queue
     * is what absorbs the difference (a partition's tree, a row group's
     * Parquet encoding, a shard's end). 300 MB, auto workers, three runs
     * each: write phase 10.35 s at 2, 9.18 s at 4, 8.44 s at 6, the same at
     * 12; peak RSS within the runs' noise. A queued partition holds its
     * fragments' bytes (a few hundred KB at most sizes: the join makes a
     * partition per MB of input).
     */
    private readonly depth = 6,
  ) {
    this.lanes = [new LocalLane(0, settings)];
    for (let w = 1; w <= workers; w++) this.lanes.push(new WorkerLane(w, settings));
  }

  get count(): number {
    return this.lanes.length;
  }

  async *run(partitions: AsyncIterable<PartitionInput>): AsyncGenerator<PartitionSummary> {
    const order: Promise<PartitionSummary>[] = [];
    const window = this.lanes.length * this.depth;
    try {
      for await (const input of partitions) {
        const lane = this.lanes[input.partition % this.lanes.length]!;
        // Bounded: at most `depth` partitions wait in any lane.
        while (lane.inFlight >= this.depth && order.length) yield await order.shift()!;
        const p = lane.process(input);
        p.catch(() => {}); // awaited below, in order; keep an early failure from being "unhandled"
        order.push(p);
        while (order.length > window) yield await order.shift()!;
      }
      while (order.length) yield await order.shift()!;
    } finally {
      await Promise.allSettled(order);
    }
  }

  /** Flush every lane's last shard; shards in lane order. */
  async finish(): Promise<ShardInfo[]> {
    return (await Promise.all(this.lanes.map((l) => l.finish()))).flat();
  }

  /** After a failure: lanes remove unfinished shards. */
  async abort(): Promise<void> {
    await Promise.allSettled(this.lanes.map((l) => l.abort()));
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}
