import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processPartition, type EmitConfig, type PartitionSummary } from './emit.js';
import { InstructifyError } from './errors.js';
import type { PartitionInput } from './join.js';
import { ShardWriter, type ShardFormat, type ShardInfo } from './shards.js';

/**
 * The emit phase runs in lanes. Lane `w` of `W` takes partitions p with
 * p % W == w, in order, builds their records and writes its own shards
 * (`part-<w>-<n>`). A lane is a worker thread, or the main thread itself
 * when there are no workers: the same `LaneCore` either way.
 */
export interface LaneSettings {
  config: EmitConfig;
  out: string;
  format: ShardFormat;
  rowsPerShard: number;
  rowGroupRows: number;
  metadata: [string, string][];
}

export class LaneCore {
  private readonly writer: ShardWriter;
  constructor(
    lane: number,
    private readonly s: LaneSettings,
  ) {
    this.writer = new ShardWriter({ dir: s.out, prefix: `part-${lane}`, format: s.format, rowsPerShard: s.rowsPerShard, rowGroupRows: s.rowGroupRows, metadata: s.metadata });
  }

  async partition(input: PartitionInput): Promise<PartitionSummary> {
    const { records, summary } = await processPartition(input, this.s.config);
    summary.ms.write += await this.writer.add(records);
    return summary;
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
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'workers', 'lane-worker.js');
  return path.join(path.dirname(here), '..', 'dist', 'src', 'workers', 'lane-worker.js');
}

interface Lane {
  send(msg: ToLane): void;
  /** Summaries not yet received, per lane: bounded for backpressure. */
  inFlight: number;
  close(): Promise<void>;
}

/**
 * Runs partitions through W lanes and hands back their summaries in
 * partition order (so rejects.jsonl is the same whatever the timing).
 */
export class LanePool {
  private readonly lanes: Lane[] = [];
  private readonly local: LaneCore | null = null;
  private readonly waiting = new Map<number, PartitionSummary>();
  private readonly finished: ShardInfo[][] = [];
  private error: Error | null = null;
  private wake: (() => void) | null = null;
  private finishedCount = 0;

  constructor(
    readonly workers: number,
    settings: LaneSettings,
    private readonly maxInFlightPerLane = 2,
  ) {
    if (workers === 0) {
      this.local = new LaneCore(0, settings);
      return;
    }
    for (let w = 0; w < workers; w++) {
      const worker = new Worker(laneWorkerFile(), { workerData: { lane: w, settings } });
      const lane: Lane = {
        inFlight: 0,
        send: (msg) => worker.postMessage(msg),
        close: async () => {
          await worker.terminate();
        },
      };
      worker.on('message', (m: FromLane) => {
        if (m.type === 'summary') {
          lane.inFlight--;
          this.waiting.set(m.summary.partition, m.summary);
        } else if (m.type === 'finished') {
          this.finished[w] = m.shards;
          this.finishedCount++;
        } else if (m.type === 'error') {
          this.error ??= new InstructifyError((m.code as 'E_IO') ?? 'E_INTERNAL', `worker lane ${w}: ${m.message}`);
        } else if (m.type === 'aborted') {
          this.finishedCount++;
        }
        this.wake?.();
      });
      worker.on('error', (err) => {
        this.error ??= err;
        this.wake?.();
      });
      this.lanes.push(lane);
    }
  }

  private async waitFor(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    if (this.error) throw this.error;
  }

  /**
   * Process partitions in order; yields each summary in partition order.
   * Waits while a lane has `maxInFlightPerLane` partitions outstanding.
   */
  async *run(partitions: AsyncIterable<PartitionInput>): AsyncGenerator<PartitionSummary> {
    if (this.local) {
      for await (const input of partitions) yield await this.local.partition(input);
      return;
    }
    const order: number[] = [];
    const drain = function* (this: LanePool): Generator<PartitionSummary> {
      while (order.length && this.waiting.has(order[0]!)) {
        const p = order.shift()!;
        const s = this.waiting.get(p)!;
        this.waiting.delete(p);
        yield s;
      }
    }.bind(this);
    for await (const input of partitions) {
      const lane = this.lanes[input.partition % this.lanes.length]!;
      await this.waitFor(() => lane.inFlight < this.maxInFlightPerLane);
      yield* drain();
      lane.inFlight++;
      order.push(input.partition);
      lane.send({ type: 'partition', input });
    }
    while (order.length) {
      await this.waitFor(() => this.waiting.has(order[0]!));
      yield* drain();
    }
  }

  /** Flush every lane's last shard; shards in lane order. */
  async finish(): Promise<ShardInfo[]> {
    if (this.local) return this.local.finish();
    for (const lane of this.lanes) lane.send({ type: 'finish' });
    await this.waitFor(() => this.finishedCount === this.lanes.length);
    return this.finished.flat();
  }

  /** After a failure: lanes remove unfinished shards, then stop. */
  async abort(): Promise<void> {
    if (this.local) return this.local.abort();
    this.error = null;
    this.finishedCount = 0;
    for (const lane of this.lanes) lane.send({ type: 'abort' });
    await Promise.race([this.waitFor(() => this.finishedCount >= this.lanes.length), new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}
