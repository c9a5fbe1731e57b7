import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { webRef } from './captions-more.js';
import { emptyFragment, isObject, num, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * An img2dataset output folder, the way users of CC3M, CC12M and LAION-style
 * sets hold their images: shards `00000/000000001.jpg` with `.json` (url,
 * caption, key, status, width, height) and `.txt`, and one `00000.parquet`
 * per shard with the same columns. Each image that downloaded becomes a
 * catalog record named by its URL, so caption files that name images by URL
 * (conceptual-captions) join it. The webdataset (.tar) variant is not read:
 * extract it, or use the files output.
 */
async function planImg2dataset(paths: string[]): Promise<PlannedFile[]> {
  const out: PlannedFile[] = [];
  for (const p of paths) {
    const st = await stat(p).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source img2dataset: ${err.message}`, { file: p, cause: err });
    });
    if (!st.isDirectory()) {
      if (p.endsWith('.parquet')) out.push({ path: p, role: 'parquet', first: true, config: { root: path.dirname(p) } });
      else if (p.endsWith('.json')) out.push({ path: p, role: 'json', first: true, config: { root: path.dirname(path.dirname(p)) } });
      else throw new InstructifyError('E_OPTION', 'source img2dataset takes the output folder (or its NNNNN.parquet / NNNNN/*.json files)', { file: p });
      continue;
    }
    const names = (await readdir(p)).sort();
    const parquets = names.filter((n) => /^\d+\.parquet$/.test(n));
    if (parquets.length) {
      for (const n of parquets) out.push({ path: path.join(p, n), role: 'parquet', first: true, config: { root: p } });
      continue;
    }
    // No per-shard Parquet: the per-image .json files of each shard folder.
    const shards = names.filter((n) => /^\d+$/.test(n));
    if (names.some((n) => n.endsWith('.tar'))) throw new InstructifyError('E_OPTION', 'this img2dataset folder is in webdataset form (.tar shards): extract the shards, or rerun img2dataset with --output_format files (or parquet)', { file: p });
    for (const s of shards) for (const n of (await readdir(path.join(p, s))).sort()) if (n.endsWith('.json')) out.push({ path: path.join(p, s, n), role: 'json', first: true, config: { root: p } });
    if (!out.length) throw new InstructifyError('E_OPTION', 'no img2dataset shards here (NNNNN.parquet, or NNNNN/ folders with .json files)', { file: p });
  }
  return out;
}

function imageFragment(row: Record<string, unknown>, file: PlannedFile, ctx: HandlerContext, offset: number, shard: string) {
  const url = str(row.url)?.trim();
  const key = str(row.key)?.trim();
  if (!url || !key) return { reject: 'an img2dataset record without url or key' };
  if (row.status !== undefined && row.status !== 'success') return { skip: true };
  const f = emptyFragment(webRef(url), ctx, file.path, offset);
  f.catalog = true;
  f.path = `${shard}/${key}.jpg`;
  const w = num(row.width);
  const h = num(row.height);
  if (w > 0 && h > 0) [f.width, f.height] = [w, h];
  const caption = str(row.caption)?.trim();
  if (caption) f.captions.push(caption);
  return { fragment: f };
}

export const img2dataset: SourceKind = {
  kind: 'img2dataset',
  family: 'web',
  expects: 'an img2dataset output folder: NNNNN.parquet per shard, or NNNNN/*.jpg with .json (url, caption, key, status, width, height)',
  plan: planImg2dataset,
  handler(file: PlannedFile, ctx: HandlerContext): FileHandler {
    // The shard is the folder (or the Parquet file's stem) the images are in.
    const shard = file.role === 'parquet' ? path.basename(file.path, '.parquet') : path.basename(path.dirname(file.path));
    const root = (file.config as { root: string }).root;
    let rows = 0;
    return {
      format: file.role === 'parquet' ? 'parquet' : 'text',
      onValue(v) {
        let row: unknown = v.value;
        if (file.role === 'json') {
          try {
            row = JSON.parse(String(v.value));
          } catch (err) {
            throw new InstructifyError('E_JSON_SYNTAX', `not JSON: ${(err as Error).message}`, { file: file.path, source: ctx.source, cause: err });
          }
        }
        if (!isObject(row)) return;
        rows++;
        const r = imageFragment(row, file, ctx, v.offset, shard);
        if ('reject' in r) ctx.sink.reject({ reason: 'bad-record', detail: r.reject!, source: ctx.source, file: file.path, offset: v.offset, image: null });
        else if ('fragment' in r) ctx.sink.emit(r.fragment!);
        else ctx.sink.reject({ reason: 'not-downloaded', detail: `img2dataset could not download ${str(row.url)} (${str(row.error_message) ?? str(row.status)})`, source: ctx.source, file: file.path, offset: v.offset, image: null });
      },
      finish() {
        if (rows === 0) throw new InstructifyError('E_WRONG_KIND', `img2dataset ${path.relative(root, file.path)}: no image records`, { file: file.path, source: ctx.source });
      },
    };
  },
};
