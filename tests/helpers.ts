import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The project root, and the shared real-data folder beside it. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED = path.resolve(ROOT, '..', 'shared', 'data');

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { DuckDBInstance } from '@duckdb/node-api';
import { prepare, type PrepareOptions, type PrepareResult } from '../src/prepare/prepare.js';
import { camelKeys } from '../src/write/shard-reader.js';

export const COCO = path.join(SHARED, 'coco');
export const COCO_IMAGES = path.join(COCO, 'val2017');
export const COCO_CAPTIONS = path.join(COCO, 'annotations', 'captions_val2017.json');
export const COCO_INSTANCES = path.join(COCO, 'annotations', 'instances_val2017.json');
export const VG_DIR = path.join(SHARED, 'visual_genome');
export const VQA_QUESTIONS = path.join(SHARED, 'vqav2', 'v2_OpenEnded_mscoco_train2014_questions.json');
export const VQA_ANNOTATIONS = path.join(SHARED, 'vqav2', 'v2_mscoco_train2014_annotations.json');
export const GQA_QUESTIONS = path.join(SHARED, 'gqa', 'gqa_questions.json');
export const GQA_SCENES = path.join(SHARED, 'gqa', 'gqa_scene_graph.json');

/** Folders `tmpDir` made in this test file, removed after it (tests/setup.ts). */
const madeDirs: string[] = [];

export async function tmpDir(prefix = 'instructify-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

/** Remove every folder `tmpDir` has made so far (a run of the suite used to leave about 200 behind). */
export async function removeTmpDirs(): Promise<void> {
  await Promise.all(madeDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Run prepare into a fresh folder with JSONL output (easy to inspect) unless told otherwise. */
export async function runPrepare(opts: Partial<PrepareOptions> & Pick<PrepareOptions, 'sources'>): Promise<{ result: PrepareResult; out: string }> {
  const out = opts.out ?? (await tmpDir());
  const result = await prepare({ images: null, ...opts, out });
  return { result, out };
}

/** Read every JSONL shard of a prepare output, in shard order. */
export async function readJsonlShards<T = Record<string, unknown>>(out: string, result: PrepareResult): Promise<T[]> {
  const rows: T[] = [];
  for (const s of result.shards) {
    const text = await readFile(path.join(out, s.file), 'utf8');
    // JSONL rows have the Parquet column names (tree_nodes); records have camelCase fields, as the shard reader gives them.
    for (const line of text.split('\n')) if (line) rows.push(camelKeys(JSON.parse(line)) as T);
  }
  return rows;
}

/** Query files with DuckDB: an independent reader of what we wrote. */
export async function duckdb<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(sql);
    return reader.getRowObjectsJson() as T[];
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}
