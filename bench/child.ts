import { readFileSync } from 'node:fs';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from '../src/heap.js';
import { prepare } from '../src/prepare.js';

/**
 * One measured run in a fresh process, so peak RSS belongs to that run
 * alone. Prints {seconds, maxRssMB} as JSON.
 *   node dist/bench/child.js json-parse FILE
 *   node dist/bench/child.js stream-json FILE
 *   node dist/bench/child.js prepare FILE OUT [workers] [tree|flat|none]
 */
const [mode, file, out, workers, treeMode] = process.argv.slice(2);
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
} else {
  throw new Error(`unknown mode ${mode}`);
}
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({ seconds, maxRssMB: process.resourceUsage().maxRSS / 1024, detail }) + '\n');
