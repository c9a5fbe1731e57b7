import { readFileSync } from 'node:fs';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from '../src/commands/heap-growth.js';
import { prepare } from '../src/prepare/prepare.js';

/**
 * One measured run in a fresh process, so peak RSS belongs to that run
 * alone. Prints {seconds, maxRssMB} as JSON.
 *   node dist/bench/child.js json-parse FILE
 *   node dist/bench/child.js stream-json FILE
 *   node dist/bench/child.js prepare FILE OUT [workers] [tree|flat|none]
 *   node dist/bench/child.js split-parse FILE        (bench/floor: reading's floor)
 *   node dist/bench/child.js parquet-encode SHARDDIR (bench/floor: writing's floor)
 */
const [mode, file, out, workers, treeMode] = process.argv.slice(2);

/**
 * The floor modes time themselves from here. With FLOOR_START_AT (a
 * Date.now() time) they first wait for it, so that two of them started
 * together run their timed parts at the same time, whatever their set-up took.
 */
async function startSignal(): Promise<number> {
  const at = Number(process.env.FLOOR_START_AT ?? 0);
  if (at > Date.now()) await new Promise((r) => setTimeout(r, at - Date.now()));
  return performance.now();
}

function done(start: number, d: unknown): never {
  process.stdout.write(JSON.stringify({ seconds: (performance.now() - start) / 1000, maxRssMB: process.resourceUsage().maxRSS / 1024, detail: d }) + '\n');
  process.exit(0);
}
const t0 = performance.now();
let detail: unknown = null;
if (mode === 'json-parse') {
  // The baseline: read the whole file and parse it in one call.
  const data = JSON.parse(readFileSync(file!, 'utf8')) as { annotations: unknown[] };
  detail = { annotations: data.annotations.length };
} else if (mode === 'stream-json') {
  // A token-level streaming parser, for comparison with our element splitter.
  const { parser } = await import('stream-json');
  const { pick } = await import('stream-json/filters/pick.js');
  const { streamArray } = await import('stream-json/streamers/stream-array.js');
  const { default: chain } = await import('stream-chain');
  const { createReadStream } = await import('node:fs');
  let n = 0;
  const stream = chain([createReadStream(file!), parser({ streamValues: false }), pick({ filter: 'annotations' }), streamArray()]);
  stream.on('data', () => n++);
  await new Promise<void>((resolve, reject) => stream.on('end', resolve).on('error', reject));
  detail = { annotations: n };
} else if (mode === 'prepare') {
  // As `instructify prepare` runs: the CLI sets the heap growth before it starts.
  setHeapGrowth(DEFAULT_HEAP_GROWTH_PERCENT);
  const r = await prepare({
    sources: [{ kind: 'coco-instances', paths: [file!] }],
    images: null,
    out: out!,
    workers: workers === undefined ? 'auto' : workers === 'auto' ? 'auto' : Number(workers),
    tree: { mode: (treeMode as 'tree' | 'flat' | 'none' | undefined) ?? 'tree' },
  });
  detail = { images: r.counts.images, boxes: r.counts.boxes, shards: r.shards.length, spills: r.join.spills, stages: r.stages };
} else if (mode === 'split-parse') {
  // What reading cannot go below: cut out every element and JSON.parse it
  // (polygons kept as text, as prepare does), one thread, and nothing else.
  const { createReadStream } = await import('node:fs');
  const { createJsonSplitter } = await import('../src/read/json-splitter.js');
  const { COCO_INSTANCES_SPLIT } = await import('../src/sources/coco.js');
  let values = 0;
  const start = await startSignal();
  const splitter = createJsonSplitter({ file: file!, ...COCO_INSTANCES_SPLIT }, () => values++);
  for await (const chunk of createReadStream(file!, { highWaterMark: 1 << 20 })) splitter.push(chunk as Buffer);
  splitter.end();
  done(start, { values });
} else if (mode === 'parquet-encode') {
  // What writing cannot go below: parquet-wasm encoding prepare's finished
  // rows (read back from its shards as Arrow, outside the clock) with the
  // shard writer's own properties, one thread. No records, no Arrow building.
  const { readdirSync } = await import('node:fs');
  const path = await import('node:path');
  const { parquetWasm } = await import('../src/write/parquet-wasm.js');
  const { writerProperties } = await import('../src/write/shards.js');
  const { preparedSchema } = await import('../src/write/schema.js');
  const pq = await parquetWasm();
  const shards = readdirSync(file!).filter((f) => f.endsWith('.parquet'));
  const tables = shards.map((f) => pq.readParquet(readFileSync(path.join(file!, f))).intoIPCStream());
  // Timed from here: reading the shards back is not part of the floor.
  const start = await startSignal();
  let bytes = 0;
  for (const ipc of tables) bytes += pq.writeParquet(pq.Table.fromIPCStream(ipc), writerProperties(pq, 1000, [...preparedSchema.metadata])).length;
  done(start, { shards: shards.length, bytes });
} else {
  throw new Error(`unknown mode ${mode}`);
}
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({ seconds, maxRssMB: process.resourceUsage().maxRSS / 1024, detail }) + '\n');
