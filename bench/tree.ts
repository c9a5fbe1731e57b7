import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticImage } from '../src/sources/synthetic.js';
import { rng } from '../src/util/random.js';
import { buildTree } from '../src/tree/build.js';
import type { Box } from '../src/types.js';
import { cocoLikeFile } from './data.js';

/**
 * bench/tree: trees per second for images with 10, 50 and 300 objects with
 * polygon masks (seeded, generated), and the tree's share of a full
 * `prepare` on COCO-like data: prepare with the tree against prepare without
 * it (the baseline), in separate processes, one worker lane and auto.
 * The runs alternate, without then with; besides the share from the two
 * medians it prints each pair's own share, since on a noisy machine a slow
 * minute moves both runs of a pair together.
 *
 *   npm run build && node dist/bench/tree.js [--runs 3] [--mb 60]
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};

function imagesWith(objects: number, count: number, seed: number): { boxes: Box[]; width: number; height: number }[] {
  const r = rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const img = syntheticImage(r, i + 1, { objects: [objects, objects], polygonPoints: 24, width: 640, height: 480 });
    // syntheticImage adds held objects to some people: keep exactly `objects`.
    const boxes = img.objects.slice(0, objects).map(
      (o): Box => ({
        label: o.label,
        x1: o.bbox[0] / img.width,
        y1: o.bbox[1] / img.height,
        x2: (o.bbox[0] + o.bbox[2]) / img.width,
        y2: (o.bbox[1] + o.bbox[3]) / img.height,
        attributes: [],
        relations: [],
        source: 'bench',
        iscrowd: false,
        sourceId: String(o.id),
        mask: { format: 'polygon', polygons: JSON.stringify([o.polygon]), rle: null, height: img.height, width: img.width },
      }),
    );
    return { boxes, width: img.width, height: img.height };
  });
}

export interface TreeBenchResult {
  perSize: { objects: number; treesPerSecond: number; msPerTree: number }[];
  rssMB: number;
  prepare: {
    workers: string;
    withTree: number;
    withoutTree: number;
    /** From the medians: (with - without) / with. */
    share: number;
    /** Per pair of runs made one after the other (without, then with): their shares, low to high. */
    pairShares: number[];
  }[];
}

export async function benchTree(opts: { runs: number; mb: number; log: (s: string) => void }): Promise<TreeBenchResult> {
  const perSize: TreeBenchResult['perSize'] = [];
  for (const objects of [10, 50, 300]) {
    const count = objects === 300 ? 40 : objects === 50 ? 200 : 1000;
    const images = imagesWith(objects, count, 7);
    buildTree(images[0]!); // warm up
    const times: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const t = performance.now();
      for (const img of images) buildTree(img);
      times.push((performance.now() - t) / 1000);
    }
    const s = median(times);
    perSize.push({ objects, treesPerSecond: count / s, msPerTree: (1000 * s) / count });
    opts.log(`  ${String(objects).padStart(3)} objects: ${(count / s).toFixed(0)} trees/s (${((1000 * s) / count).toFixed(2)} ms per tree, median of ${opts.runs})`);
  }
  const rssMB = process.resourceUsage().maxRSS / 1024;
  opts.log(`  peak RSS of the tree runs: ${rssMB.toFixed(0)} MB`);

  const dir = path.join(os.tmpdir(), 'instructify-bench');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `coco-like-${opts.mb}mb-seed42.json`);
  await cocoLikeFile(file, opts.mb * 1e6, 42);
  const prepare: TreeBenchResult['prepare'] = [];
  for (const workers of ['0', 'auto']) {
    const run = (mode: string) => {
      const out = path.join(dir, `tree-out-${mode}`);
      rmSync(out, { recursive: true, force: true });
      const res = execFileSync(process.execPath, [path.join(here, 'child.js'), 'prepare', file, out, workers, mode], { encoding: 'utf8' });
      return (JSON.parse(res.trim().split('\n').pop()!) as { seconds: number }).seconds;
    };
    const withTree: number[] = [];
    const without: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      without.push(run('none'));
      withTree.push(run('tree'));
    }
    const w = median(withTree);
    const n = median(without);
    const pairShares = withTree.map((t, i) => (t - without[i]!) / t).sort((a, b) => a - b);
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    prepare.push({ workers, withTree: w, withoutTree: n, share: (w - n) / w, pairShares });
    opts.log(`  prepare ${opts.mb} MB, workers ${workers}: ${n.toFixed(2)}s without the tree, ${w.toFixed(2)}s with it: the tree is ${pct((w - n) / w)} of the run`);
    opts.log(`    runs without: ${without.map((t) => t.toFixed(2)).join(' ')}; with: ${withTree.map((t) => t.toFixed(2)).join(' ')}`);
    opts.log(`    share per pair of runs: ${pairShares.map(pct).join(' ')} (median ${pct(median(pairShares))})`);
  }
  return { perSize, rssMB, prepare };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const log = (s: string) => process.stdout.write(s + '\n');
  log('bench/tree');
  const r = await benchTree({ runs: Number(arg('runs', '3')), mb: Number(arg('mb', '60')), log });
  const auto = r.prepare.find((p) => p.workers === 'auto')!;
  const single = r.prepare.find((p) => p.workers === '0')!;
  log(`\nshare of tree time in prepare (auto workers): ${(100 * auto.share).toFixed(0)}% from the medians, ${(100 * median(auto.pairShares)).toFixed(0)}% median of the pairs (target: under 33%)`);
  log(`prepare with the tree, auto workers vs the main thread alone: ${(single.withTree / auto.withTree).toFixed(2)}x faster`);
}
