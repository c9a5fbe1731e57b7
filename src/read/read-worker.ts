import { parentPort, workerData } from 'node:worker_threads';
import { forEachBatchValue, type ElementBatch } from './element-batches.js';
import { errorToData } from '../errors.js';
import { FragmentCodec, readOrder } from '../join/fragment-codec.js';
import { FragmentJoin } from '../join/join.js';
import type { FromReadWorker, ReadFileStart, ReadWorkerInit, ToReadWorker } from './read-pool.js';
import { inShard } from './sharding.js';
import { SOURCE_KINDS } from '../sources/index.js';
import type { FileHandler } from '../sources/types.js';
import type { JsonValue } from './json-splitter.js';
import type { Reject } from '../types.js';

/** A read worker: batches of elements in, fragments into its own join, a count per batch out. */
const init = workerData as ReadWorkerInit;
const join = new FragmentJoin({
  memoryBudget: init.memoryBudget,
  partitions: init.partitions,
  codec: new FragmentCodec(init.codec, { frozen: true }),
  spillDir: init.spillDir,
});
const reply = (m: FromReadWorker) => parentPort!.postMessage(m);

interface OpenFile {
  start: ReadFileStart;
  handler: FileHandler;
  /**
   * The handler's onValue, as one function for the file's life: a closure
   * made per batch was compiled again after every full collection (V8 keeps
   * optimised code only while a closure of it lives).
   */
  onValue: (v: JsonValue) => void;
}
let current: OpenFile | null = null;
let fragments = 0;
let rejects: Reject[] = [];
let spill: Promise<void> | undefined;

function openFile(start: ReadFileStart): OpenFile {
  const kind = SOURCE_KINDS.get(start.kind);
  if (!kind) throw new Error(`read worker: unknown source kind ${start.kind}`);
  const handler = kind.handler(start.planned, {
    source: start.source,
    family: start.family,
    state: start.state,
    cocoNaming: start.cocoNaming,
    images: start.images,
    imageDirs: start.imageDirs,
    sink: {
      emit(f) {
        if (!inShard(f.ref, init.shard)) return;
        fragments++;
        const wait = join.add(f, readOrder(start.file, f.prov.offset ?? 0));
        if (wait) spill = wait;
      },
      reject(r) {
        rejects.push(r);
      },
    },
  });
  return { start, handler, onValue: (v) => handler.onValue(v) };
}

async function batch(seq: number, b: ElementBatch): Promise<void> {
  if (!current || current.start.file !== b.file) throw new Error(`read worker: a batch of file ${b.file} came before its file`);
  const { start } = current;
  fragments = 0;
  rejects = [];
  forEachBatchValue(b, start.planned.path, current.onValue);
  // Wait for a spill this batch started before taking the next (memory stays under the budget).
  const wait = spill;
  spill = undefined;
  if (wait) await wait;
  reply({ type: 'batch-done', seq, fragments, rejects });
}

// One message at a time, in order: a file's start comes before its batches.
let queue: Promise<void> = Promise.resolve();
parentPort!.on('message', (msg: ToReadWorker) => {
  queue = queue.then(async () => {
    try {
      if (msg.type === 'file') current = openFile(msg.start);
      else if (msg.type === 'batch') await batch(msg.seq, msg.batch);
      else {
        const spilled = await join.spillAll();
        reply({ type: 'closed', spilled, stats: join.stats });
      }
    } catch (err) {
      reply({ type: 'error', seq: msg.type === 'batch' ? msg.seq : null, error: errorToData(err) });
    }
  });
});
