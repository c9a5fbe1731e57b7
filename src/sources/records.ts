import { InstructifyError } from '../errors.js';
import type { JsonValue } from '../read/json-splitter.js';
import type { InputFormat } from '../../transforms/record-values.js';
import type { Fragment } from '../types.js';
import { cocoRef } from './coco.js';
import { vgRef } from './visual-genome.js';
import { emptyFragment, isObject, keysOf, type FileHandler, type HandlerContext, type PlannedFile } from './types.js';

/**
 * The shape most datasets share: a list of records (a top-level array, an
 * array under a key such as "data", JSON Lines, or CSV rows), each about one
 * image. `recordHandler` checks the first record has the keys the loader
 * needs (a wrong file fails at once, naming what it found), sets aside
 * records that are not objects, and hands the rest to the loader.
 */
export interface RecordHandlerOptions {
  /** What the loader reads, for messages ("TextVQA questions"). */
  what: string;
  format?: InputFormat;
  /** Top-level key holding the records; null: a top-level array; a list: any of them. Default: any array. */
  arrayKey?: string | null | (string | null)[];
  /** Keys the first record must have. */
  required: string[];
  /** Top-level keys to skip unparsed. */
  skipKeys?: string[];
  /** A top-level object keyed by record id (ScienceQA's problems.json): each value is a record. */
  objectOfRecords?: boolean;
  onRecord(rec: Record<string, unknown>, v: JsonValue): void;
  finish?(): void;
}

export function recordHandler(file: PlannedFile, ctx: HandlerContext, o: RecordHandlerOptions): FileHandler {
  let checked = false;
  let records = 0;
  const keys = o.arrayKey === undefined ? null : Array.isArray(o.arrayKey) ? o.arrayKey : [o.arrayKey];
  return {
    format: o.format ?? 'json',
    skipKeys: o.skipKeys ? new Set(o.skipKeys) : undefined,
    onValue(v) {
      const isRecordValue = o.objectOfRecords ? v.key !== null && v.index === -1 : v.index >= 0 && (keys === null || keys.includes(v.key));
      if (!isRecordValue) return;
      const el = v.value;
      if (!isObject(el)) {
        ctx.sink.reject({ reason: 'bad-record', detail: `${o.what}: record ${v.index >= 0 ? v.index : v.key} is not an object`, source: ctx.source, file: file.path, offset: v.offset, image: null });
        return;
      }
      if (!checked) {
        checked = true;
        const missing = o.required.filter((k) => !(k in el));
        if (missing.length) {
          throw new InstructifyError('E_WRONG_KIND', `${o.what} records need the keys ${o.required.join(', ')}; the first record has ${keysOf(el)} (missing ${missing.join(', ')})`, {
            file: file.path,
            offset: v.offset,
            source: ctx.source,
          });
        }
      }
      records++;
      o.onRecord(el, v);
    },
    finish() {
      if (records === 0) {
        const where = keys === null ? 'a list of records' : `records under ${keys.map((k) => (k === null ? 'a top-level array' : `"${k}"`)).join(' or ')}`;
        throw new InstructifyError('E_WRONG_KIND', `${o.what}: found no records (expected ${where})`, { file: file.path, source: ctx.source });
      }
      o.finish?.();
    },
  };
}

/**
 * The identity of an image given by its path in another dataset's release:
 * COCO files (`COCO_train2014_000000123456.jpg`, `train2017/000000123456.jpg`)
 * join the COCO image, Visual Genome files (`VG_100K/2345.jpg`) the VG image
 * (and through it COCO); anything else is its own image in `family`, keyed by
 * its path.
 */
export function refForPath(p: string, family: string, ctx: HandlerContext): { ref: string; path: string } {
  const clean = p.replace(/\\/g, '/').replace(/^\.\//, '');
  const coco = /(?:^|\/)(?:COCO_(?:train|val|test)20\d\d_)?(\d{12})\.jpg$/.exec(clean);
  if (coco && (/coco|COCO_|train20\d\d|val20\d\d/.test(clean) || /^\d{12}\.jpg$/.test(clean))) return { ref: cocoRef(Number(coco[1])), path: clean };
  const vg = /(?:^|\/)(?:VG_100K(?:_2)?|gqa\/images)\/(\d+)\.jpg$/.exec(clean);
  if (vg) return { ref: vgRef(Number(vg[1]), ctx.state), path: clean };
  const textvqa = /(?:^|\/)textvqa\/train_images\/(\w+)\.jpg$/.exec(clean);
  if (textvqa) return { ref: `textvqa:${textvqa[1]}`, path: clean };
  return { ref: `${family}:${clean}`, path: clean };
}

/** A fragment for an image named by path (see refForPath); the path is a hint, not a catalog entry. */
export function fragmentForPath(p: string, family: string, ctx: HandlerContext, file: string, offset: number): Fragment {
  const { ref, path } = refForPath(p, family, ctx);
  const f = emptyFragment(ref, ctx, file, offset);
  f.path = path;
  return f;
}

/** "(not a, not b)" after an answer: the wrong options a dataset offers, as METHOD.md asks for distractors. */
export function withDistractors(answer: string, wrong: string[]): string {
  const others = wrong.map((w) => w.trim()).filter((w) => w && w.toLowerCase() !== answer.toLowerCase());
  return others.length ? `${answer} (${others.map((w) => `not ${w}`).join(', ')})` : answer;
}

/** A statement ends with a full stop. */
export function sentence(s: string): string {
  const t = s.trim();
  return t === '' || /[.!?]["')]?$/.test(t) ? t : `${t}.`;
}

export function strings(v: unknown): string[] {
  if (typeof v === 'string') return v.trim() ? [v.trim()] : [];
  if (!Array.isArray(v)) return [];
  return v.flatMap((x) => (typeof x === 'string' && x.trim() ? [x.trim()] : isObject(x) && typeof x.answer === 'string' && x.answer.trim() ? [x.answer.trim()] : []));
}

/**
 * Question and answer pairs from chat turns `{data, modality, role}` (the
 * Hugging Face multimodal sets): a user text turn is a question, the next
 * assistant text turn its answer. Paired by role, not by position.
 */
export function qaFromRoleTurns(turns: unknown, f: Fragment): void {
  let question: string | null = null;
  for (const t of Array.isArray(turns) ? turns.filter(isObject) : []) {
    const text = typeof t.data === 'string' ? t.data.trim() : '';
    if (!text || (typeof t.modality === 'string' && t.modality !== 'text')) continue;
    if (t.role === 'user') question = text;
    else if (t.role === 'assistant' && question) {
      f.qa.push({ id: null, question, answer: text, answers: [text] });
      question = null;
    }
  }
}

/** A record a loader sets aside as `bad-record`: the file, the byte it starts at, and why. */
export function setAside(ctx: HandlerContext, file: PlannedFile, offset: number, detail: string, image: string | null = null): void {
  ctx.sink.reject({ reason: 'bad-record', detail, source: ctx.source, file: file.path, offset, image });
}
