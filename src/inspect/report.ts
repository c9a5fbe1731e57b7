import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import sharp from 'sharp';
import { InstructifyError } from '../errors.js';
import type { Conversation, PromptTypeStats } from '../generate/generate.js';
import { TURNS_REJECTED_FILE } from '../generate/generate.js';
import type { Box, ImageRecord } from '../types.js';
import { VERSION } from '../version.js';
import { onHardStop } from '../write/hard-stop.js';
import { claimOutput } from '../write/output-folder.js';
import { expectOutputOf, readShards } from '../write/shard-reader.js';
import { decodeRleString } from '../records/rle.js';
import { bucketize, colourOf, escapeHtml, pageHtml, type Card, type RejectedTurn, type RejectLine, type ReportSummary } from './report-html.js';

/**
 * `instructify report`: a static page of sampled images with their boxes
 * drawn on them, their trees, information and conversations, under a
 * summary of the run. Every input is streamed; only the sampled images'
 * records and conversations are held.
 */
export interface ReportOptions {
  /** A prepare or generate output folder. */
  input: string;
  out: string;
  /** Images to show (default 50). */
  count?: number;
  /** The sample is the images with the smallest hash of seed and name: the same seed, the same images. */
  seed?: number;
  /** Image root; default: the one the prepare manifest names. */
  images?: string | null;
  /** Show exactly these images (by their path in the records). */
  pickImages?: string[];
  /** Only images with a conversation of this prompt type (generate folders). */
  promptType?: string;
  /** Only images with something set aside: a record's rejects, or turns the checks took out. */
  rejected?: boolean;
  /** Thumbnail width in pixels (default 480). */
  thumbWidth?: number;
  warn?: (message: string) => void;
}

export interface ReportResult {
  index: string;
  cards: number;
  /** Images the sample was drawn from. */
  eligible: number;
  thumbnails: number;
  missingImages: number;
}

type Manifest = Record<string, unknown> & { command?: string };

/** The manifest of a prepare or generate folder (expectOutputOf says what else a folder is). */
async function readManifest(dir: string): Promise<Manifest> {
  const m = await expectOutputOf(dir, ['prepare', 'generate'], 'report');
  if (m === null) throw new InstructifyError('E_WRONG_KIND', 'no manifest.json here: report reads a prepare or a generate output folder', { file: dir });
  return m;
}

/** Lines of a JSONL file, parsed; nothing when the file is missing. */
async function* jsonLines<T>(file: string): AsyncGenerator<T> {
  if (!(await stat(file).catch(() => null))) return;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (line.trim()) yield JSON.parse(line) as T;
}

/** The sampling key of an image: a hash of the seed and its name, so the sample does not depend on reading order. */
export function sampleKey(seed: number, image: string): number {
  return parseInt(createHash('sha1').update(`${seed}\u0000${image}`).digest('hex').slice(0, 12), 16);
}

/** The `size` entries with the smallest keys, kept as they stream past. */
class SmallestKeys<T> {
  readonly entries: { key: number; value: T }[] = [];
  constructor(readonly size: number) {}
  offer(key: number, value: () => T): void {
    const e = this.entries;
    if (e.length >= this.size && key >= e[e.length - 1]!.key) return;
    let i = e.length;
    while (i > 0 && e[i - 1]!.key > key) i--;
    e.splice(i, 0, { key, value: value() });
    if (e.length > this.size) e.pop();
  }
}

interface Selection {
  /** Chosen images in display order. */
  images: string[];
  eligible: number;
  pick: string;
}

function pickDescription(o: ReportOptions): string {
  if (o.pickImages?.length) return `${o.pickImages.length} named images`;
  const parts = [o.promptType ? `with a ${o.promptType} conversation` : '', o.rejected ? 'with something set aside' : ''].filter(Boolean);
  return parts.length ? `images ${parts.join(' and ')}` : 'all images';
}

/** Images named in a rejects or turns-rejected file. */
async function imagesWithRejects(files: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const f of files) for await (const l of jsonLines<{ image?: string | null }>(f)) if (l.image) out.add(l.image);
  return out;
}

