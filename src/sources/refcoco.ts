import { stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { cocoRef, parseSegmentation } from './coco.js';
import { recordHandler } from './records.js';
import { cocoFileName } from './vqa.js';
import { emptyFragment, isObject, num, rawBox, str, type PlannedFile, type SourceKind } from './types.js';

/**
 * RefCOCO, RefCOCO+ and RefCOCOg: referring expressions ("man in red on the
 * left") for COCO objects. Each expression becomes a label on its object's
 * box, so the tree merges it with the COCO box of the same object and prints
 * it beside the category ("man in red on the left (person)").
 *
 * Files: the refs in JSON (the original `refs(unc).p` / `refs(umd).p` /
 * `refs(google).p` pickles converted once, see the README) and the
 * `instances.json` that ships beside them, which gives each ref's box by
 * `ann_id` and the images' sizes. Refs that carry their own `bbox` (several
 * JSON re-releases do) need no instances file.
 */
function isInstances(p: string): boolean {
  return /instances[^/]*\.json$/i.test(path.basename(p));
}

async function planRefcoco(kind: string, paths: string[]): Promise<PlannedFile[]> {
  const out: PlannedFile[] = [];
  for (const p of paths) {
    const st = await stat(p).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source ${kind}: ${err.message}`, { file: p, cause: err });
    });
    if (st.isDirectory()) throw new InstructifyError('E_OPTION', `source ${kind}: give the refs JSON file and the instances.json beside it, not the folder`, { file: p });
    // The instances file is read first: its boxes are looked up by the refs.
    out.push({ path: p, role: isInstances(p) ? 'instances' : 'refs', first: isInstances(p) });
  }
  if (!out.some((f) => f.role === 'refs')) throw new InstructifyError('E_OPTION', `source ${kind}: no refs file among ${paths.join(', ')} (a JSON conversion of refs(unc).p or similar)`);
  return out;
}

export function refcocoKind(kind: string, dataset: string): SourceKind {
  return {
    kind,
    family: 'coco',
    expects: `${dataset} refs as JSON (converted from refs(*).p) [+ the instances.json beside them]`,
    plan: (paths) => planRefcoco(kind, paths),
    handler(file, ctx) {
      // ann_id -> box, shared by this source's files through the ingest state.
      let boxes = ctx.state.annotationBoxes.get(ctx.source);
      if (!boxes) ctx.state.annotationBoxes.set(ctx.source, (boxes = new Map()));
      const annBoxes = boxes;
      let masks = ctx.state.annotationMasks.get(ctx.source);
      if (!masks) ctx.state.annotationMasks.set(ctx.source, (masks = new Map()));
      const annMasks = masks;
      if (file.role === 'instances') {
        return recordHandler(file, ctx, {
          what: `${dataset} instances`,
          arrayKey: ['images', 'annotations'],
          required: [],
          skipKeys: ['info', 'licenses', 'categories', 'refs'],
          onRecord(el, v) {
            if (v.key === 'annotations') {
              const b = Array.isArray(el.bbox) ? el.bbox.map(num) : [];
              if (b.length === 4) annBoxes.set(num(el.id), [b[0]!, b[1]!, b[2]!, b[3]!]);
              // Its segmentation is the object's mask, as coco-instances would read it.
              const mask = parseSegmentation(el.segmentation, undefined);
              if (mask) annMasks.set(num(el.id), mask);
              return;
            }
            // Image sizes, so boxes can be placed even without COCO's own files.
            const id = num(el.id);
            const f = emptyFragment(cocoRef(id), ctx, file.path, v.offset);
            const w = num(el.width);
            const h = num(el.height);
            f.width = w > 0 ? w : null;
            f.height = h > 0 ? h : null;
            const name = str(el.file_name);
            if (ctx.cocoNaming === '2014' && name) f.path = name;
            ctx.sink.emit(f);
          },
        });
      }
      return recordHandler(file, ctx, {
        what: `${dataset} refs`,
        arrayKey: [null, 'refs'],
        required: ['image_id', 'sentences'],
        onRecord(el, v) {
          const imageId = num(el.image_id);
          const own = Array.isArray(el.bbox) ? el.bbox.map(num) : null;
          const box = own && own.length === 4 ? own : annBoxes.get(num(el.ann_id));
          if (!box) {
            ctx.sink.reject({
              reason: 'bad-record',
              detail: `ref ${str(el.ref_id) ?? v.index}: no box for ann_id ${str(el.ann_id)} (give the instances.json that comes with the refs)`,
              source: ctx.source,
              file: file.path,
              offset: v.offset,
              image: cocoRef(imageId),
            });
            return;
          }
          const f = emptyFragment(cocoRef(imageId), ctx, file.path, v.offset);
          if (ctx.cocoNaming === '2014') {
            // Refs name files with the annotation id appended (COCO_train2014_000000581857_16.jpg).
            const name = str(el.file_name)?.replace(/_\d+\.jpg$/, '.jpg');
            f.path = name ?? cocoFileName(imageId, '2014', null);
          }
          const sentences = Array.isArray(el.sentences) ? el.sentences : [];
          for (const s of sentences) {
            // `raw` is the sentence as the annotator wrote it; `sent` is tokenised ("hot - dog", "looking down , to").
            const text = (isObject(s) ? (str(s.raw) ?? str(s.sent)) : str(s))?.trim();
            if (!text) continue;
            const b = rawBox(text, box[0]!, box[1]!, box[2]!, box[3]!);
            // The COCO annotation this expression is about (the same object as coco-instances' box with that
            // id), then which of its sentences: "200887:0". Each sentence stays a label of its own.
            const annId = num(el.ann_id);
            if (Number.isFinite(annId)) b.sourceId = `${annId}:${isObject(s) && s.sent_id !== undefined ? str(s.sent_id) : sentences.indexOf(s)}`;
            // Only a box looked up by ann_id is that annotation's: a ref's own bbox may be drawn otherwise.
            if (!own || own.length !== 4) b.mask = annMasks.get(annId) ?? null;
            f.boxes.push(b);
          }
          if (f.boxes.length) ctx.sink.emit(f);
        },
      });
    },
  };
}

export const refcoco = refcocoKind('refcoco', 'RefCOCO');
export const refcocoPlus = refcocoKind('refcoco+', 'RefCOCO+');
export const refcocog = refcocoKind('refcocog', 'RefCOCOg');
