import { benchPrepare, formatPrepareBench } from './prepare.js';

/** `npm run bench`: every benchmark, then one summary of ratios against their baselines. */
const log = (s: string) => process.stdout.write(s + '\n');
log('== bench/prepare (seeded COCO-like instances; baseline: JSON.parse of the whole file)');
const prepareRows = await benchPrepare({ mb: Number(process.env.BENCH_MB ?? 300), runs: Number(process.env.BENCH_RUNS ?? 3), workers: 'auto', streamJson: true, log });
log(formatPrepareBench(prepareRows));
log('\nsummary');
log('benchmark        | ratio | baseline');
for (const r of prepareRows) log(`prepare ${r.mb.toFixed(0)}MB`.padEnd(16) + ` | ${r.ratio === null ? ' n/a ' : `${r.ratio.toFixed(2)}x`} | JSON.parse of the whole file${r.ratio === null ? ' (impossible over 512 MiB)' : ''}`);