/** A pass over a prepare folder: the sample's records, and the boxes-per-image chart. */
async function selectFromPrepared(o: ReportOptions, dir: string, count: number, seed: number): Promise<{ selection: Selection; records: Map<string, ImageRecord>; boxesPerImage: Map<number, number> }> {
  const named = o.pickImages?.length ? new Set(o.pickImages) : null;
  const withRejects = o.rejected ? await imagesWithRejects([path.join(dir, 'rejects.jsonl')]) : null;
  const chosen = new SmallestKeys<ImageRecord>(named ? named.size : count);
  const boxesPerImage = new Map<number, number>();
  let eligible = 0;
  for await (const rec of readShards<ImageRecord>(dir)) {
    boxesPerImage.set(rec.boxes.length, (boxesPerImage.get(rec.boxes.length) ?? 0) + 1);
    if (named && !named.has(rec.image)) continue;
    if (withRejects && !withRejects.has(rec.image)) continue;
    eligible++;
    chosen.offer(sampleKey(seed, rec.image), () => rec);
  }
  const records = new Map(chosen.entries.map((e) => [e.value.image, e.value]));
  return { selection: { images: [...records.keys()], eligible, pick: pickDescription(o) }, records, boxesPerImage };
}

/**
 * One pass over a generate folder's conversations: the sample's images with
 * their conversations (an image's rows are consecutive, so only the image
 * being read is held besides the sample), and the charts of turns and
 * answer lengths.
 */
async function selectFromConversations(
  o: ReportOptions,
  dir: string,
  count: number,
  seed: number,
): Promise<{ selection: Selection; conversations: Map<string, Conversation[]>; turns: Map<number, number>; answerChars: Map<number, number> }> {
  const named = o.pickImages?.length ? new Set(o.pickImages) : null;
  const withRejects = o.rejected ? await imagesWithRejects([path.join(dir, 'rejects.jsonl'), path.join(dir, TURNS_REJECTED_FILE)]) : null;
  const chosen = new SmallestKeys<{ image: string; rows: Conversation[] }>(named ? named.size : count);
  const turns = new Map<number, number>();
  const answerChars = new Map<number, number>();
  const picked = (image: string) => (!named || named.has(image)) && (!withRejects || withRejects.has(image));
  let eligible = 0;
  let current = null as { image: string; rows: Conversation[]; ok: boolean } | null;
  const close = () => {
    if (current?.ok) {
      eligible++;
      const { image, rows } = current;
      chosen.offer(sampleKey(seed, image), () => ({ image, rows }));
    }
  };
  for await (const c of readShards<Conversation>(dir)) {
    const n = c.conversations.length >> 1;
    turns.set(n, (turns.get(n) ?? 0) + 1);
    for (const t of c.conversations) {
      if (t.from !== 'gpt') continue;
      // Answer lengths in 50-character steps.
      const step = Math.floor(t.value.length / 50);
      answerChars.set(step, (answerChars.get(step) ?? 0) + 1);
    }
    if (c.image !== current?.image) {
      close();
      current = { image: c.image, rows: [], ok: picked(c.image) && !o.promptType };
    }
    current.rows.push(c);
    if (o.promptType && c.promptType === o.promptType && picked(c.image)) current.ok = true;
  }
  close();
  // Named images or rejected ones without any conversation kept still get a card.
  if (!o.promptType) {
    const seen = new Set(chosen.entries.map((e) => e.value.image));
    for (const image of named ?? withRejects ?? []) {
      if (seen.has(image)) continue;
      eligible++;
      chosen.offer(sampleKey(seed, image), () => ({ image, rows: [] }));
    }
  }
  const conversations = new Map(chosen.entries.map((e) => [e.value.image, e.value.rows]));
  return { selection: { images: [...conversations.keys()], eligible, pick: pickDescription(o) }, conversations, turns, answerChars };
}

