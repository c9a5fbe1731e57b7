import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import type { InputFormat } from '../../transforms/record-values.js';
import type { Fragment } from '../types.js';
import { fragmentForPath, recordHandler, sentence, strings, withDistractors } from './records.js';
import { isObject, num, rawBox, str, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * Your own data, without writing code: JSON, JSON Lines, CSV/TSV or Parquet
 * records plus a small mapping file saying which field is what. The mapping
 * is one of the source's paths and is named `*.mapping.json`:
 *
 *   --source custom=birds.mapping.json,birds.csv
 *
 * Every field name may be a dotted path (`meta.file`, `objects.0.name`).
 * Records of one image may be spread over many rows (one box per CSV row is
 * common): the join puts them together.
 */
export interface Mapping {
  /** Image family: the `--image-dir` name, and the namespace of the images' identities. Default "custom". */
  family: string;
  /** json | jsonl | csv | tsv | parquet; default from the data file's extension. */
  format: InputFormat | null;
  /** JSON: the top-level key holding the records (default: any top-level array). */
  records: string | null;
  /** The image: its path relative to the image root; in Parquet also a struct {bytes, path} or bytes. */
  image: string;
  /** With embedded image bytes: the folder under the image root they are written to. Default: the family. */
  imageDir: string | null;
  width: string | null;
  height: string | null;
  captions: string[];
  facts: string[];
  qa: { question: string; answer: string; answers: string | null; choices: string | null }[];
  boxes: {
    /** Field holding a list of box objects; absent: the record itself is one box (one box per CSV row). */
    list: string | null;
    label: string;
    /** Field holding the 4 numbers; or x1/y1/x2/y2 (or x/y/w/h) fields one by one. */
    bbox: string | null;
    fields: string[] | null;
    format: 'xywh' | 'xyxy' | 'cxcywh';
    units: 'pixels' | 'normalized';
  } | null;
  /** A field with LLaVA-style turns ([{from, value}]): pairs become QA (long answers, facts). */
  conversations: string | null;
}

const FORMATS: InputFormat[] = ['json', 'jsonl', 'csv', 'tsv', 'parquet'];

export function get(rec: unknown, field: string): unknown {
  if (field in (rec as object)) return (rec as Record<string, unknown>)[field];
  let v: unknown = rec;
  for (const part of field.split('.')) {
    if (Array.isArray(v)) v = v[Number(part)];
    else if (isObject(v)) v = v[part];
    else return undefined;
  }
  return v;
}

/** Read and check a mapping file: every mistake is named at once, before any data is read. */
export function parseMapping(text: string, file: string): Mapping {
  const bad = (msg: string) => new InstructifyError('E_OPTION', `mapping ${path.basename(file)}: ${msg}`, { file });
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new InstructifyError('E_JSON_SYNTAX', `mapping ${path.basename(file)} is not JSON: ${(err as Error).message}`, { file, cause: err });
  }
  if (!isObject(m)) throw bad('must be a JSON object');
  const known = new Set(['family', 'format', 'records', 'image', 'imageDir', 'width', 'height', 'captions', 'facts', 'qa', 'boxes', 'conversations', 'comment']);
  for (const k of Object.keys(m)) if (!known.has(k)) throw bad(`unknown key "${k}" (known: ${[...known].join(', ')})`);
  const optStr = (k: string): string | null => {
    const v = m[k];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || !v) throw bad(`"${k}" must be a field name`);
    return v;
  };
  const list = (k: string): string[] => {
    const v = m[k];
    if (v === undefined) return [];
    const xs = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(xs) || !xs.every((x) => typeof x === 'string' && x)) throw bad(`"${k}" must be a field name or a list of them`);
    return xs as string[];
  };
  const image = optStr('image');
  if (!image) throw bad('"image" (the field with the image path) is required');
  const family = optStr('family') ?? 'custom';
  if (!/^[\w-]+$/.test(family)) throw bad(`"family" must be letters, digits, - or _ (got "${family}")`);
  const format = optStr('format') as InputFormat | null;
  if (format !== null && !FORMATS.includes(format)) throw bad(`"format" must be one of ${FORMATS.join(', ')}`);
  const qaRaw = m.qa === undefined ? [] : Array.isArray(m.qa) ? m.qa : [m.qa];
  const qa = qaRaw.map((q, i) => {
    if (!isObject(q) || typeof q.question !== 'string' || typeof q.answer !== 'string') throw bad(`qa[${i}] needs "question" and "answer" field names`);
    return { question: q.question, answer: q.answer, answers: typeof q.answers === 'string' ? q.answers : null, choices: typeof q.choices === 'string' ? q.choices : null };
  });
  let boxes: Mapping['boxes'] = null;
  if (m.boxes !== undefined) {
    const b = m.boxes;
    if (!isObject(b) || typeof b.label !== 'string') throw bad('"boxes" needs at least "label" and "bbox" (or x1, y1, x2, y2 / x, y, w, h)');
    const fmt = (b.format ?? 'xywh') as string;
    if (!['xywh', 'xyxy', 'cxcywh'].includes(fmt)) throw bad('"boxes.format" must be xywh, xyxy or cxcywh');
    const units = (b.units ?? 'pixels') as string;
    if (!['pixels', 'normalized'].includes(units)) throw bad('"boxes.units" must be pixels or normalized');
    const fields = ['x1', 'y1', 'x2', 'y2'].every((k) => typeof b[k] === 'string')
      ? [b.x1, b.y1, b.x2, b.y2]
      : ['x', 'y', 'w', 'h'].every((k) => typeof b[k] === 'string')
        ? [b.x, b.y, b.w, b.h]
        : null;
    if (typeof b.bbox !== 'string' && fields === null) throw bad('"boxes" needs "bbox" (a field with 4 numbers) or x1, y1, x2, y2 (or x, y, w, h) field names');
    boxes = { list: typeof b.list === 'string' ? b.list : null, label: b.label, bbox: typeof b.bbox === 'string' ? b.bbox : null, fields: fields as string[] | null, format: fields && 'x2' in b ? 'xyxy' : (fmt as 'xywh'), units: units as 'pixels' };
  }
  const out: Mapping = {
    family,
    format,
    records: optStr('records'),
    image,
    imageDir: optStr('imageDir'),
    width: optStr('width'),
    height: optStr('height'),
    captions: list('captions'),
    facts: list('facts'),
    qa,
    boxes,
    conversations: optStr('conversations'),
  };
  if (!out.captions.length && !out.facts.length && !out.qa.length && !out.boxes && !out.conversations) throw bad('maps nothing: give at least one of captions, facts, qa, boxes, conversations');
  return out;
}

