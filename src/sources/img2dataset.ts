import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { webRef } from './captions-more.js';
import { writeEmbeddedImage } from './custom.js';
import { setAside } from './records.js';
import { emptyFragment, isObject, num, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * An img2dataset output folder, the way users of CC3M, CC12M and LAION-style
 * sets hold their images: shards `00000/000000001.jpg` with `.json` (url,
 * caption, key, status, width, height) and `.txt`, and one `00000.parquet`
 * per shard with the same columns; or its parquet output (the image bytes
 * in a `jpg` column) or webdataset output (`NNNNN.tar` holding
 * `<key>.jpg`, `<key>.json`, `<key>.txt`), whose pictures are written once
 * under the image root by their hash. Each image that downloaded becomes a
 * catalog record named by its URL, so caption files that name images by URL
 * (conceptual-captions) join it.
 */
async function planImg2dataset(paths: string[]): Promise<PlannedFile[]> {
  const out: PlannedFile[] = [];
  for (const p of paths) {
    const st = await stat(p).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source img2dataset: ${err.message}`, { file: p, cause: err });
    });
    if (!st.isDirectory()) {
      if (p.endsWith('.parquet')) out.push({ path: p, role: 'parquet', first: true, config: { root: path.dirname(p) } });
      else if (p.endsWith('.tar')) out.push({ path: p, role: 'tar', first: true, config: { root: path.dirname(p) } });
      else if (p.endsWith('.json')) out.push({ path: p, role: 'json', first: true, config: { root: path.dirname(path.dirname(p)) } });
      else throw new InstructifyError('E_OPTION', 'source img2dataset takes the output folder (or its NNNNN.parquet, NNNNN.tar or NNNNN/*.json files)', { file: p });
      continue;
    }
    const names = (await readdir(p)).sort();
    const tars = names.filter((n) => /^\d+\.tar$/.test(n));
    if (tars.length) {
      for (const n of tars) out.push({ path: path.join(p, n), role: 'tar', first: true, config: { root: p } });
      continue;
    }
    const parquets = names.filter((n) => /^\d+\.parquet$/.test(n));
    if (parquets.length) {
      for (const n of parquets) out.push({ path: path.join(p, n), role: 'parquet', first: true, config: { root: p } });
      continue;
    }
    // No per-shard Parquet: the per-image .json files of each shard folder.
    const shards = names.filter((n) => /^\d+$/.test(n));
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
  // The files output holds the picture beside its .json; the parquet and webdataset outputs hold its bytes.
  const bytes = row.jpg instanceof Uint8Array ? row.jpg : null;
  f.path = bytes ? writeEmbeddedImage(ctx.images, 'img2dataset', bytes, `${key}.jpg`) : `${shard}/${key}.jpg`;
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
    // webdataset: a sample's entries (<key>.jpg, .json, .txt) come one after another.
    let sample: { key: string; offset: number; row: Record<string, unknown> } | null = null;
    const take = (row: Record<string, unknown>, offset: number) => {
      rows++;
      const r = imageFragment(row, file, ctx, offset, shard);
      if ('reject' in r) setAside(ctx, file, offset, r.reject!);
      else if ('fragment' in r) ctx.sink.emit(r.fragment!);
      else ctx.sink.reject({ reason: 'not-downloaded', detail: `img2dataset could not download ${str(row.url)} (${str(row.error_message) ?? str(row.status)})`, source: ctx.source, file: file.path, offset, image: null });
    };
    const flushSample = () => {
      if (sample && (sample.row.url !== undefined || sample.row.jpg !== undefined)) take({ key: sample.key, ...sample.row }, sample.offset);
      sample = null;
    };
    const onTarEntry = (e: { name: string; data: Uint8Array }, offset: number) => {
      const dot = e.name.lastIndexOf('.');
      const key = path.basename(dot > 0 ? e.name.slice(0, dot) : e.name);
      const ext = dot > 0 ? e.name.slice(dot + 1) : '';
      if (sample?.key !== key) {
        flushSample();
        sample = { key, offset, row: {} };
      }
      if (ext === 'jpg' || ext === 'jpeg' || ext === 'png' || ext === 'webp') sample.row.jpg = e.data;
      else if (ext === 'json') {
        try {
          Object.assign(sample.row, JSON.parse(Buffer.from(e.data).toString('utf8')) as object, { jpg: sample.row.jpg });
        } catch {
          setAside(ctx, file, offset, `${e.name} is not JSON`);
        }
      } else if (ext === 'txt' && sample.row.caption === undefined) sample.row.caption = Buffer.from(e.data).toString('utf8');
    };
    return {
      format: file.role === 'parquet' ? 'parquet' : file.role === 'tar' ? 'tar' : 'text',
      onValue(v) {
        if (file.role === 'tar') return onTarEntry(v.value as { name: string; data: Uint8Array }, v.offset);
        let row: unknown = v.value;
        if (file.role === 'json') {
          try {
            row = JSON.parse(String(v.value));
          } catch (err) {
            throw new InstructifyError('E_JSON_SYNTAX', `not JSON: ${(err as Error).message}`, { file: file.path, source: ctx.source, cause: err });
          }
        }
        if (isObject(row)) take(row, v.offset);
      },
      finish() {
        flushSample();
        if (rows === 0) throw new InstructifyError('E_WRONG_KIND', `img2dataset ${path.relative(root, file.path)}: no image records`, { file: file.path, source: ctx.source });
      },
    };
  },
};
