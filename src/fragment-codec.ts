import type { Fragment, Mask, RawBox, RawQA, RawRegion } from './types.js';

/**
 * A compact text form of a Fragment for the join's buffers, spill files and
 * worker threads: positional JSON arrays, names of sources and files given
 * as indexes into tables, empty lists left out. Several times cheaper to
 * write and read than the object form, whose keys and file paths repeat in
 * every one of a million annotations.
 *
 * Polygon masks (most of the bytes) are not put through JSON.stringify,
 * which would scan every character for escaping: each follows the JSON part
 * after a FIELD separator, as is. Encoded fragments are separated by RECORD.
 * Neither separator can occur in JSON.stringify output (control characters
 * are escaped) nor in polygon text (numbers, brackets, commas, spaces only).
 *
 * Each encoded fragment starts with its read order (see `readOrder`): the
 * join's pieces may come from several threads, and grouping sorts an image's
 * fragments back into the order one thread would have read them.
 */
export const FIELD = '\u0001';
export const RECORD = '\u0000';
export class FragmentCodec {
  private readonly sourceIndex = new Map<string, number>();
  private readonly fileIndex = new Map<string, number>();
  readonly sources: { name: string; family: string }[] = [];
  readonly files: string[] = [];

  /** Frozen: the tables are shared with other threads, so a name not in them is a bug, not a new entry. */
  private frozen = false;

  constructor(tables?: CodecTables, opts: { frozen?: boolean } = {}) {
    if (tables) {
      for (const s of tables.sources) this.source(s.name, s.family);
      for (const f of tables.files) this.file(f);
    }
    this.frozen = opts.frozen ?? false;
  }

  private source(name: string, family: string): number {
    let i = this.sourceIndex.get(name);
    if (i === undefined) {
      if (this.frozen) throw new Error(`fragment codec: source "${name}" is not in the shared tables`);
      i = this.sources.length;
      this.sources.push({ name, family });
      this.sourceIndex.set(name, i);
    }
    return i;
  }

  private file(name: string): number {
    let i = this.fileIndex.get(name);
    if (i === undefined) {
      if (this.frozen) throw new Error(`fragment codec: file "${name}" is not in the shared tables`);
      i = this.files.length;
      this.files.push(name);
      this.fileIndex.set(name, i);
    }
    return i;
  }

  /** Enter names up front (in a fixed order), so that codecs in several threads agree. */
  register(sources: { name: string; family: string }[], files: string[]): void {
    for (const s of sources) this.source(s.name, s.family);
    for (const f of files) this.file(f);
  }

  /** A file's number in the tables (entered if new). */
  fileNumber(name: string): number {
    return this.file(name);
  }

  /** The tables a decoder in another thread needs. */
  tables(): CodecTables {
    return { sources: this.sources, files: this.files };
  }

  /** `order`: the fragment's read order (`readOrder`), kept for grouping. */
  encode(f: Fragment, order = 0): string {
    const raw: string[] = [];
    const src = this.source(f.source, f.family);
    // requiresCatalogFrom is either null or another source; keep its index.
    const req = f.requiresCatalogFrom === null ? -1 : this.source(f.requiresCatalogFrom, f.family);
    const head = JSON.stringify([
      order,
      f.ref,
      src,
      this.file(f.prov.file),
      f.prov.offset,
      f.catalog ? 1 : 0,
      f.path,
      f.width,
      f.height,
      req,
      f.captions.length ? f.captions : 0,
      f.boxes.length ? f.boxes.map((b) => encodeBox(b, raw)) : 0,
      f.qa.length ? f.qa.map((q) => [q.id, q.question, q.answer, q.answers]) : 0,
      f.regions.length ? f.regions.map((r) => [r.text, num(r.x), num(r.y), num(r.w), num(r.h)]) : 0,
      f.absentCategoryIds.length ? f.absentCategoryIds : 0,
      f.facts.length ? f.facts : 0,
      f.labelSentence ? 1 : 0,
    ]);
    return raw.length ? head + FIELD + raw.join(FIELD) : head;
  }

  decode(line: string): Fragment {
    return this.decodeWithOrder(line).fragment;
  }