export function formatOf(file: string, m: Mapping): InputFormat {
  if (m.format) return m.format;
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv') return 'tsv';
  if (ext === '.parquet') return 'parquet';
  return 'json';
}

/** LLaVA-style turns: human/gpt pairs; short answers become QA, long ones (descriptions) facts. */
export function turnsToInformation(turns: unknown, f: Fragment): void {
  if (!Array.isArray(turns)) return;
  let question: string | null = null;
  for (const t of turns) {
    if (!isObject(t)) continue;
    const from = str(t.from) ?? str(t.role);
    const value = (str(t.value) ?? str(t.content) ?? '').replace(/<image>\s*/g, '').trim();
    if (!value) continue;
    if (from === 'human' || from === 'user') question = value;
    else if ((from === 'gpt' || from === 'assistant') && question !== null) {
      if (value.length > 200) f.facts.push(...value.split(/\n+/).map((s) => s.trim()).filter(Boolean).map(sentence));
      else f.qa.push({ id: null, question, answer: value, answers: [value] });
      question = null;
    }
  }
}

function boxesOf(rec: Record<string, unknown>, m: NonNullable<Mapping['boxes']>) {
  const items = m.list ? get(rec, m.list) : [rec];
  const out = [];
  for (const it of Array.isArray(items) ? items : []) {
    if (!isObject(it)) continue;
    const label = str(get(it, m.label))?.trim() ?? null;
    const v = m.bbox ? get(it, m.bbox) : m.fields!.map((k) => get(it, k));
    // A row with no box at all (a caption-only CSV row) is not a bad box.
    const blank = (x: unknown) => x === undefined || x === null || x === '';
    if (!label && (Array.isArray(v) ? v.every(blank) : blank(v))) continue;
    const nums = Array.isArray(v) ? v.map(num) : typeof v === 'string' ? v.split(/[\s,;]+/).filter(Boolean).map(Number) : [];
    if (nums.length !== 4) {
      out.push({ error: `box "${label}" has ${nums.length} numbers, expected 4` });
      continue;
    }
    let [a, b, c, d] = nums as [number, number, number, number];
    if (m.format === 'xyxy') [c, d] = [c - a, d - b];
    else if (m.format === 'cxcywh') [a, b] = [a - c / 2, b - d / 2];
    const box = rawBox(label, a, b, c, d);
    if (m.units === 'normalized') box.normalized = true;
    out.push({ box });
  }
  return out;
}

