import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { InstructifyError } from '../errors.js';
import { camel, tableRows } from './plain.js';
import { parquetRowGroups } from './parquet-read.js';

/**
 * Reading back what the writers wrote: the one place that knows the shard
 * formats (Parquet through parquet-wasm, Arrow IPC files, JSONL), used by
 * generate, export, stats, verify and the demo.
 */

export const SHARD_FILE = /^part-[\w-]+\.(parquet|jsonl|arrow)$/;

/** Column names are snake_case (`tree_nodes`, `source_id`); record fields are camelCase. */
export function camelKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[camel(k)] = camelKeys(x);
    return out;
  }
  return v;
}

/**
 * Every row of one shard file, as plain objects with camelCase keys.
 * `skip`: Parquet columns not to read, as dotted paths of the file's schema
 * (`tree_nodes`, `boxes.list.item.mask`); those fields are then absent from
 * the rows. Other formats are read whole.
 */
export async function* readShardFile<T>(file: string, skip?: readonly string[]): AsyncGenerator<T> {
  if (file.endsWith('.jsonl')) {
    for (const line of (await readFile(file, 'utf8')).split('\n')) if (line) yield camelKeys(JSON.parse(line)) as T;
    return;
  }
  if (file.endsWith('.arrow')) {
    yield* tableRows<T>(tableFromIPC(readFileSync(file)), camel);
    return;
  }
  // Parquet a row group at a time: a shard of big records is never decoded whole.
  for await (const table of parquetRowGroups(file, undefined, skip)) yield* tableRows<T>(table, camel);
}

/**
 * Check that an input folder was written by the command whose output the
 * caller reads (`generate` reads prepare's, `export` reads generate's), so
 * that the wrong folder gets a message instead of a missing field deep in a
 * record. A folder without a manifest (shards made another way) is taken
 * as it is (null); otherwise the manifest is returned.
 */
export async function expectOutputOf(dir: string, command: 'prepare' | 'generate' | ('prepare' | 'generate')[], reader: string): Promise<Record<string, unknown> | null> {
  const file = path.join(dir, 'manifest.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new InstructifyError('E_OPTION', 'no such folder: is the path right?', { file: dir });
    return null;
  }
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new InstructifyError('E_WRONG_KIND', `manifest.json is not JSON: is ${dir} an instructify output folder?`, { file, cause: err });
  }
  const commands: string[] = Array.isArray(command) ? command : [command];
  if (manifest.command !== undefined && !commands.includes(String(manifest.command))) {
    throw new InstructifyError('E_WRONG_KIND', `this folder holds the output of ${String(manifest.command)}; ${reader} reads the folder ${commands.join(' or ')} writes (its --out)`, { file });
  }
  return manifest;
}

/** Every row of a folder's shards, in shard order. */
export async function* readShards<T>(dir: string, pattern = SHARD_FILE, skip?: readonly string[]): AsyncGenerator<T> {
  const all = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    throw new InstructifyError('E_OPTION', `cannot read the folder (${err.code ?? err.message}): is the path right?`, { file: dir, cause: err });
  });
  const names = all.filter((n) => pattern.test(n)).sort();
  if (!names.length) throw new InstructifyError('E_OPTION', `no shards (part-*.parquet, .jsonl or .arrow) in ${dir}`, { file: dir });
  for (const name of names) yield* readShardFile<T>(path.join(dir, name), skip);
}