  decodeWithOrder(line: string): { fragment: Fragment; order: number } {
    const cut = line.indexOf(FIELD);
    // a[0] is the read order; the fragment's fields follow.
    const a = JSON.parse(cut < 0 ? line : line.slice(0, cut)) as unknown[];
    const order = a[0] as number;
    const raw = cut < 0 ? [] : line.slice(cut + 1).split(FIELD);
    let nextRaw = 0;
    const takeRaw = () => raw[nextRaw++]!;
    const src = this.sources[a[2] as number]!;
    const req = a[9] as number;
    const fragment: Fragment = {
      ref: a[1] as string,
      source: src.name,
      family: src.family,
      catalog: a[5] === 1,
      path: a[6] as string | null,
      width: a[7] as number | null,
      height: a[8] as number | null,
      requiresCatalogFrom: req < 0 ? null : this.sources[req]!.name,
      captions: a[10] ? (a[10] as string[]) : [],
      boxes: a[11] ? (a[11] as unknown[][]).map((b) => decodeBox(b, takeRaw)) : [],
      qa: a[12] ? (a[12] as [string | null, string | null, string | null, string[]][]).map(([id, question, answer, answers]): RawQA => ({ id, question, answer, answers })) : [],
      regions: a[13] ? (a[13] as [string, number | null, number | null, number | null, number | null][]).map(([text, x, y, w, h]): RawRegion => ({ text, x: unnum(x), y: unnum(y), w: unnum(w), h: unnum(h) })) : [],
      absentCategoryIds: a[14] ? (a[14] as number[]) : [],
      facts: a[15] ? (a[15] as string[]) : [],
      labelSentence: a[16] === 1,
      prov: { file: this.files[a[3] as number]!, offset: a[4] as number },
    };
    return { fragment, order };
  }
}

export interface CodecTables {
  sources: { name: string; family: string }[];
  files: string[];
}

/**
 * Where a fragment stands in reading order: the file's place in the run,
 * then a position inside it (an arrival count, or for files read by several
 * threads the byte offset of the element it came from). Files up to 1 TiB,
 * 8191 files: the number stays an exact integer.
 */
const ORDER_FILE_STRIDE = 2 ** 40;
export function readOrder(fileNumber: number, position: number): number {
  return fileNumber * ORDER_FILE_STRIDE + position;
}

// NaN does not survive JSON (it becomes null): box coordinates may be NaN when a
// dataset's value was not a number, and must still be rejected later as such.
const num = (v: number): number | null => (Number.isNaN(v) ? null : v);
const unnum = (v: unknown): number => (v === null ? NaN : (v as number));

function encodeBox(b: RawBox, raw: string[]): unknown[] {
  const m = b.mask;
  // A polygon mask's text goes after the JSON part; 0 here says "take the next one".
  const text = m === null ? null : m.format === 'rle' ? m.rle : m.polygons;
  const inline = m !== null && m.format === 'polygon' && text !== null ? (raw.push(text), 0) : text;
  return [
    b.label,
    b.categoryId === null ? null : Number.isNaN(b.categoryId) ? 'NaN' : b.categoryId,
    num(b.x),
    num(b.y),
    num(b.w),
    num(b.h),
    b.attributes.length ? b.attributes : 0,
    b.relations.length ? b.relations : 0,
    b.iscrowd ? 1 : 0,
    b.sourceId,
    m ? [m.format === 'rle' ? 1 : 0, inline, num(m.height), num(m.width)] : 0,
    b.normalized ? 1 : 0,
  ];
}

function decodeBox(a: unknown[], takeRaw: () => string): RawBox {
  const m = a[10] as [number, string | 0 | null, number | null, number | null] | 0;
  const mask: Mask | null = m
    ? m[0] === 1
      ? { format: 'rle', polygons: null, rle: m[1] as string | null, height: unnum(m[2]), width: unnum(m[3]) }
      : { format: 'polygon', polygons: m[1] === 0 ? takeRaw() : (m[1] as string | null), rle: null, height: unnum(m[2]), width: unnum(m[3]) }
    : null;
  return {
    label: a[0] as string | null,
    categoryId: a[1] === null ? null : a[1] === 'NaN' ? NaN : (a[1] as number),
    x: unnum(a[2]),
    y: unnum(a[3]),
    w: unnum(a[4]),
    h: unnum(a[5]),
    attributes: a[6] ? (a[6] as string[]) : [],
    relations: a[7] ? (a[7] as string[]) : [],
    iscrowd: a[8] === 1,
    sourceId: a[9] as string | null,
    mask,
    ...(a[11] === 1 ? { normalized: true } : {}),
  };
}
