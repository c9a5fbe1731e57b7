import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cocoLikeFile } from './data.js';

/**
 * bench/floor: how fast `prepare` could be on this machine at best, against
 * the same `JSON.parse` baseline as bench/prepare, on the same seeded file.
 * Two parts of prepare cannot be left out whatever the design:
 *
 *   reading: cut every annotation out of the file and JSON.parse it, the
 *            polygons kept as text (the issue's own recipe, "about 0.9x");
 *   writing: parquet-wasm encoding prepare's rows with zstd, from Arrow
 *            already built (no records, no Arrow building).
 *
 * Each is timed alone, and both at once (two processes started together, so
 * each has a core): the second is the best a two-core prepare that did
 * nothing else could do. Prepare itself, one thread and auto workers, is
 * timed in the same run, and what is neither floor part (the join, records,
 * Arrow building) is its one-thread time less the two parts.
 *
 *   npm run build && node dist/bench/floor.js [--mb 300] [--runs 3]
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'child.js');
const run = promisify(execFile);

interface Measured {
  seconds: number;
  maxRssMB: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function lastLine(out: string): Measured {
  return JSON.parse(out.trim().split('\n').pop()!) as Measured;
}

function measure(args: string[], env: NodeJS.ProcessEnv = {}): Measured {
  return lastLine(execFileSync(process.execPath, ['--max-old-space-size=8192', child, ...args], { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, ...env } }));
}

/** Both floor parts at once: each waits for the same start time after its set-up; the pair took as long as the slower. */
async function together(file: string, shards: string): Promise<{ seconds: number; read: number; write: number }> {
  const env = { ...process.env, FLOOR_START_AT: String(Date.now() + 4000) };
  const opts = { encoding: 'utf8' as const, maxBuffer: 1 << 24, env };
  const [r, w] = await Promise.all([run(process.execPath, [child, 'split-parse', file], opts), run(process.execPath, [child, 'parquet-encode', shards], opts)]);
  const read = lastLine(r.stdout).seconds;
  const write = lastLine(w.stdout).seconds;
  return { seconds: Math.max(read, write), read, write };
}

export interface FloorBench {
  mb: number;
  jsonParse: number;
  read: number;
  write: number;
  together: number;
  prepareOneThread: number;
  prepareAuto: number;
}

export async function benchFloor(opts: { mb: number; runs: number; log: (s: string) => void }): Promise<FloorBench> {
  const dir = path.join(os.tmpdir(), 'instructify-bench');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `coco-like-${opts.mb}mb-seed42.json`);
  const size = await cocoLikeFile(file, opts.mb * 1e6, 42);
  const out = path.join(dir, 'floor-out');
  opts.log(`input ${path.basename(file)}: ${(size / 1e6).toFixed(1)} MB`);
  const m = { jsonParse: [] as number[], read: [] as number[], write: [] as number[], together: [] as number[], one: [] as number[], auto: [] as number[] };
  for (let r = 0; r < opts.runs; r++) {
    m.jsonParse.push(measure(['json-parse', file]).seconds);
    rmSync(out, { recursive: true, force: true });
    m.one.push(measure(['prepare', file, out, '0', 'none']).seconds);
    rmSync(out, { recursive: true, force: true });
    // The auto-worker run's shards are what the writing floor encodes.
    m.auto.push(measure(['prepare', file, out, 'auto', 'none']).seconds);
    m.read.push(measure(['split-parse', file]).seconds);
    m.write.push(measure(['parquet-encode', out]).seconds);
    const both = await together(file, out);
    m.together.push(both.seconds);
    opts.log(
      `  run ${r + 1}: JSON.parse ${m.jsonParse.at(-1)!.toFixed(2)}s | read floor ${m.read.at(-1)!.toFixed(2)}s | write floor ${m.write.at(-1)!.toFixed(2)}s | ` +
        `both at once ${both.seconds.toFixed(2)}s (read ${both.read.toFixed(2)}, write ${both.write.toFixed(2)}) | prepare one thread ${m.one.at(-1)!.toFixed(2)}s, auto ${m.auto.at(-1)!.toFixed(2)}s`,
    );
  }
  rmSync(out, { recursive: true, force: true });
  return {
    mb: size / 1e6,
    jsonParse: median(m.jsonParse),
    read: median(m.read),
    write: median(m.write),
    together: median(m.together),
    prepareOneThread: median(m.one),
    prepareAuto: median(m.auto),
  };
}

export function formatFloor(f: FloorBench, target = 0.6): string {
  const ratio = (s: number) => `${(f.jsonParse / s).toFixed(2)}x`;
  const budget = f.jsonParse / target;
  const rest = f.prepareOneThread - f.read - f.write;
  return [
    `input ${f.mb.toFixed(0)} MB, medians; ratio = JSON.parse time / this time (bench/prepare's measure)`,
    `JSON.parse of the whole file      ${f.jsonParse.toFixed(2)} s`,
    `reading floor (split + parse)     ${f.read.toFixed(2)} s  ${ratio(f.read)}`,
    `writing floor (parquet-wasm zstd) ${f.write.toFixed(2)} s  ${ratio(f.write)}`,
    `both floors at once (two cores)   ${f.together.toFixed(2)} s  ${ratio(f.together)}  <- the best any prepare can do here`,
    `prepare, one thread               ${f.prepareOneThread.toFixed(2)} s  ${ratio(f.prepareOneThread)}`,
    `prepare, auto workers             ${f.prepareAuto.toFixed(2)} s  ${ratio(f.prepareAuto)}`,
    `${target}x means prepare within ${budget.toFixed(2)} s: ${(budget - f.together).toFixed(2)} s of wall time beside the floors for the join, records and Arrow building,`,
    `which take ${rest.toFixed(2)} s on one thread (prepare one thread less both floors).`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const f = await benchFloor({ mb: Number(arg('mb', '300')), runs: Number(arg('runs', '3')), log: (s) => process.stdout.write(s + '\n') });
  process.stdout.write('\n' + formatFloor(f) + '\n');
}