/** The overlay drawn on a thumbnail: each box's outline and label in its source's colour, mask outlines dashed. */
export function overlaySvg(boxes: Box[], sources: string[], width: number, height: number, record: { width: number | null; height: number | null }): string {
  const shapes: string[] = [];
  for (const b of boxes) {
    const colour = colourOf(b.source, sources);
    if (b.mask?.format === 'polygon' && b.mask.polygons) {
      const mw = b.mask.width || record.width || 0;
      const mh = b.mask.height || record.height || 0;
      if (mw > 0 && mh > 0) {
        let rings: number[][] = [];
        try {
          rings = JSON.parse(b.mask.polygons) as number[][];
        } catch {
          rings = [];
        }
        for (const ring of rings) {
          const pts: string[] = [];
          for (let i = 0; i + 1 < ring.length; i += 2) pts.push(`${((ring[i]! * width) / mw).toFixed(1)},${((ring[i + 1]! * height) / mh).toFixed(1)}`);
          shapes.push(`<polygon points="${pts.join(' ')}" fill="none" stroke="${colour}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
        }
      }
    }
  }
  // Labels under the outlines: in a crowded scene a label may cover a photo, never another box's outline.
  for (const b of boxes) {
    const x = b.x1 * width;
    const y = b.y1 * height;
    const ty = y > 14 ? y - 3 : y + 13;
    shapes.push(`<text x="${(x + 3).toFixed(1)}" y="${ty.toFixed(1)}" font-family="sans-serif" font-size="12" fill="${colourOf(b.source, sources)}" stroke="#fff" stroke-width="3" paint-order="stroke">${escapeHtml(b.label)}</text>`);
  }
  for (const b of boxes) {
    const [x, y, w, h] = [b.x1 * width, b.y1 * height, (b.x2 - b.x1) * width, (b.y2 - b.y1) * height];
    shapes.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="none" stroke="${colourOf(b.source, sources)}" stroke-width="3"/>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join('')}</svg>`;
}

/**
 * The outlines of a record's RLE masks (COCO crowds, SAM's from enrich) at
 * the thumbnail's size, as raw RGBA: a mask pixel with an unmasked
 * neighbour takes its box's colour. Null when the record has no RLE mask.
 */
export function rleOutlines(boxes: Box[], sources: string[], width: number, height: number): Buffer | null {
  const rle = boxes.filter((b) => b.mask?.format === 'rle' && b.mask.rle && b.mask.width > 0 && b.mask.height > 0);
  if (!rle.length) return null;
  const out = Buffer.alloc(width * height * 4);
  const inside = new Uint8Array(width * height);
  for (const b of rle) {
    const { width: mw, height: mh, rle: text } = b.mask!;
    // The mask at the thumbnail's size: each thumbnail pixel takes the mask pixel under it (RLE counts down the columns).
    const full = new Uint8Array(mw * mh);
    let at = 0;
    decodeRleString(text!).forEach((n, k) => {
      if (k % 2 === 1) full.fill(1, at, Math.min(full.length, at + n));
      at += n;
    });
    inside.fill(0);
    for (let ty = 0; ty < height; ty++) {
      const my = Math.min(mh - 1, Math.floor(((ty + 0.5) * mh) / height));
      for (let tx = 0; tx < width; tx++) inside[ty * width + tx] = full[Math.min(mw - 1, Math.floor(((tx + 0.5) * mw) / width)) * mh + my]!;
    }
    const [r, g, bl] = [1, 3, 5].map((i) => parseInt(colourOf(b.source, sources).slice(i, i + 2), 16)) as [number, number, number];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!inside[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 || !inside[i - 1] || !inside[i + 1] || !inside[i - width] || !inside[i + width];
        if (edge) out.set([r, g, bl, 255], i * 4);
      }
    }
  }
  return out;
}

/** What a thumbnail draws: the picture, its boxes, and the record's size (for masks drawn on an unknown size). */
type Drawn = Pick<ImageRecord, 'image' | 'boxes' | 'width' | 'height'>;

/** The thumbnail of one record: the image at a bounded width with its boxes composed on it, written once. */
async function writeThumbnail(root: string, rec: Drawn, sources: string[], outDir: string, maxWidth: number): Promise<Card['thumb'] | string> {
  const file = path.join(root, rec.image);
  try {
    const meta = await sharp(file).metadata();
    const w0 = meta.width ?? 0;
    const h0 = meta.height ?? 0;
    if (!w0 || !h0) return `cannot read the size of ${file}`;
    const width = Math.min(maxWidth, w0);
    const height = Math.max(1, Math.round((h0 * width) / w0));
    const name = `${createHash('sha1').update(rec.image).digest('hex').slice(0, 16)}.jpg`;
    const outlines = rleOutlines(rec.boxes, sources, width, height);
    await sharp(file)
      .resize(width, height, { fit: 'fill' })
      .composite([
        ...(outlines ? [{ input: outlines, raw: { width, height, channels: 4 as const }, top: 0, left: 0 }] : []),
        { input: Buffer.from(overlaySvg(rec.boxes, sources, width, height, rec)), top: 0, left: 0 },
      ])
      // 4:4:4: thin coloured outlines keep their colour (4:2:0 smears them into the photo).
      .jpeg({ quality: 88, chromaSubsampling: '4:4:4' })
      .toFile(path.join(outDir, 'thumbs', name));
    return { file: `thumbs/${name}`, width, height };
  } catch (err) {
    return `image not readable: ${file} (${(err as Error).message})`;
  }
}

/** The summary's numbers from the manifests. */
function summaryOf(kind: 'prepare' | 'generate', input: string, manifest: Manifest, prepared: Manifest | null): Omit<ReportSummary, 'charts' | 'sample'> {
  const p = kind === 'prepare' ? manifest : prepared;
  const counts = (p?.counts ?? {}) as { images?: number };
  const settingsKeys = kind === 'prepare' ? ['version', 'format', 'shard', 'images', 'inputs', 'started', 'finished', 'status'] : ['version', 'generator', 'model', 'sampling', 'distribution', 'settings', 'shard', 'limit', 'status'];
  return {
    kind,
    input,
    images: kind === 'prepare' ? (counts.images ?? 0) : Number(manifest.images ?? 0),
    conversations: kind === 'generate' ? Number(manifest.conversations ?? 0) : null,
    sources: ((p?.per_source ?? {}) as ReportSummary['sources']),
    rejects: { ...((manifest.rejects ?? {}) as Record<string, number>) },
    perPromptType: kind === 'generate' ? ((manifest.perPromptType ?? {}) as Record<string, PromptTypeStats>) : null,
    settings: Object.fromEntries(settingsKeys.filter((k) => manifest[k] !== undefined).map((k) => [k, manifest[k]])),
  };
}

function checkReportOptions(o: ReportOptions): void {
  if (o.count !== undefined && !(Number.isInteger(o.count) && o.count >= 1)) throw new InstructifyError('E_OPTION', `-n must be a positive whole number, got ${o.count}`);
  if (o.thumbWidth !== undefined && !(Number.isInteger(o.thumbWidth) && o.thumbWidth >= 32)) throw new InstructifyError('E_OPTION', `thumbnail width must be a whole number of pixels from 32, got ${o.thumbWidth}`);
}

export async function report(o: ReportOptions): Promise<ReportResult> {
  checkReportOptions(o);
  const count = o.count ?? 50;
  const seed = o.seed ?? 1;
  const manifest = await readManifest(o.input);
  const kind = manifest.command as 'prepare' | 'generate';
  if (o.promptType && kind !== 'generate') throw new InstructifyError('E_OPTION', '--prompt-type picks images by their conversations: give a generate folder', { file: o.input });
  const types = Object.entries((manifest.perPromptType ?? {}) as Record<string, PromptTypeStats>).filter(([, t]) => t.role !== 'internal').map(([k]) => k);
  if (o.promptType && types.length && !types.includes(o.promptType)) throw new InstructifyError('E_OPTION', `this run has no prompt type "${o.promptType}"; it has ${types.join(', ')}`, { file: o.input });
  // A generate folder names the prepared folder its records came from.
  const preparedDir = kind === 'prepare' ? o.input : typeof manifest.input === 'string' && (await stat(path.join(manifest.input, 'manifest.json')).catch(() => null)) ? manifest.input : null;
  const prepared = preparedDir === null ? null : kind === 'prepare' ? manifest : await readManifest(preparedDir);
  const root = o.images ?? (typeof prepared?.images === 'string' ? prepared.images : null);
  const claim = await claimOutput({ out: o.out, command: 'report', inputs: [o.input, ...(preparedDir ? [preparedDir] : [])], roots: root ? [root] : [], warn: o.warn });
  const disposeHardStop = onHardStop(claim.stopNow);
  const manifestFile = path.join(o.out, 'report-manifest.json');
  const writeManifest = async (m: object) => {
    await writeFile(`${manifestFile}.tmp`, JSON.stringify({ tool: 'instructify', version: VERSION, command: 'report', input: o.input, seed, count, ...m }, null, 2) + '\n');
    await rename(`${manifestFile}.tmp`, manifestFile);
  };
  try {
    await rm(path.join(o.out, 'thumbs'), { recursive: true, force: true });
    await rm(path.join(o.out, 'index.html'), { force: true });
    await writeManifest({ status: 'running' });
    await mkdir(path.join(o.out, 'thumbs'), { recursive: true });
    const built = await buildCards(o, kind, preparedDir, root, count, seed, Object.keys((prepared?.per_source ?? {}) as object));
    const summary: ReportSummary = { ...summaryOf(kind, o.input, manifest, prepared), charts: built.charts, sample: { shown: built.cards.length, of: built.selection.eligible, seed, pick: built.selection.pick } };
    const sources = built.sources;
    const index = path.join(o.out, 'index.html');
    await writeFile(`${index}.tmp`, pageHtml(`instructify report: ${path.basename(path.resolve(o.input))}`, summary, built.cards, sources));
    await rename(`${index}.tmp`, index);
    const result: ReportResult = { index, cards: built.cards.length, eligible: built.selection.eligible, thumbnails: built.cards.filter((c) => c.thumb).length, missingImages: built.cards.filter((c) => !c.thumb).length };
    await writeManifest({ status: 'complete', finished: new Date().toISOString(), cards: result.cards, thumbnails: result.thumbnails, missing_images: result.missingImages, images_root: root });
    return result;
  } catch (err) {
    await writeManifest({ status: 'failed', error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message } }).catch(() => {});
    throw err;
  } finally {
    disposeHardStop();
    claim.release();
  }
}

/** The sampled images as cards: record, thumbnail, conversations and what was set aside, in sample order. */
async function buildCards(o: ReportOptions, kind: 'prepare' | 'generate', preparedDir: string | null, root: string | null, count: number, seed: number, runSources: string[]) {
  let selection: Selection;
  let records: Map<string, ImageRecord>;
  const charts = [];
  let conversations = new Map<string, Conversation[]>();
  if (kind === 'prepare') {
    const s = await selectFromPrepared(o, o.input, count, seed);
    selection = s.selection;
    records = s.records;
    charts.push(bucketize(s.boxesPerImage, 10, 'boxes per image'));
  } else {
    const s = await selectFromConversations(o, o.input, count, seed);
    selection = s.selection;
    conversations = s.conversations;
    charts.push(bucketize(s.turns, 8, 'turns per conversation'), bucketize(s.answerChars, 8, 'answer length (×50 characters)'));
    const wanted = new Set(selection.images);
    records = new Map();
    if (preparedDir) for await (const r of readShards<ImageRecord>(preparedDir)) if (wanted.has(r.image)) records.set(r.image, r);
  }
  const wanted = new Set(selection.images);
  const rejectsOf = new Map<string, RejectLine[]>();
  for await (const l of jsonLines<RejectLine>(path.join(o.input, 'rejects.jsonl'))) if (l.image && wanted.has(l.image)) (rejectsOf.get(l.image) ?? rejectsOf.set(l.image, []).get(l.image)!).push(l);
  const turnsOf = new Map<string, RejectedTurn[]>();
  if (kind === 'generate') for await (const t of jsonLines<RejectedTurn>(path.join(o.input, TURNS_REJECTED_FILE))) if (wanted.has(t.image)) (turnsOf.get(t.image) ?? turnsOf.set(t.image, []).get(t.image)!).push(t);
  // Colours follow the run's sources in the manifest's order, so a source keeps its colour from one report to the next.
  const sources: string[] = [...runSources];
  for (const r of records.values()) for (const s of [...r.sources, ...r.boxes.map((b) => b.source)]) if (!sources.includes(s)) sources.push(s);
  const cards: Card[] = [];
  for (const image of selection.images) {
    const record = records.get(image) ?? null;
    cards.push({ image, record, thumb: null, missing: null, conversations: conversations.get(image) ?? [], rejectedTurns: turnsOf.get(image) ?? [], rejects: rejectsOf.get(image) ?? [] });
  }
  // Thumbnails a few at a time: sharp works on its own threads.
  const width = o.thumbWidth ?? 480;
  for (let i = 0; i < cards.length; i += 4) {
    await Promise.all(
      cards.slice(i, i + 4).map(async (card) => {
        if (!root) return void (card.missing = 'no image root: give --images');
        // Without its record (a run folder: prepare streamed into generate) the picture still shows, with no boxes.
        const rec: Drawn = card.record ?? { image: card.image, boxes: [], width: null, height: null };
        const t = await writeThumbnail(root, rec, sources, o.out, width);
        if (typeof t === 'string') card.missing = t;
        else card.thumb = t;
      }),
    );
  }
  return { selection, cards, charts, sources };
}
