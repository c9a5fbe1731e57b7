import type { Fragment, Mask, RawBox, RawQA, RawRegion } from '../types.js';
import { writeUtf8 } from '../read/utf8.js';

/**
 * A compact binary form of a Fragment for the join's buffers, spill files and
 * worker threads. Numbers are stored as 8-byte floats (NaN, which JSON
 * cannot carry, included), strings as their bytes, names of sources and
 * files as indexes into tables, so neither side formats or parses numbers as
 * text: with positional JSON arrays, `JSON.stringify` and `JSON.parse` of a
 * COCO annotation's head took 2.1 and 3.3 microseconds, mostly turning its
 * dozen numbers into text and back (encode + decode was 18% of a one-thread
 * prepare). Polygon masks, most of the bytes, are copied as the dataset
 * wrote them.
 *
 * Each record is framed by its length (4 bytes) and starts with its read
 * order (see `readOrder`): the join's pieces may come from several threads,
 * and grouping sorts an image's fragments back into the order one thread
 * would have read them.
 */
export class FragmentCodec {
  private readonly sourceIndex = new Map<string, number>();
  private readonly fileIndex = new Map<string, number>();
  readonly sources: { name: string; family: string }[] = [];
  readonly files: string[] = [];

  /** Frozen: the tables are shared with other threads, so a name not in them is a bug, not a new entry. */
  private frozen = false;

