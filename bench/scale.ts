import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cocoLikeFile } from './data.js';

/**
 * bench/scale: `prepare` (ingest, join, tree, Parquet shards) on 1 GB and
 * 2 GB of seeded COCO-like input, each in a fresh process: throughput and
 * peak RSS at both sizes (RSS must not grow with the input), with the main
 * thread alone (--workers 0, the baseline) and with worker threads
 * (--workers auto: read workers parse while the main thread scans, then
 * lanes build records and write shards), for the speed-up worker threads
 * give on this machine, overall and for the read phase.
 *
 *   npm run build && node dist/bench/scale.js [--gb 1] [--runs 1] [--tree none|tree]
 *
 * Runs at --gb and at twice --gb. Generating the inputs takes a few minutes
 * the first time; they are kept in the temp folder for later runs.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'child.js');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface ScaleRow {
  gb: number;
  workers: string;
  seconds: number;
  mbPerSecond: number;
  rssMB: number;
  /** The read phase alone (parse + join of the input), from prepare's stage times. */
  readSeconds: number;
}

export async function benchScale(opts: { gb: number; runs: number; tree: string; log: (s: string) => void }): Promise<ScaleRow[]> {
  const dir = path.join(os.tmpdir(), 'instructify-bench');
  mkdirSync(dir, { recursive: true });
  const rows: ScaleRow[] = [];
  for (const gb of [opts.gb, opts.gb * 2]) {
    const file = path.join(dir, `coco-like-${gb}gb-seed42.json`);
    opts.log(`making ${gb} GB of seeded input (kept for later runs) ...`);
    const size = await cocoLikeFile(file, gb * 1e9, 42);
    for (const workers of ['0', 'auto']) {
      const runs: { seconds: number; maxRssMB: number; readSeconds: number }[] = [];
      for (let r = 0; r < opts.runs; r++) {
        const out = path.join(dir, 'scale-out');
        rmSync(out, { recursive: true, force: true });
        const res = JSON.parse(execFileSync(process.execPath, [child, 'prepare', file, out, workers, opts.tree], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n').pop()!) as {
          seconds: number;
          maxRssMB: number;
          detail: { stages: Record<string, { seconds: number }> };
        };
        const readSeconds = res.detail.stages.parse!.seconds;
        runs.push({ seconds: res.seconds, maxRssMB: res.maxRssMB, readSeconds });
        opts.log(`  ${(size / 1e9).toFixed(2)} GB, workers ${workers}, run ${r + 1}: ${res.seconds.toFixed(1)} s (reading ${readSeconds.toFixed(1)} s), ${(size / 1e6 / res.seconds).toFixed(1)} MB/s, peak RSS ${res.maxRssMB.toFixed(0)} MB`);
      }
      const seconds = median(runs.map((x) => x.seconds));
      rows.push({ gb: size / 1e9, workers, seconds, mbPerSecond: size / 1e6 / seconds, rssMB: median(runs.map((x) => x.maxRssMB)), readSeconds: median(runs.map((x) => x.readSeconds)) });
    }
  }
  return rows;
}

export function formatScale(rows: ScaleRow[]): string {
  const lines = ['input GB | workers | seconds | reading s | MB/s | peak RSS MB'];
  for (const r of rows) lines.push(`${r.gb.toFixed(2).padStart(8)} | ${r.workers.padEnd(7)} | ${r.seconds.toFixed(1).padStart(7)} | ${r.readSeconds.toFixed(1).padStart(9)} | ${r.mbPerSecond.toFixed(1).padStart(4)} | ${r.rssMB.toFixed(0)}`);
  const at = (gb: number, w: string) => rows.find((r) => Math.abs(r.gb - gb) < 0.3 * gb && r.workers === w);
  const small = rows[0]!.gb;
  const big = rows.at(-1)!.gb;
  for (const w of ['0', 'auto']) {
    const a = at(small, w);
    const b = at(big, w);
    if (a && b) lines.push(`workers ${w}: peak RSS ${a.rssMB.toFixed(0)} MB at ${a.gb.toFixed(1)} GB -> ${b.rssMB.toFixed(0)} MB at ${b.gb.toFixed(1)} GB (x${(b.rssMB / a.rssMB).toFixed(2)} for x${(b.gb / a.gb).toFixed(1)} the input)`);
  }
  for (const gb of [small, big]) {
    const a = at(gb, '0');
    const b = at(gb, 'auto');
    if (a && b) lines.push(`${gb.toFixed(1)} GB: worker threads ${(a.seconds / b.seconds).toFixed(2)}x the main thread alone (reading ${(a.readSeconds / b.readSeconds).toFixed(2)}x)`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await benchScale({ gb: Number(arg('gb', '1')), runs: Number(arg('runs', '1')), tree: arg('tree', 'tree'), log: (s) => process.stdout.write(s + '\n') });
  process.stdout.write('\n' + formatScale(rows) + '\n');
}
