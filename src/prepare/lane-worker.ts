import { parentPort, workerData } from 'node:worker_threads';
import { useParquetModule, type WasmModule } from '../write/parquet-wasm.js';
import { LaneCore, type FromLane, type LaneSettings, type ToLane } from './lanes.js';

/** A lane in a worker thread: partitions in, summaries out, shards written here. */
const { lane, settings, parquet } = workerData as { lane: number; settings: LaneSettings; parquet: WasmModule | null };
if (parquet) useParquetModule(parquet);
const core = new LaneCore(lane, settings);
const reply = (m: FromLane) => parentPort!.postMessage(m);

// Messages are handled one at a time, in order: a partition's records must
// reach the shard writer before the next partition's.
let queue: Promise<void> = Promise.resolve();
parentPort!.on('message', (msg: ToLane) => {
  queue = queue.then(async () => {
    try {
      if (msg.type === 'partition') reply({ type: 'summary', summary: await core.partition(msg.input) });
      else if (msg.type === 'finish') reply({ type: 'finished', shards: await core.finish() });
      else {
        await core.abort();
        reply({ type: 'aborted' });
      }
    } catch (err) {
      reply({ type: 'error', message: (err as Error).message, code: (err as { code?: string }).code });
    }
  });
});
