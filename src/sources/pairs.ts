import { existsSync, mkdirSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { InstructifyError } from '../errors.js';
import type { Fragment } from '../types.js';
import { planAsGiven } from './files.js';
import { qaFromRoleTurns, recordHandler, setAside, sentence, strings } from './records.js';
import { emptyFragment, isObject, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * Two-image datasets (a change between two photos, an edit): the two
 * images are pasted side by side at a common height into one JPEG, written
 * once under the image root (`<family>/pairs/<item>.jpg`), and the record's
 * facts say which side is which.
 */
export type PairImage = string | Uint8Array;

/** The two images at the height of the lower one, left then right, as one JPEG. */
export async function composePair(left: PairImage, right: PairImage, file: string): Promise<{ width: number; height: number }> {
  const input = (x: PairImage) => (typeof x === 'string' ? x : Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  const [a, b] = await Promise.all([sharp(input(left)).metadata(), sharp(input(right)).metadata()]);
  const height = Math.min(a.height ?? 0, b.height ?? 0);
  if (!height) throw new Error('an image of the pair has no size');
  const wa = Math.max(1, Math.round(((a.width ?? 1) * height) / (a.height ?? 1)));
  const wb = Math.max(1, Math.round(((b.width ?? 1) * height) / (b.height ?? 1)));
  const [pa, pb] = await Promise.all([
    sharp(input(left)).removeAlpha().resize(wa, height, { fit: 'fill' }).toBuffer(),
    sharp(input(right)).removeAlpha().resize(wb, height, { fit: 'fill' }).toBuffer(),
  ]);
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width: wa + wb, height, channels: 3, background: '#000000' } })
    .composite([
      { input: pa, left: 0, top: 0 },
      { input: pb, left: wa, top: 0 },
    ])
    .jpeg({ quality: 92 })
    .toFile(`${file}.tmp`);
  // Renamed when whole: a crash never leaves half a picture under the final name.
  await rename(`${file}.tmp`, file);
  return { width: wa + wb, height };
}

/** Pairs being composed, a few at a time (see FileHandler.pending). */
export class PairComposer {
  /** Pictures being composed, by file: an item named twice is composed once. */
  private readonly inFlight = new Map<string, Promise<void>>();
  constructor(
    private readonly ctx: HandlerContext,
    private readonly file: PlannedFile,
  ) {}

  /**
   * The composed picture's path under the image root; it is made in the
   * background unless it is there already (its size is read with the
   * other images' when the images are checked).
   */
  compose(family: string, name: string, left: PairImage, right: PairImage, offset: number): string {
    if (this.ctx.images === null) throw new InstructifyError('E_OPTION', 'two-image items are composed into one picture under the image root: give --images', { file: this.file.path, source: this.ctx.source });
    const rel = `${family}/pairs/${name.replace(/[^\w.-]+/g, '_')}.jpg`;
    const full = path.join(this.ctx.images, rel);
    if (this.inFlight.has(full) || existsSync(full)) return rel;
    const job = composePair(
      typeof left === 'string' ? path.join(this.ctx.images, left) : left,
      typeof right === 'string' ? path.join(this.ctx.images, right) : right,
      full,
    ).then(
      () => void this.inFlight.delete(full),
      (err: Error) => {
        this.inFlight.delete(full);
        this.ctx.sink.reject({ reason: 'pair-unreadable', detail: `${name}: ${err.message}`, source: this.ctx.source, file: this.file.path, offset, image: rel });
      },
    );
    this.inFlight.set(full, job);
    return rel;
  }

  pending(all: boolean): Promise<void> | undefined {
    if (this.inFlight.size === 0 || (!all && this.inFlight.size < 4)) return undefined;
    return Promise.all(this.inFlight.values()).then(() => undefined);
  }
}

const SIDES_BEFORE_AFTER = 'The image shows two photos side by side: the left one before, the right one after.';

function pairFragment(ctx: HandlerContext, rel: string, file: string, offset: number): Fragment {
  const f = emptyFragment(`${ctx.family}:${rel}`, ctx, file, offset);
  f.path = rel;
  return f;
}

