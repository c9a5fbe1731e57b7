import path from 'node:path';
import { InstructifyError } from '../errors.js';
import type { RawBox } from '../types.js';
import { embeddedImage } from './custom.js';
import { planAsGiven } from './files.js';
import { fragmentForPath, qaFromRoleTurns, recordHandler, setAside, sentence, strings } from './records.js';
import { ocrSentence } from './text-vqa.js';
import { mostCommon } from './vqa.js';
import { emptyFragment, isObject, num, rawBox, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * Datasets about the text in images: OCR-VQA, ST-VQA, VisualMRC, LLaVAR and
 * DocOwl-style OCR results. OCR words become boxes labelled `text "WORD"`
 * and one "The text in the image reads: ..." fact.
 */

/**
 * OCR word boxes as `[text, x1, y1, x2, y2, ...]`. Files differ in units:
 * when every coordinate of an image is within 0..1 the boxes are fractions
 * of the image, else pixels (LLaVAR's and DocOwl's files, and `enrich --ocr`'s, are pixels).
 */
export function ocrWordBoxes(words: unknown[]): { boxes: RawBox[]; text: string[] } {
  const rows = words.filter((w): w is unknown[] => Array.isArray(w) && w.length >= 5 && typeof w[0] === 'string' && (w[0] as string).trim() !== '');
  const normalized = rows.length > 0 && rows.every((w) => [1, 2, 3, 4].every((i) => num(w[i]) >= 0 && num(w[i]) <= 1));
  const boxes = rows.map((w) => {
    const [x1, y1, x2, y2] = [num(w[1]), num(w[2]), num(w[3]), num(w[4])];
    const b = rawBox(`text "${(w[0] as string).trim()}"`, x1, y1, x2 - x1, y2 - y1);
    if (normalized) b.normalized = true;
    return b;
  });
  return { boxes, text: rows.map((w) => (w[0] as string).trim()) };
}

/** LLaVAR: `finetune_meta.json` (llavar_id, TEXT, WIDTH, HEIGHT) and an OCR JSONL (llavar_id, ocr_results [[text, x1, y1, x2, y2]]), images `<llavar_id>.jpg`. */
export const llavar: SourceKind = {
  kind: 'llavar',
  family: 'llavar',
  expects: 'LLaVAR finetune_meta.json (llavar_id, TEXT, WIDTH, HEIGHT) and/or the OCR *.jsonl (llavar_id, ocr_results [[text, x1, y1, x2, y2]] in pixels)',
  plan: async (paths) => planAsGiven(paths, 'llavar'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'LLaVAR',
      format: file.path.endsWith('.jsonl') ? 'jsonl' : 'json',
      required: ['llavar_id'],
      onRecord(el, v) {
        const id = str(el.llavar_id)?.trim();
        if (!id) return void setAside(ctx, file, v.offset, 'LLaVAR record without llavar_id');
        const p = /\.\w+$/.test(id) ? id : `${id}.jpg`;
        const f = emptyFragment(`llavar:${p}`, ctx, file.path, v.offset);
        f.path = p;
        const w = num(el.WIDTH);
        const h = num(el.HEIGHT);
        if (w > 0 && h > 0) [f.width, f.height] = [w, h];
        const text = str(el.TEXT)?.trim();
        if (text) f.facts.push(sentence(`The text in the image reads: ${text}`));
        if (Array.isArray(el.ocr_results)) f.boxes.push(...ocrWordBoxes(el.ocr_results).boxes);
        ctx.sink.emit(f);
      },
    }),
};

