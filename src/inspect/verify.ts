import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { readShardFile, SHARD_FILE } from '../write/shard-reader.js';

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
    const onDisk = names.filter((n) => SHARD_FILE.test(n)).sort();
    for (const file of listed.keys()) if (!onDisk.includes(file)) problems.push(`${file} is listed but missing`);
    let rows = 0;
    // One read of every shard on disk (listed or not: a stray copy is where duplicates hide)
    // counts its rows and checks each row's identity: a conversation's id, or a record's image.
    for (const file of onDisk) {
      let count = 0;
      for await (const row of readShardFile<{ id?: string; image: string }>(path.join(dir, file))) {
        count++;
        const key = row.id ?? row.image;
        if (seen.has(key)) {
          dupeCount++;
          if (dupes.length < 5) dupes.push(key);
        } else seen.add(key);
      }
      const expected = listed.get(file);
      if (expected === undefined) {
        problems.push(`${file} is not in the manifest`);
        continue;
      }
      rows += count;
      if (count !== expected) problems.push(`${file} has ${count} rows, the manifest says ${expected}`);
    }
    const total = m.command === 'generate' ? m.conversations : m.counts?.images;
    if (total !== undefined && total !== rows) problems.push(`the shards hold ${rows} rows, the manifest counts ${total}`);
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