/**
 * LEVIR-CC: `LevirCCcaptions.json` (images [{filename, split, changeflag,
 * sentences [{raw}]}]), the pairs in `images/<split>/A/` (before) and `B/`
 * (after) under the image root. The sentences say what changed.
 */
export const levirCc: SourceKind = {
  kind: 'levir-cc',
  family: 'levir-cc',
  expects: 'LEVIR-CC LevirCCcaptions.json (images: filename, split, changeflag, sentences); images/<split>/A|B/ under --images',
  plan: async (paths) => planAsGiven(paths, 'captions'),
  handler(file, ctx) {
    const composer = new PairComposer(ctx, file);
    const h = recordHandler(file, ctx, {
      what: 'LEVIR-CC',
      arrayKey: 'images',
      required: ['filename', 'split', 'sentences'],
      onRecord(el, v) {
        const name = str(el.filename)?.trim();
        const split = str(el.split)?.trim();
        if (!name || !split) return void setAside(ctx, file, v.offset, 'LEVIR-CC item without filename or split');
        const rel = composer.compose('levir-cc', `${split}_${name.replace(/\.\w+$/, '')}`, `images/${split}/A/${name}`, `images/${split}/B/${name}`, v.offset);
        const f = pairFragment(ctx, rel, file.path, v.offset);
        f.facts.push(SIDES_BEFORE_AFTER);
        if (Number(el.changeflag) === 0) f.facts.push('Nothing changed between the two photos.');
        for (const s of Array.isArray(el.sentences) ? el.sentences.filter(isObject) : []) {
          const raw = str(s.raw)?.trim();
          if (raw) f.captions.push(sentence(raw[0]!.toUpperCase() + raw.slice(1)));
        }
        ctx.sink.emit(f);
      },
    });
    return { ...h, pending: (all: boolean) => composer.pending(all) };
  },
};

function hfPair(what: string, family: string, required: string[], fill: (row: Record<string, unknown>, f: Fragment) => void) {
  return (file: PlannedFile, ctx: HandlerContext): FileHandler => {
    const composer = new PairComposer(ctx, file);
    const h = recordHandler(file, ctx, {
      what: `${what} ${path.basename(file.path)}`,
      format: 'parquet',
      required,
      onRecord(row, v) {
        const images = (Array.isArray(row.images) ? row.images : [row.img0, row.img1]).map((x) => (x instanceof Uint8Array ? x : isObject(x) && x.bytes instanceof Uint8Array ? x.bytes : null));
        if (images.length < 2 || !images[0] || !images[1]) return void setAside(ctx, file, v.offset, `${what} row ${v.index}: two images expected`);
        const name = str(row.uid) ?? `${path.basename(file.path, '.parquet')}_${v.index}`;
        const rel = composer.compose(family, name, images[0], images[1], v.offset);
        const f = pairFragment(ctx, rel, file.path, v.offset);
        fill(row, f);
        ctx.sink.emit(f);
      },
    });
    return { ...h, pending: (all: boolean) => composer.pending(all) };
  };
}

/** Spot-the-diff (`nimapourjafar/mm_spot_the_diff`): two frames and turns about their differences, paired by role. */
export const spotTheDiff: SourceKind = {
  kind: 'spot-the-diff',
  family: 'spot-the-diff',
  expects: 'Hugging Face nimapourjafar/mm_spot_the_diff *.parquet (images: two, data [{data, modality, role}])',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: hfPair('Spot-the-diff', 'spot-the-diff', ['images', 'data'], (row, f) => {
    f.facts.push('The image shows two video frames side by side: the first on the left, the second on the right.');
    qaFromRoleTurns(row.data, f);
  }),
};

/** Image editing requests (`taesiri/ImageEditingRequestV1`): the original and the edited image, and what was asked. */
export const imageEditing: SourceKind = {
  kind: 'image-editing',
  family: 'image-editing',
  expects: 'Hugging Face taesiri/ImageEditingRequestV1 *.parquet (uid, img0, img1, sents)',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: hfPair('Image editing', 'image-editing', ['img0', 'img1', 'sents'], (row, f) => {
    f.facts.push('The image shows two pictures side by side: the original on the left, the edited one on the right.');
    for (const s of strings(row.sents)) f.facts.push(sentence(`The left image was edited to make the right one: ${s}`));
  }),
};