/** DocOwl-style OCR results: `{image_path: [[text, x1, y1, x2, y2], ...]}` (what `enrich --keep-maps` writes per image too). */
export const docowl: SourceKind = {
  kind: 'docowl',
  family: 'docowl',
  expects: 'OCR results JSON: {image_path: [[text, x1, y1, x2, y2], ...]} (pixels, or fractions of the image)',
  plan: async (paths) => planAsGiven(paths, 'ocr'),
  handler(file: PlannedFile, ctx: HandlerContext): FileHandler {
    // The reader splits each image's list into its words: they are gathered per image, in order.
    let current: { image: string; offset: number; words: unknown[] } | null = null;
    let images = 0;
    const flush = () => {
      if (current === null) return;
      images++;
      const f = fragmentForPath(current.image, 'docowl', ctx, file.path, current.offset);
      const { boxes, text } = ocrWordBoxes(current.words);
      f.boxes.push(...boxes);
      const fact = ocrSentence(text);
      if (fact) f.facts.push(fact);
      ctx.sink.emit(f);
      current = null;
    };
    return {
      onValue(v) {
        if (v.key === null) return;
        if (v.index === -1) {
          // A value that is not a list of words (an empty list arrives this way too).
          flush();
          if (Array.isArray(v.value)) return void (v.value.length ? (current = { image: v.key, offset: v.offset, words: v.value }) : undefined);
          return void setAside(ctx, file, v.offset, `OCR results for ${v.key} are not a list of words`, v.key);
        }
        if (current?.image !== v.key) {
          flush();
          current = { image: v.key, offset: v.offset, words: [] };
        }
        current.words.push(v.value);
      },
      finish() {
        flush();
        if (images === 0) throw new InstructifyError('E_WRONG_KIND', 'OCR results: found no image (expected {image_path: [[text, x1, y1, x2, y2], ...]})', { file: file.path, source: ctx.source });
      },
    };
  },
};

/** A Hugging Face Parquet preset: which columns hold the image and how a row becomes a fragment. */
function hfPreset(what: string, family: string, required: string[], fill: (row: Record<string, unknown>, f: ReturnType<typeof emptyFragment>, ctx: HandlerContext) => void) {
  return (file: PlannedFile, ctx: HandlerContext) =>
    recordHandler(file, ctx, {
      what: `${what} ${path.basename(file.path)}`,
      format: 'parquet',
      required,
      onRecord(row, v) {
        const image = embeddedImage(ctx, family, row.image ?? (Array.isArray(row.images) ? row.images[0] : undefined));
        if (!image) return void setAside(ctx, file, v.offset, `${what} row ${v.index}: no image`);
        const f = fragmentForPath(image, family, ctx, file.path, v.offset);
        fill(row, f, ctx);
        ctx.sink.emit(f);
      },
    });
}

/**
 * OCR-VQA (`howard-hou/OCR-VQA`): book covers with title, author and genre,
 * questions and answers, and OCR words whose boxes are in pixels
 * (`top_left_x`, `top_left_y`, `width`, `height`; the reference reads keys
 * the data does not have, so its boxes are always empty).
 */
export const ocrVqa: SourceKind = {
  kind: 'ocr-vqa',
  family: 'ocr-vqa',
  expects: 'Hugging Face howard-hou/OCR-VQA *.parquet (image, title, authorName, genre, questions, answers, ocr_info)',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: hfPreset('OCR-VQA', 'ocr-vqa', ['image', 'questions', 'answers'], (row, f) => {
    const title = str(row.title)?.trim();
    const author = str(row.authorName)?.trim();
    const genre = str(row.genre)?.trim();
    if (title) f.facts.push(sentence(`The title of this book is "${title}"`));
    if (author) f.facts.push(sentence(`The book is by ${author}`));
    if (genre) f.facts.push(sentence(`The book's genre is ${genre}`));
    const qs = strings(row.questions);
    const as = strings(row.answers);
    qs.forEach((q, i) => as[i] && f.qa.push({ id: null, question: q, answer: as[i]!, answers: [as[i]!] }));
    const words = Array.isArray(row.ocr_info) ? row.ocr_info.filter(isObject) : [];
    for (const w of words) {
      const text = str(w.word)?.trim();
      const bb = isObject(w.bounding_box) ? w.bounding_box : w;
      const [x, y, bw, bh] = [num(bb.top_left_x), num(bb.top_left_y), num(bb.width), num(bb.height)];
      if (text && [x, y, bw, bh].every(Number.isFinite)) f.boxes.push(rawBox(`text "${text}"`, x, y, bw, bh));
    }
  }),
};

