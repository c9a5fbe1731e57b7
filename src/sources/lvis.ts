import { existsSync } from 'node:fs';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { readPolygonText } from '../tree/masks.js';
import { cocoRef, parseSegmentation } from './coco.js';
import { emptyFragment, isObject, keysOf, num, rawBox, str, type SourceKind } from './types.js';

/**
 * LVIS (v1): COCO-style instances over COCO images, with per-image lists of
 * categories known to be absent (`neg_category_ids`). Category names are
 * synset-style (`baseball_bat`); they are written with spaces. As in COCO,
 * categories come last, so names are resolved when records are assembled.
 */
const RAW_KEYS = new Set(['segmentation']);
/** Annotations (most of a 1 GB LVIS file) are handled one by one: read workers may take them. */
const PARALLEL_KEYS = new Set<string | null>(['annotations']);

/**
 * The image is the one `coco_url` names (LVIS images are COCO 2017's:
 * `.../val2017/000000397133.jpg`); v0.5's `file_name`
 * (`COCO_val2014_000000397133.jpg`) is the fallback only.
 */
/** `val2017/000000397133.jpg` from coco_url, when it names one of COCO's split folders. */
function splitPathOf(img: Record<string, unknown>): string | null {
  const m = /\/((?:train|val|test)20\d\d)\/([^/]+)$/.exec(str(img.coco_url) ?? '');
  return m ? `${m[1]}/${m[2]}` : null;
}

function fileNameOf(img: Record<string, unknown>): string | null {
  const url = str(img.coco_url);
  if (url) return url.split('/').pop()!;
  const name = str(img.file_name);
  return name ? name.split('/').pop()! : null;
}

/**
 * A polygon with a point outside its box (by more than 2 pixels or 2% of
 * the box's side): it does not outline that box's object.
 */
export function polygonOutsideBox(text: string, b: { x: number; y: number; w: number; h: number }): boolean {
  let xs: ArrayLike<number>;
  const fast = readPolygonText(text);
  if (fast) xs = fast.coords.subarray(0, fast.starts[fast.count] ?? 0);
  else {
    try {
      xs = (JSON.parse(text) as unknown[]).flat(2).filter((v): v is number => typeof v === 'number');
    } catch {
      return false;
    }
  }
  const tx = Math.max(2, 0.02 * b.w);
  const ty = Math.max(2, 0.02 * b.h);
  for (let i = 0; i + 1 < xs.length; i += 2) {
    const x = xs[i]!;
    const y = xs[i + 1]!;
    if (x < b.x - tx || x > b.x + b.w + tx || y < b.y - ty || y > b.y + b.h + ty) return true;
  }
  return false;
}

export const lvis: SourceKind = {
  kind: 'lvis',
  family: 'coco',
  expects: 'lvis_v1_*.json (images with neg_category_ids, annotations with bbox and segmentation, categories)',
  plan: async (paths) => {
    if (paths.length !== 1) throw new InstructifyError('E_OPTION', `source lvis takes one annotation file, got ${paths.length}`);
    return [{ path: paths[0]!, role: 'lvis' }];
  },
  handler(file, ctx) {
    // An image root that holds COCO 2017's own folders (train2017/, val2017/), with no --image-dir for COCO:
    // LVIS images are in both, and coco_url says which.
    const splitRoot = ctx.images !== null && !ctx.imageDirs?.coco && ['train2017', 'val2017'].some((d) => existsSync(path.join(ctx.images!, d)));
    const categories = new Map<number, string>();
    ctx.state.categories.set(ctx.source, categories);
    const seen = new Set<string>();
    let checked = false;
    return {
      skipKeys: new Set(['info', 'licenses']),
      rawKeys: RAW_KEYS,
      parallelKeys: PARALLEL_KEYS,
      onValue(v) {
        if (v.key === null) throw new InstructifyError('E_WRONG_KIND', 'an LVIS file is a JSON object with "images", "annotations" and "categories"', { file: file.path, source: ctx.source });
        seen.add(v.key);
        const el = v.value;
        if (!isObject(el)) return;
        if (v.key === 'images') {
          if (!checked && !('neg_category_ids' in el)) {
            throw new InstructifyError('E_WRONG_KIND', `LVIS images carry neg_category_ids; the first image has ${keysOf(el)} (for plain COCO, use coco-instances)`, { file: file.path, offset: v.offset, source: ctx.source });
          }
          checked = true;
          const id = num(el.id);
          const f = emptyFragment(cocoRef(id), ctx, file.path, v.offset);
          f.catalog = true;
          f.path = (splitRoot ? splitPathOf(el) : null) ?? fileNameOf(el);
          const w = num(el.width);
          const h = num(el.height);
          f.width = w > 0 ? w : null;
          f.height = h > 0 ? h : null;
          f.labelSentence = true;
          if (Array.isArray(el.neg_category_ids)) f.absentCategoryIds = el.neg_category_ids.map(num).filter(Number.isFinite);
          if (Array.isArray(el.not_exhaustive_category_ids)) f.uncountedCategoryIds = el.not_exhaustive_category_ids.map(num).filter(Number.isFinite);
          ctx.sink.emit(f);
        } else if (v.key === 'annotations') {
          const f = emptyFragment(cocoRef(num(el.image_id)), ctx, file.path, v.offset);
          f.requiresCatalogFrom = ctx.source;
          const bbox = Array.isArray(el.bbox) ? el.bbox : [];
          const box = rawBox(null, num(bbox[0]), num(bbox[1]), num(bbox[2]), num(bbox[3]));
          box.categoryId = num(el.category_id);
          box.sourceId = str(el.id);
          box.mask = parseSegmentation(el.segmentation, v.raw?.segmentation);
          // LVIS v0.5 has polygons drawn in another image's pixels, far outside their own box: such a mask is set aside, the box kept.
          if (box.mask?.format === 'polygon' && box.mask.polygons && polygonOutsideBox(box.mask.polygons, box)) {
            ctx.sink.reject({
              reason: 'mask-outside-box',
              detail: `annotation ${str(el.id)}: its polygon lies outside its box [${[box.x, box.y, box.w, box.h].join(', ')}]; the box is used instead`,
              source: ctx.source,
              file: file.path,
              offset: v.offset,
              image: cocoRef(num(el.image_id)),
            });
            box.mask = null;
          }
          f.boxes.push(box);
          ctx.sink.emit(f);
        } else if (v.key === 'categories') {
          const id = num(el.id);
          const name = str(el.name);
          if (Number.isFinite(id) && name) categories.set(id, name.replace(/_/g, ' '));
        }
      },
      finish() {
        const missing = ['images', 'annotations', 'categories'].filter((k) => !seen.has(k));
        if (missing.length) throw new InstructifyError('E_WRONG_KIND', `an LVIS file needs images, annotations and categories; missing ${missing.join(', ')}`, { file: file.path, source: ctx.source });
      },
    };
  },
};
