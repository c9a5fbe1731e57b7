import { benchPrepare, formatPrepareBench } from './prepare.js';
import { benchTree } from './tree.js';

/** `npm run bench`: every benchmark, then one summary of ratios against their baselines. */
const log = (s: string) => process.stdout.write(s + '\n');
log('== bench/prepare (seeded COCO-like instances; baseline: JSON.parse of the whole file)');
const prepareRows = await benchPrepare({ mb: Number(process.env.BENCH_MB ?? 300), runs: Number(process.env.BENCH_RUNS ?? 3), workers: 'auto', streamJson: true, log });
log(formatPrepareBench(prepareRows));
log('\n== bench/tree (seeded scenes with polygon masks; baseline: prepare without the tree)');
const tree = await benchTree({ runs: Number(process.env.BENCH_RUNS ?? 3), mb: 60, log });
log('\nsummary');
log('benchmark        | ratio | baseline');
const autoTree = tree.prepare.find((p) => p.workers === 'auto')!;
log(`tree share of prepare | ${(100 * autoTree.share).toFixed(0)}% | prepare without the tree (target: under 33%)`);
for (const r of prepareRows) log(`prepare ${r.mb.toFixed(0)}MB`.padEnd(16) + ` | ${r.ratio === null ? ' n/a ' : `${r.ratio.toFixed(2)}x`} | JSON.parse of the whole file${r.ratio === null ? ' (impossible over 512 MiB)' : ''}`);