/** ST-VQA: Hugging Face `vikhyatk/st-vqa` (image, qas [{question, answers}]) or the original JSON (file_path, question, answers). */
export const stVqa: SourceKind = {
  kind: 'st-vqa',
  family: 'st-vqa',
  expects: 'ST-VQA: Hugging Face vikhyatk/st-vqa *.parquet (image, qas) or the original *.json (data: file_path, question, answers)',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler(file, ctx) {
    const addQa = (f: ReturnType<typeof emptyFragment>, question: unknown, answers: unknown) => {
      const q = str(question)?.trim();
      const all = strings(answers);
      const a = mostCommon(all);
      if (q && a) f.qa.push({ id: null, question: q, answer: a, answers: all });
    };
    if (file.path.endsWith('.parquet')) {
      return hfPreset('ST-VQA', 'st-vqa', ['image', 'qas'], (row, f) => {
        for (const qa of Array.isArray(row.qas) ? row.qas.filter(isObject) : []) addQa(f, qa.question, qa.answers);
      })(file, ctx);
    }
    return recordHandler(file, ctx, {
      what: 'ST-VQA',
      arrayKey: ['data', null],
      required: ['file_path', 'question', 'answers'],
      onRecord(el, v) {
        const p = str(el.file_path)?.trim();
        if (!p) return void setAside(ctx, file, v.offset, 'ST-VQA record without file_path');
        const f = fragmentForPath(p, 'st-vqa', ctx, file.path, v.offset);
        addQa(f, el.question, el.answers);
        ctx.sink.emit(f);
      },
    });
  },
};

/**
 * VisualMRC (`nimapourjafar/mm_visualmrc`): `images` and `data` turns
 * `{data, modality, role}`; a question is a user text turn, its answer the
 * next assistant turn (paired by role: the reference pairs by position).
 */
export const visualMrc: SourceKind = {
  kind: 'visualmrc',
  family: 'visualmrc',
  expects: 'Hugging Face nimapourjafar/mm_visualmrc *.parquet (images, data [{data, modality, role}])',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: hfPreset('VisualMRC', 'visualmrc', ['images', 'data'], (row, f) => qaFromRoleTurns(row.data, f)),
};

/**
 * DIOR-RSVG (`danielz01/DIOR-RSVG`): aerial images with objects {bbox (pixel
 * x1 y1 x2 y2), captions, categories}. Each caption describes its box (as
 * a referring expression); a box without a caption keeps its category (the
 * reference drops every box then).
 */
export const diorRsvg: SourceKind = {
  kind: 'dior-rsvg',
  family: 'dior-rsvg',
  expects: 'Hugging Face danielz01/DIOR-RSVG *.parquet (image, path, objects {bbox xyxy pixels, captions, categories})',
  plan: async (paths) => planAsGiven(paths, 'data'),
  handler: hfPreset('DIOR-RSVG', 'dior-rsvg', ['image', 'objects'], (row, f) => {
    const o = isObject(row.objects) ? row.objects : {};
    const bboxes = Array.isArray(o.bbox) ? o.bbox : [];
    const cats = Array.isArray(o.categories_normalized) && o.categories_normalized.length ? o.categories_normalized : Array.isArray(o.categories) ? o.categories : [];
    const captions = Array.isArray(o.captions) ? o.captions : [];
    bboxes.forEach((bb, i) => {
      if (!Array.isArray(bb) || bb.length < 4) return;
      const [x1, y1, x2, y2] = bb.map(num) as [number, number, number, number];
      const cat = str(cats[i])?.trim().replace(/_/g, ' ');
      if (cat) f.boxes.push(rawBox(cat, x1, y1, x2 - x1, y2 - y1));
      for (const c of strings(captions[i])) f.boxes.push(rawBox(c, x1, y1, x2 - x1, y2 - y1));
    });
    if (bboxes.length) f.facts.push('An aerial image.');
  }),
};
