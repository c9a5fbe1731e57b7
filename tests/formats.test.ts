import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { generate, readShards } from '../src/generate/generate.js';
import { COCO_CAPTIONS, COCO_INSTANCES, duckdb, runPrepare, tmpDir } from './helpers.js';

/** One schema in every format: a JSONL row has the Parquet row's field names, and both read back alike. */
const sources = [
  { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
  { kind: 'coco-instances', paths: [COCO_INSTANCES] },
];

/** Every key path of a JSON value (`boxes[].source_id`), as a sorted list. */
function keyPaths(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return [...new Set(v.flatMap((x) => keyPaths(x, `${at}[]`)))];
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [`${at}${at ? '.' : ''}${k}`, ...keyPaths(x, `${at}${at ? '.' : ''}${k}`)]);
  return [];
}

async function parquetColumns(dir: string): Promise<string[]> {
  const rows = await duckdb<{ column_name: string }>(`select column_name from (describe select * from '${dir}/part-*.parquet')`);
  return rows.map((r) => r.column_name).sort();
}

function jsonlRows(dir: string): Record<string, unknown>[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.jsonl') && n.startsWith('part-'))
    .sort()
    .flatMap((n) => readFileSync(path.join(dir, n), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>));
}

describe('one schema in every format', () => {
  it('prepared records: JSONL keys are the Parquet columns (tree_nodes, source_id), and all three formats read back the same rows', async () => {
    const { out: pq } = await runPrepare({ sources, format: 'parquet' });
    const { out: jl } = await runPrepare({ sources, format: 'jsonl' });
    const { out: ar } = await runPrepare({ sources, format: 'arrow' });
    const lines = jsonlRows(jl);
    expect(Object.keys(lines[0]!).sort()).toEqual(await parquetColumns(pq));
    const paths = new Set(lines.flatMap((l) => keyPaths(l)));
    for (const p of ['tree_nodes', 'tree_nodes[].pixel_pct', 'boxes[].source_id', 'boxes[].iscrowd']) expect(paths.has(p), p).toBe(true);
    expect([...paths].filter((p) => /[A-Z]/.test(p))).toEqual([]);
    const read = async (d: string) => {
      const rows: unknown[] = [];
      for await (const r of readShards(d)) rows.push(r);
      return rows;
    };
    // Parquet and Arrow store coordinates as float32, JSONL as JSON numbers: compared at float32.
    const f32 = (v: unknown): unknown =>
      typeof v === 'number' ? Math.fround(v) : Array.isArray(v) ? v.map(f32) : v && typeof v === 'object' && !(v instanceof Uint8Array) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, f32(x)])) : v;
    const [a, b, c] = (await Promise.all([read(pq), read(jl), read(ar)])).map(f32);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
  });

  it('conversations: JSONL keys are the Parquet columns (prompt_type, max_tokens, tree_description)', async () => {
    const { out } = await runPrepare({ sources });
    const pq = await tmpDir();
    const jl = await tmpDir();
    await generate({ input: out, out: pq, distribution: 'llava', format: 'parquet' });
    await generate({ input: out, out: jl, distribution: 'llava', format: 'jsonl' });
    const lines = jsonlRows(jl);
    expect(Object.keys(lines[0]!).sort()).toEqual(await parquetColumns(pq));
    for (const k of ['prompt_type', 'max_tokens', 'tree_description']) expect(lines[0]).toHaveProperty(k);
  });
});