  constructor(tables?: CodecTables, opts: { frozen?: boolean } = {}) {
    if (tables) {
      for (const t of tables.sources) this.source(t.name, t.family);
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
    for (const t of sources) this.source(t.name, t.family);
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

  /** Append one framed record to `out`. `order`: the fragment's read order (`readOrder`), kept for grouping. */
  encodeInto(out: ByteWriter, f: Fragment, order = 0): void {
    const frame = out.length;
    out.u32(0);
    out.f64(order);
    out.str(f.ref);
    out.u32(this.source(f.source, f.family));
    // requiresCatalogFrom is either null or another source; keep its index (+1, 0 for none).
    out.u32(f.requiresCatalogFrom === null ? 0 : this.source(f.requiresCatalogFrom, f.family) + 1);
    out.u32(this.file(f.prov.file));
    out.f64(f.prov.offset);
    out.u8((f.catalog ? 1 : 0) | (f.labelSentence ? 2 : 0));
    out.str(f.path);
    out.nullableF64(f.width);
    out.nullableF64(f.height);
    out.strList(f.captions);
    out.u32(f.boxes.length);
    for (const b of f.boxes) encodeBox(out, b);
    out.u32(f.qa.length);
    for (const q of f.qa) {
      out.str(q.id);
      out.str(q.question);
      out.str(q.answer);
      out.strList(q.answers);
    }
    out.u32(f.regions.length);
    for (const r of f.regions) {
      out.str(r.text);
      out.f64(r.x);
      out.f64(r.y);
      out.f64(r.w);
      out.f64(r.h);
    }
    out.u32(f.absentCategoryIds.length);
    for (const id of f.absentCategoryIds) out.f64(id);
    out.u32(f.uncountedCategoryIds.length);
    for (const id of f.uncountedCategoryIds) out.f64(id);
    out.strList(f.facts);
    out.setU32(frame, out.length - frame - 4);
  }

  /** One fragment as a framed record (tests; the join appends with `encodeInto`). */
  encode(f: Fragment, order = 0): Uint8Array {
    const out = new ByteWriter(256);
    this.encodeInto(out, f, order);
    return out.bytes();
  }

  /** Every framed record in `bytes`, in order. */
  *decodeAll(bytes: Uint8Array): Generator<{ fragment: Fragment; order: number }> {
    const r = new ByteReader(bytes);
    while (r.pos < bytes.length) yield this.decodeRecord(r);
  }

  /** The framed record at the reader's position; the reader ends past it. */
  private decodeRecord(r: ByteReader): { fragment: Fragment; order: number } {
    const end = r.pos + 4 + r.u32();
    const d = this.decodeBody(r);
    if (r.pos !== end) throw new Error(`fragment codec: a record ends at byte ${r.pos}, its frame says ${end}`);
    return d;
  }

  /**
   * Each framed record's start, read order and image ref, the rest left
   * undecoded: grouping needs only these, and a fragment decoded just before
   * its image is assembled is garbage soon after, where fragments decoded a
   * whole partition ahead lived long enough to be promoted. `each` gets
   * `ctx` first, so that callers pass one long-lived function rather than a
   * closure per call (V8 drops a function's optimised code once no closure
   * of it is alive, and compiled a closure per partition again and again).
   */
  scan<C>(bytes: Uint8Array, ctx: C, each: (ctx: C, start: number, order: number, ref: string) => void): void {
    const r = new ByteReader(bytes);
    while (r.pos < bytes.length) {
      const start = r.pos;
      const end = r.pos + 4 + r.u32();
      const order = r.f64();
      each(ctx, start, order, r.str()!);
      r.pos = end;
    }
    if (r.pos !== bytes.length) throw new Error(`fragment codec: the last record's frame runs to byte ${r.pos} of ${bytes.length}`);
  }

  /** A reader kept for the buffer decoded last: `decodeAt` is called once per record, mostly on one buffer. */
  private reader: ByteReader | null = null;

  /** The framed record starting at `start` (as `scan` reported it). */
  decodeAt(bytes: Uint8Array, start: number): { fragment: Fragment; order: number } {
    if (this.reader?.bytes !== bytes) this.reader = new ByteReader(bytes);
    this.reader.pos = start;
    return this.decodeRecord(this.reader);
  }

  /** The fragment in one framed record. */
  decode(record: Uint8Array): Fragment {
    for (const d of this.decodeAll(record)) return d.fragment;
    throw new Error('fragment codec: no record');
  }

  private decodeBody(r: ByteReader): { fragment: Fragment; order: number } {
    const order = r.f64();
    const ref = r.str()!;
    const src = this.sources[r.u32()]!;
    const req = r.u32();
    const file = this.files[r.u32()]!;
    const offset = r.f64();
    const flags = r.u8();
    const path = r.str();
    const width = r.nullableF64();
    const height = r.nullableF64();
    const captions = r.strList();
    const boxes: RawBox[] = new Array(r.u32());
    for (let i = 0; i < boxes.length; i++) boxes[i] = decodeBox(r);
    const qa: RawQA[] = new Array(r.u32());
    for (let i = 0; i < qa.length; i++) qa[i] = { id: r.str(), question: r.str(), answer: r.str(), answers: r.strList() };
    const regions: RawRegion[] = new Array(r.u32());
    for (let i = 0; i < regions.length; i++) regions[i] = { text: r.str()!, x: r.f64(), y: r.f64(), w: r.f64(), h: r.f64() };
    const absentCategoryIds: number[] = new Array(r.u32());
    for (let i = 0; i < absentCategoryIds.length; i++) absentCategoryIds[i] = r.f64();
    const uncountedCategoryIds: number[] = new Array(r.u32());
    for (let i = 0; i < uncountedCategoryIds.length; i++) uncountedCategoryIds[i] = r.f64();
    const facts = r.strList();
    const fragment: Fragment = {
      ref,
      source: src.name,
      family: src.family,
      catalog: (flags & 1) !== 0,
      path,
      width,
      height,
      requiresCatalogFrom: req === 0 ? null : this.sources[req - 1]!.name,
      captions,
      boxes,
      qa,
      regions,
      absentCategoryIds,
      uncountedCategoryIds,
      facts,
      labelSentence: (flags & 2) !== 0,
      prov: { file, offset },
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

const BOX_CROWD = 1;
const BOX_NORMALIZED = 2;
const BOX_CATEGORY = 4;
const BOX_MASK = 8;
const BOX_RLE = 16;

function encodeBox(out: ByteWriter, b: RawBox): void {
  const m = b.mask;
  out.u8((b.iscrowd ? BOX_CROWD : 0) | (b.normalized ? BOX_NORMALIZED : 0) | (b.categoryId !== null ? BOX_CATEGORY : 0) | (m ? BOX_MASK : 0) | (m?.format === 'rle' ? BOX_RLE : 0));
  out.str(b.label);
  if (b.categoryId !== null) out.f64(b.categoryId);
  out.f64(b.x);
  out.f64(b.y);
  out.f64(b.w);
  out.f64(b.h);
  out.strList(b.attributes);
  out.strList(b.relations);
  out.str(b.sourceId);
  if (m) {
    out.str(m.format === 'rle' ? m.rle : m.polygons);
    out.f64(m.height);
    out.f64(m.width);
  }
}

function decodeBox(r: ByteReader): RawBox {
  const flags = r.u8();
  const label = r.str();
  const categoryId = flags & BOX_CATEGORY ? r.f64() : null;
  const x = r.f64();
  const y = r.f64();
  const w = r.f64();
  const h = r.f64();
  const attributes = r.strList();
  const relations = r.strList();
  const sourceId = r.str();
  let mask: Mask | null = null;
  if (flags & BOX_MASK) {
    const text = r.str();
    const height = r.f64();
    const width = r.f64();
    mask = flags & BOX_RLE ? { format: 'rle', polygons: null, rle: text, height, width } : { format: 'polygon', polygons: text, rle: null, height, width };
  }
  const box: RawBox = { label, categoryId, x, y, w, h, attributes, relations, iscrowd: (flags & BOX_CROWD) !== 0, sourceId, mask };
  if (flags & BOX_NORMALIZED) box.normalized = true;
  return box;
}

// How a string is stored: its first byte says null, ASCII, UTF-8, or (for
// text with lone surrogates, which UTF-8 cannot carry) JSON text.
const STR_NULL = 0;
const STR_ASCII = 1;
const STR_UTF8 = 2;
const STR_JSON = 3;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** An append-only byte buffer that grows by doubling. */
export class ByteWriter {
  private buf: Buffer;
  private view: DataView;
  length = 0;

  constructor(capacity = 4096) {
    this.buf = Buffer.allocUnsafe(capacity);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
    this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
  }

  /** Bytes held, written or not: what the buffer costs in memory. */
  get capacity(): number {
    return this.buf.length;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }

  setU32(at: number, v: number): void {
    this.view.setUint32(at, v, true);
  }

  f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }

  nullableF64(v: number | null): void {
    if (v === null) this.u8(0);
    else {
      this.u8(1);
      this.f64(v);
    }
  }

  str(s: string | null): void {
    if (s === null) {
      this.u8(STR_NULL);
      return;
    }
    const n = s.length;
    this.room(5 + 3 * n);
    const kindAt = this.length;
    const start = kindAt + 5;
    let bytes = writeUtf8(this.buf, s, start);
    let kind = bytes === n ? STR_ASCII : STR_UTF8;
    if (kind === STR_UTF8 && LONE_SURROGATE.test(s)) {
      const json = JSON.stringify(s);
      // JSON keeps other non-ASCII characters as they are: up to 3 bytes each.
      this.room(5 + 3 * json.length);
      bytes = this.buf.write(json, start, 'utf8');
      kind = STR_JSON;
    }
    this.buf[kindAt] = kind;
    this.view.setUint32(kindAt + 1, bytes, true);
    this.length = start + bytes;
  }

  strList(list: string[]): void {
    this.u32(list.length);
    for (const s of list) this.str(s);
  }

  /** What was written (a view, valid until the next write). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/**
 * The list every empty string list decodes to: most boxes have no
 * attributes and no relations, and two fresh arrays for each were a good
 * part of what decoding a partition made. Frozen, so that code that tried
 * to add to a decoded list would fail loudly instead of changing every
 * box's list (merging copies a box's lists before it adds to them).
 */
const NO_STRINGS = Object.freeze([]) as unknown as string[];

/** Reads what ByteWriter wrote, from any Uint8Array (what reaches a worker thread is no longer a Buffer). */
class ByteReader {
  pos = 0;
  private readonly buf: Buffer;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u8(): number {
    return this.buf[this.pos++]!;
  }
  u32(): number {
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(): number {
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  nullableF64(): number | null {
    return this.u8() === 0 ? null : this.f64();
  }
  str(): string | null {
    const kind = this.u8();
    if (kind === STR_NULL) return null;
    const n = this.u32();
    const start = this.pos;
    this.pos += n;
    if (kind === STR_ASCII) return this.buf.toString('latin1', start, this.pos);
    const text = this.buf.toString('utf8', start, this.pos);
    return kind === STR_JSON ? (JSON.parse(text) as string) : text;
  }
  strList(): string[] {
    const n = this.u32();
    if (n === 0) return NO_STRINGS;
    const list: string[] = new Array(n);
    for (let i = 0; i < n; i++) list[i] = this.str()!;
    return list;
  }
}
