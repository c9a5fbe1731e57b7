import { benchFloor, formatFloor } from './floor.js';
import { benchPrepare, formatPrepareBench } from './prepare.js';
import { benchTree } from './tree.js';
import { benchGenerate } from './generate.js';
import { benchScale, formatScale } from './scale.js';

/**
 * `npm run bench`: every benchmark, then one summary of ratios against their
 * baselines. Smaller, quicker: BENCH_MB=20 BENCH_RUNS=1 BENCH_IMAGES=300 npm run bench
 * bench/scale runs last, at 1 and 2 GB (about 25 minutes): BENCH_SCALE_GB=0
 * leaves it out, BENCH_SCALE_GB=0.25 makes it smaller.
 */
const log = (s: string) => process.stdout.write(s + '\n');
log('== bench/prepare (seeded COCO-like instances; baseline: JSON.parse of the whole file)');
const prepareRows = await benchPrepare({ mb: Number(process.env.BENCH_MB ?? 300), runs: Number(process.env.BENCH_RUNS ?? 3), workers: 'auto', streamJson: true, log });
log(formatPrepareBench(prepareRows));
log('\n== bench/floor (what prepare cannot go below here: reading and Parquet encoding alone; baseline: JSON.parse)');
const floor = await benchFloor({ mb: Number(process.env.BENCH_MB ?? 300), runs: Number(process.env.BENCH_RUNS ?? 3), log });
log(formatFloor(floor));
log('\n== bench/tree (seeded scenes with polygon masks; baseline: prepare without the tree)');
const tree = await benchTree({ runs: Number(process.env.BENCH_RUNS ?? 3), mb: 60, log });
log('\n== bench/generate (loopback server, fixed latency and capacity; baseline: the C/L ideal, and 80 workers with an image each)');
const gen = await benchGenerate({ images: Number(process.env.BENCH_IMAGES ?? 2000), latency: 200, capacity: 256, log });
const scaleGb = Number(process.env.BENCH_SCALE_GB ?? 1);
const scale = scaleGb > 0 ? await benchScale({ gb: scaleGb, runs: 1, tree: 'tree', log }) : null;
if (scale) log('\n== bench/scale (prepare at two sizes; baseline: the main thread alone)\n' + formatScale(scale));
log('\nsummary');
log('benchmark        | ratio | baseline');
const autoTree = tree.prepare.find((p) => p.workers === 'auto')!;
log(`generate requests/s   | ${gen.ratio.toFixed(2)} | the ideal C/L (target 0.9); ${(gen.rate / gen.baselineRate).toFixed(2)}x the 80-worker baseline`);
log(`tree share of prepare | ${(100 * autoTree.share).toFixed(0)}% | prepare without the tree (target: under 33%)`);
log(`prepare floor        | ${(floor.jsonParse / floor.together).toFixed(2)}x | JSON.parse; reading and Parquet encoding alone, at once on two cores`);
for (const r of prepareRows) log(`prepare ${r.mb.toFixed(0)}MB`.padEnd(16) + ` | ${r.ratio === null ? ' n/a ' : `${r.ratio.toFixed(2)}x`} | JSON.parse of the whole file${r.ratio === null ? ' (impossible over 512 MiB)' : ''}`);
if (scale) {
  const workers = scale.filter((r) => r.workers === 'auto');
  const one = scale.filter((r) => r.workers === '0');
  log(`scale RSS, 2x input   | ${(workers.at(-1)!.rssMB / workers[0]!.rssMB).toFixed(2)}x | peak RSS at the smaller input, worker threads (target: flat)`);
  log(`scale RSS, 2x, 1 thread | ${(one.at(-1)!.rssMB / one[0]!.rssMB).toFixed(2)}x | the same, main thread alone`);
  log(`worker threads speed-up | ${(one.at(-1)!.seconds / workers.at(-1)!.seconds).toFixed(2)}x | the main thread alone (reading: ${(one.at(-1)!.readSeconds / workers.at(-1)!.readSeconds).toFixed(2)}x)`);
}
