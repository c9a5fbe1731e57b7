import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cocoLikeFile } from './data.js';

/**
 * bench/prepare: ingest + join + Parquet shards (tree stage off) of a seeded COCO-instances-
 * like file with polygon masks, against `JSON.parse` of the whole file (the
 * baseline, timed in the same run). Each measurement is a fresh process, so
 * its peak RSS is its own; medians of --runs runs.
 *
 *   npm run build && node dist/bench/prepare.js [--mb 300] [--runs 3] [--workers auto] [--stream-json]
 *
 * Runs at --mb and at twice --mb, to show whether memory grows with input.
 */
export interface PrepareBenchRow {
  mb: number;
  /** Null when the file is over V8's string limit (512 MiB): JSON.parse cannot read it at all. */
  baseline: { seconds: number; rssMB: number } | null;
  prepare: { seconds: number; rssMB: number };
  ratio: number | null;
}

/** V8 cannot make a string longer than this, so whole-file JSON.parse stops here. */
const V8_MAX_STRING = 0x1fffffe8;

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'child.js');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function measure(args: string[]): { seconds: number; maxRssMB: number; detail: unknown } {
  const out = execFileSync(process.execPath, ['--max-old-space-size=8192', child, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  return JSON.parse(out.trim().split('\n').pop()!) as { seconds: number; maxRssMB: number; detail: unknown };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchPrepare(opts: { mb: number; runs: number; workers: string; streamJson: boolean; log: (s: string) => void }): Promise<PrepareBenchRow[]> {
  const dir = path.join(os.tmpdir(), 'instructify-bench');
  mkdirSync(dir, { recursive: true });
  const rows: PrepareBenchRow[] = [];
  for (const mb of [opts.mb, opts.mb * 2]) {
    const file = path.join(dir, `coco-like-${mb}mb-seed42.json`);
    const size = await cocoLikeFile(file, mb * 1e6, 42);
    const realMB = size / 1e6;
    opts.log(`input ${path.basename(file)}: ${realMB.toFixed(1)} MB`);
    const base: { seconds: number; maxRssMB: number }[] = [];
    const ours: { seconds: number; maxRssMB: number }[] = [];
    const baselinePossible = size < V8_MAX_STRING;
    for (let r = 0; r < opts.runs; r++) {
      if (baselinePossible) base.push(measure(['json-parse', file]));
      const out = path.join(dir, 'out');
      rmSync(out, { recursive: true, force: true });
      // Ingest + join + shards, as the issue defines this benchmark: the tree stage is measured by bench/tree.
      ours.push(measure(['prepare', file, out, opts.workers, 'none']));
      const b = base.at(-1);
      opts.log(
        `  run ${r + 1}: JSON.parse ${baselinePossible ? `${b!.seconds.toFixed(2)}s ${b!.maxRssMB.toFixed(0)}MB RSS` : 'impossible (over the 512 MiB string limit)'} | prepare ${ours.at(-1)!.seconds.toFixed(2)}s ${ours.at(-1)!.maxRssMB.toFixed(0)}MB RSS`,
      );
    }
    if (opts.streamJson && mb === opts.mb) {
      const sj = measure(['stream-json', file]);
      opts.log(`  stream-json token stream (pick + streamArray), 1 run: ${sj.seconds.toFixed(2)}s = ${(realMB / sj.seconds).toFixed(1)} MB/s, ${sj.maxRssMB.toFixed(0)}MB RSS`);
    }
    const b = baselinePossible ? { seconds: median(base.map((x) => x.seconds)), rssMB: median(base.map((x) => x.maxRssMB)) } : null;
    const p = { seconds: median(ours.map((x) => x.seconds)), rssMB: median(ours.map((x) => x.maxRssMB)) };
    rows.push({ mb: realMB, baseline: b, prepare: p, ratio: b ? b.seconds / p.seconds : null });
  }
  return rows;
}

export function formatPrepareBench(rows: PrepareBenchRow[]): string {
  const lines = ['input MB | JSON.parse s (MB/s, RSS MB) | prepare s (MB/s, RSS MB) | throughput ratio (prepare / JSON.parse)'];
  for (const r of rows) {
    const base = r.baseline ? `${r.baseline.seconds.toFixed(2)} (${(r.mb / r.baseline.seconds).toFixed(1)}, ${r.baseline.rssMB.toFixed(0)})` : 'cannot (file over 512 MiB)';
    lines.push(
      `${r.mb.toFixed(0).padStart(8)} | ${base} | ${r.prepare.seconds.toFixed(2)} (${(r.mb / r.prepare.seconds).toFixed(1)}, ${r.prepare.rssMB.toFixed(0)}) | ${r.ratio === null ? 'n/a' : `${r.ratio.toFixed(2)}x`}`,
    );
  }
  if (rows.length === 2) lines.push(`prepare peak RSS when the input doubles: ${rows[0]!.prepare.rssMB.toFixed(0)} MB -> ${rows[1]!.prepare.rssMB.toFixed(0)} MB`);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await benchPrepare({
    mb: Number(arg('mb', '300')),
    runs: Number(arg('runs', '3')),
    workers: arg('workers', 'auto'),
    streamJson: process.argv.includes('--stream-json'),
    log: (s) => process.stdout.write(s + '\n'),
  });
  process.stdout.write('\n' + formatPrepareBench(rows) + '\n');
}