/** Image bytes stored in the data (Hugging Face `image: {bytes, path}`): written once under the image root. */
export function writeEmbeddedImage(images: string | null, dir: string, bytes: Uint8Array, name: string | null): string {
  if (images === null) throw new InstructifyError('E_OPTION', 'the data holds image bytes: give --images, where they are written once');
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const ext = (name && path.extname(name)) || sniffExtension(bytes);
  const rel = `${dir}/${hash}${ext}`;
  const full = path.join(images, rel);
  if (!existsSync(full)) {
    mkdirSync(path.dirname(full), { recursive: true });
    // Written under a temporary name and renamed: a crash never leaves half an image.
    writeFileSync(`${full}.tmp`, bytes);
    renameSync(`${full}.tmp`, full);
  }
  return rel;
}

function sniffExtension(b: Uint8Array): string {
  if (b[0] === 0xff && b[1] === 0xd8) return '.jpg';
  if (b[0] === 0x89 && b[1] === 0x50) return '.png';
  if (b[0] === 0x47 && b[1] === 0x49) return '.gif';
  if (b[0] === 0x52 && b[1] === 0x49) return '.webp';
  return '.img';
}

/**
 * An image as a Hugging Face row holds it: a path, bytes, or `{bytes, path}`;
 * bytes are written once (by their hash) under `<images>/<dir>/`. Returns the
 * path relative to the image root, or null when there is none.
 */
export function embeddedImage(ctx: HandlerContext, dir: string, value: unknown): string | null {
  if (typeof value === 'string' || typeof value === 'number') return String(value).trim() || null;
  if (value instanceof Uint8Array) return value.length ? writeEmbeddedImage(ctx.images, dir, value, null) : null;
  if (isObject(value)) {
    const bytes = value.bytes;
    if (bytes instanceof Uint8Array && bytes.length) return writeEmbeddedImage(ctx.images, dir, bytes, str(value.path));
    return str(value.path)?.trim() || null;
  }
  return null;
}

export function mappedHandler(file: PlannedFile, ctx: HandlerContext, m: Mapping, what: string) {
  const format = formatOf(file.path, m);
  return recordHandler(file, ctx, {
    what,
    format,
    arrayKey: m.records ?? undefined,
    required: [],
    onRecord(rec, v) {
      const where = { source: ctx.source, file: file.path, offset: v.offset };
      const rel = embeddedImage(ctx, m.imageDir ?? m.family, get(rec, m.image));
      if (!rel) {
        ctx.sink.reject({ reason: 'bad-record', detail: `${what} record ${v.index}: no image in field "${m.image}"`, ...where, image: null });
        return;
      }
      const f = fragmentForPath(rel, m.family, ctx, file.path, v.offset);
      const w = m.width ? num(get(rec, m.width)) : NaN;
      const h = m.height ? num(get(rec, m.height)) : NaN;
      if (w > 0 && h > 0) {
        f.width = w;
        f.height = h;
      }
      for (const k of m.captions) f.captions.push(...strings(get(rec, k)));
      for (const k of m.facts) f.facts.push(...strings(get(rec, k)).map(sentence));
      for (const q of m.qa) {
        const question = str(get(rec, q.question))?.trim();
        const answers = strings(get(rec, q.answer));
        if (!question || !answers.length) continue;
        const all = q.answers ? strings(get(rec, q.answers)) : answers;
        const choices = q.choices ? strings(get(rec, q.choices)) : [];
        f.qa.push({ id: null, question, answer: choices.length ? withDistractors(answers[0]!, choices.filter((c) => c !== answers[0])) : answers[0]!, answers: all.length ? all : answers });
      }
      if (m.boxes) {
        for (const b of boxesOf(rec, m.boxes)) {
          if ('error' in b) ctx.sink.reject({ reason: 'bad-box', detail: `${what} record ${v.index}: ${b.error}`, ...where, image: rel });
          else f.boxes.push(b.box);
        }
      }
      if (m.conversations) turnsToInformation(get(rec, m.conversations), f);
      ctx.sink.emit(f);
    },
  });
}

/** A source's paths: the `*.mapping.json` among them (read and checked now), and the data files (checked to exist). */
async function mappingAndData(kind: string, paths: string[]): Promise<{ mapping: Mapping | null; data: string[] }> {
  const mappingFile = paths.find((p) => p.endsWith('.mapping.json'));
  const mapping = mappingFile ? parseMapping(readFileSync(mappingFile, 'utf8'), mappingFile) : null;
  const data = paths.filter((p) => p !== mappingFile);
  if (!data.length) throw new InstructifyError('E_OPTION', `source ${kind} names no data file${mappingFile ? `: add the data files after ${path.basename(mappingFile)}` : ''}`);
  for (const p of data) if (p !== '-') await checkFile(kind, p);
  return { mapping, data };
}

