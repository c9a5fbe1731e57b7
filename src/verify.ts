import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { readShards } from './generate/generate.js';

const require = createRequire(import.meta.url);

/**
 * `verify`: are these output folders (one per shard, or one for all) whole?
 * Every shard complete and as long as its manifest says, nothing unfinished
 * or unlisted, no id twice across folders, no shard of the N missing.
 */
export interface FolderCheck {
  dir: string;
  kind: string;
  status: string;
  shard: { k: number; n: number } | null;
  rows: number;
  problems: string[];
}

export interface VerifyReport {
  folders: FolderCheck[];
  duplicates: { count: number; examples: string[] };
  missingShards: { n: number; missing: number[] }[];
  ok: boolean;
}

async function countRows(file: string): Promise<number> {
  if (file.endsWith('.jsonl')) return (await readFile(file, 'utf8')).split('\n').filter(Boolean).length;
  const bytes = readFileSync(file);
  if (file.endsWith('.arrow')) return tableFromIPC(bytes).numRows;
  return tableFromIPC((require('parquet-wasm/node') as typeof import('parquet-wasm/node')).readParquet(bytes).intoIPCStream()).numRows;
}

export async function verify(dirs: string[]): Promise<VerifyReport> {
  const folders: FolderCheck[] = [];
  const seen = new Set<string>();
  const dupes: string[] = [];
  let dupeCount = 0;
  for (const dir of dirs) {
    const problems: string[] = [];
    let m: { command?: string; status?: string; shard?: { k: number; n: number } | null; shards?: { file: string; rows: number }[]; counts?: { images?: number }; conversations?: number } = {};
    try {
      m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as typeof m;
    } catch {
      problems.push('no readable manifest.json');
    }
    if (m.status !== 'complete') problems.push(`manifest status is "${m.status ?? 'missing'}", not complete`);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) if (n.endsWith('.tmp')) problems.push(`unfinished file ${n}`);
    const listed = new Map((m.shards ?? []).map((s) => [s.file, s.rows]));
    for (const n of names) if (/^part-[\w-]+\.(parquet|jsonl|arrow)$/.test(n) && !listed.has(n)) problems.push(`${n} is not in the manifest`);
    let rows = 0;
    for (const [file, expected] of listed) {
      if (!names.includes(file)) {
        problems.push(`${file} is listed but missing`);
        continue;
      }
      const actual = await countRows(path.join(dir, file));
      rows += actual;
      if (actual !== expected) problems.push(`${file} has ${actual} rows, the manifest says ${expected}`);
    }
    const total = m.command === 'generate' ? m.conversations : m.counts?.images;
    if (total !== undefined && total !== rows) problems.push(`the shards hold ${rows} rows, the manifest counts ${total}`);
    // Identity of a row: a conversation's id, or a prepared record's image.
    const hasShards = names.some((n) => /^part-[\w-]+\.(parquet|jsonl|arrow)$/.test(n));
    for await (const row of hasShards ? readShards<{ id?: string; image: string }>(dir) : []) {
      const key = row.id ?? row.image;
      if (seen.has(key)) {
        dupeCount++;
        if (dupes.length < 5) dupes.push(key);
      } else seen.add(key);
    }
    folders.push({ dir, kind: m.command ?? 'unknown', status: m.status ?? 'missing', shard: m.shard ?? null, rows, problems });
  }
  const byN = new Map<number, Set<number>>();
  for (const f of folders) {
    const n = f.shard?.n ?? 1;
    const k = f.shard?.k ?? 0;
    if (!byN.has(n)) byN.set(n, new Set());
    byN.get(n)!.add(k);
  }
  const missingShards = [...byN].map(([n, ks]) => ({ n, missing: Array.from({ length: n }, (_, i) => i).filter((i) => !ks.has(i)) })).filter((x) => x.missing.length);
  const ok = folders.every((f) => !f.problems.length) && dupeCount === 0 && !missingShards.length;
  return { folders, duplicates: { count: dupeCount, examples: dupes }, missingShards, ok };
}

export function formatVerify(r: VerifyReport): string {
  const lines = r.folders.map((f) => `${f.problems.length ? 'FAIL' : 'ok  '} ${f.dir}: ${f.kind}${f.shard ? ` shard ${f.shard.k} of ${f.shard.n}` : ''}, ${f.rows} rows${f.problems.map((p) => `\n     - ${p}`).join('')}`);
  if (r.duplicates.count) lines.push(`FAIL ${r.duplicates.count} rows appear more than once (e.g. ${r.duplicates.examples.join(', ')})`);
  for (const m of r.missingShards) lines.push(`FAIL missing shard${m.missing.length > 1 ? 's' : ''} ${m.missing.join(', ')} of ${m.n}`);
  lines.push(r.ok ? 'all complete' : 'not complete');
  return lines.join('\n');
}