async function checkFile(kind: string, p: string): Promise<void> {
  const st = await stat(p).catch((err: Error) => {
    throw new InstructifyError('E_IO', `cannot read input for source ${kind}: ${err.message}`, { file: p, cause: err });
  });
  if (st.isDirectory()) throw new InstructifyError('E_OPTION', `source ${kind}: give files, not the folder ${p}`, { file: p });
}

export const custom: SourceKind = {
  kind: 'custom',
  family: 'custom',
  expects: 'a *.mapping.json (which field is the image, captions, facts, qa, boxes, conversations) and JSON / JSONL / CSV / TSV / Parquet data files',
  async plan(paths) {
    const { mapping, data } = await mappingAndData('custom', paths);
    if (!mapping) throw new InstructifyError('E_OPTION', 'source custom needs a mapping file named *.mapping.json among its paths, e.g. custom=birds.mapping.json,birds.csv');
    return data.map((p) => ({ path: p, role: 'data', config: mapping }));
  },
  handler: (file, ctx) => mappedHandler(file, { ...ctx, family: (file.config as Mapping).family }, file.config as Mapping, `custom data ${path.basename(file.path)}`),
};

/** The usual column names of Hugging Face image datasets, as a mapping. */
function guessHfMapping(fields: string[]): Mapping {
  const has = (k: string) => fields.includes(k);
  const pick = (...ks: string[]) => ks.filter(has);
  return {
    family: 'hf',
    format: 'parquet',
    records: null,
    image: pick('image', 'img', 'image_path', 'file_name', 'filename')[0] ?? 'image',
    imageDir: null,
    width: has('width') ? 'width' : null,
    height: has('height') ? 'height' : null,
    captions: pick('caption', 'captions', 'sentences', 'text', 'alt_text'),
    facts: [],
    qa: has('question') && (has('answer') || has('answers')) ? [{ question: 'question', answer: has('answer') ? 'answer' : 'answers', answers: has('answers') ? 'answers' : null, choices: has('choices') ? 'choices' : has('options') ? 'options' : null }] : [],
    boxes: null,
    conversations: has('conversations') ? 'conversations' : has('messages') ? 'messages' : null,
  };
}

/**
 * Hugging Face datasets' Parquet files, with the usual column names guessed
 * (image, caption/captions/text, question/answer(s), conversations) unless a
 * mapping file says otherwise. Images stored in the file as bytes are
 * written once under `<images>/<family>/` and sized with sharp like any other.
 */
export const hfParquet: SourceKind = {
  kind: 'hf-parquet',
  family: 'hf',
  expects: 'Hugging Face dataset *.parquet files [+ a *.mapping.json when the columns are not the usual ones]',
  async plan(paths) {
    const { mapping, data } = await mappingAndData('hf-parquet', paths);
    return data.map((p) => ({ path: p, role: 'data', config: mapping ? { ...mapping, format: 'parquet' } : null }));
  },
  handler(file, ctx) {
    const what = `Hugging Face Parquet ${path.basename(file.path)}`;
    const given = file.config as Mapping | null;
    // Without a mapping, the columns are guessed from the first row.
    let inner: ReturnType<typeof mappedHandler> | null = given ? mappedHandler(file, ctx, given, what) : null;
    return {
      format: 'parquet' as const,
      onValue(v) {
        inner ??= mappedHandler(file, ctx, guessHfMapping(isObject(v.value) ? Object.keys(v.value) : []), what);
        inner.onValue(v);
      },
      finish() {
        if (inner === null) throw new InstructifyError('E_WRONG_KIND', 'the Parquet file has no rows', { file: file.path, source: ctx.source });
        inner.finish();
      },
    };
  },
};

/**
 * LLaVA-format instruction data (`llava_v1_5_mix665k.json` and the like: a
 * top-level array of {id, image, conversations}) as a source: existing
 * turns become information for new conversations. Images named by COCO,
 * Visual Genome/GQA or TextVQA paths join those datasets' images.
 */
export const llava: SourceKind = {
  kind: 'llava',
  family: 'llava',
  expects: 'LLaVA-format JSON or JSONL ({id, image, conversations: [{from, value}]})',
  plan: async (paths) => paths.map((p) => ({ path: p, role: 'llava' })),
  handler(file, ctx) {
    const jsonl = /\.jsonl$/i.test(file.path);
    return recordHandler(file, ctx, {
      what: 'LLaVA conversations',
      format: jsonl ? 'jsonl' : 'json',
      arrayKey: null,
      required: ['conversations'],
      onRecord(el, v) {
        const image = str(el.image);
        // Text-only samples (no image) have nothing to add about an image.
        if (!image) return;
        const f = fragmentForPath(image, 'llava', ctx, file.path, v.offset);
        turnsToInformation(el.conversations, f);
        if (f.qa.length || f.facts.length) ctx.sink.emit(f);
      },
    });
  },
};
