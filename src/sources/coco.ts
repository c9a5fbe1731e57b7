import { existsSync } from 'node:fs';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { encodeRleCounts } from '../records/rle.js';
import type { Mask } from '../types.js';
import {
  emptyFragment,
  isObject,
  keysOf,
  num,
  rawBox,
  str,
  type FileHandler,
  type HandlerContext,
  type PlannedFile,
  type SourceKind,
} from './types.js';

/** COCO image ids are shared by the 2014 and 2017 releases (and by VQA, RefCOCO, LVIS). */
export function cocoRef(id: number): string {
  return `coco:${id}`;
}

const HEADER_KEYS = new Set(['info', 'licenses']);
const RAW_KEYS = new Set(['segmentation']);
/** How the splitter reads a COCO instances file: headers skipped, polygons kept as text (bench/floor splits files the same way). */
export const COCO_INSTANCES_SPLIT = { skipKeys: HEADER_KEYS, rawKeys: RAW_KEYS } as const;
/**
 * Images and annotations are each handled on their own, so worker threads
 * may take them. Images come first in COCO files: while the main thread
 * parsed them all itself (154,000 in the 300 MB bench file), the read
 * worker had nothing to do for about half a second.
 */
const PARALLEL_KEYS = new Set<string | null>(['images', 'annotations']);

/**
 * Shared by captions and instances: the `images` table gives file names and
 * sizes (catalog fragments); `annotations` are checked on their first element
 * so that a file of the wrong kind fails at once with the keys we expected.
 */
/**
 * COCO 2014 file names (`COCO_train2014_000000057870.jpg`) where the user
 * holds COCO 2017's folders: the same picture is `000000057870.jpg` in
 * val2017/ or train2017/ (2017 re-split 2014's images). Used when the image
 * root has a 2017 folder, no 2014 folder, and no --image-dir for COCO.
 */
export function in2017Folders(fileName: string | null, ctx: HandlerContext): string | null {
  const m = fileName === null ? null : /^COCO_(?:train|val)2014_(\d{12}\.jpg)$/.exec(fileName);
  if (!m || ctx.images === null || ctx.imageDirs?.coco) return fileName;
  const root = ctx.images;
  let layout = LAYOUTS.get(root);
  if (layout === undefined) {
    const has = (d: string) => existsSync(path.join(root, d));
    layout = !has('train2014') && !has('val2014') && (has('val2017') || has('train2017'));
    LAYOUTS.set(root, layout);
  }
  if (!layout) return fileName;
  for (const split of ['val2017', 'train2017']) {
    if (existsSync(path.join(root, split, m[1]!))) {
      ctx.note?.(`COCO 2014 file names (${fileName}) found as COCO 2017 files in ${path.join(root, split)} (the image root has 2017 folders and no 2014 ones)`);
      return `${split}/${m[1]}`;
    }
  }
  return fileName;
}

/** Per image root: does it hold COCO 2017's folders and no 2014 ones? */
const LAYOUTS = new Map<string, boolean>();

function cocoHandler(
  file: PlannedFile,
  ctx: HandlerContext,
  kind: 'captions' | 'instances',
  onAnnotation: (a: Record<string, unknown>, offset: number, raw: Record<string, string> | null) => void,
): FileHandler {
  const seen = new Set<string>();
  let checked = false;
  const categories = new Map<number, string>();
  if (kind === 'instances') ctx.state.categories.set(ctx.source, categories);
  const expectedKeys = kind === 'captions' ? ['image_id', 'caption'] : ['image_id', 'bbox', 'category_id'];

  return {
    skipKeys: HEADER_KEYS,
    rawKeys: kind === 'instances' ? RAW_KEYS : undefined,
    parallelKeys: PARALLEL_KEYS,
    onValue(v) {
      if (v.key === null) {
        throw new InstructifyError('E_WRONG_KIND', `a COCO ${kind} file is a JSON object with "images" and "annotations"; this file is a top-level array`, {
          file: file.path,
          source: ctx.source,
        });
      }
      seen.add(v.key);
      const el = v.value;
      if (v.key === 'images') {
        if (!isObject(el)) return;
        const id = num(el.id);
        const f = emptyFragment(cocoRef(id), ctx, file.path, v.offset);
        f.catalog = true;
        f.path = in2017Folders(str(el.file_name), ctx);
        const w = num(el.width);
        const h = num(el.height);
        f.width = Number.isFinite(w) && w > 0 ? w : null;
        f.height = Number.isFinite(h) && h > 0 ? h : null;
        ctx.sink.emit(f);
      } else if (v.key === 'annotations') {
        if (!checked) {
          checked = true;
          if (!isObject(el) || !expectedKeys.every((k) => k in el)) {
            const hint = isObject(el) && 'caption' in el ? ' (this looks like a COCO captions file)' : isObject(el) && 'bbox' in el ? ' (this looks like a COCO instances file)' : '';
            throw new InstructifyError(
              'E_WRONG_KIND',
              `source "${ctx.source}" expects COCO ${kind} annotations with keys ${expectedKeys.join(', ')}; the first annotation has ${keysOf(el)}${hint}`,
              { file: file.path, offset: v.offset, source: ctx.source },
            );
          }
        }
        if (isObject(el)) onAnnotation(el, v.offset, v.raw);
      } else if (v.key === 'categories' && isObject(el)) {
        const id = num(el.id);
        const name = str(el.name);
        if (Number.isFinite(id) && name !== null) categories.set(id, name);
      }
    },
    finish() {
      const required = kind === 'instances' ? ['images', 'annotations', 'categories'] : ['images', 'annotations'];
      const missing = required.filter((k) => !seen.has(k));
      if (missing.length) {
        throw new InstructifyError(
          'E_WRONG_KIND',
          `source "${ctx.source}" expects a COCO ${kind} file with top-level keys ${required.join(', ')}; missing ${missing.join(', ')} (found ${[...seen].join(', ') || 'none'})`,
          { file: file.path, source: ctx.source },
        );
      }
    },
  };
}

/** A mask from a COCO `segmentation`: raw polygon JSON text when the splitter kept it raw, else the parsed value. */
export function parseSegmentation(seg: unknown, rawPolygons: string | undefined): Mask | null {
  if (rawPolygons !== undefined) return rawPolygons.length > 4 ? { format: 'polygon', polygons: rawPolygons, rle: null, height: 0, width: 0 } : null;
  if (Array.isArray(seg)) {
    const polygons = seg.filter((p): p is number[] => Array.isArray(p) && p.length >= 6);
    return polygons.length ? { format: 'polygon', polygons: JSON.stringify(polygons), rle: null, height: 0, width: 0 } : null;
  }
  if (isObject(seg) && Array.isArray(seg.size)) {
    const [h, w] = seg.size as unknown[];
    const height = num(h);
    const width = num(w);
    if (typeof seg.counts === 'string') return { format: 'rle', polygons: null, rle: seg.counts, height, width };
    if (Array.isArray(seg.counts)) return { format: 'rle', polygons: null, rle: encodeRleCounts(seg.counts as number[]), height, width };
  }
  return null;
}

async function singleFile(kind: string, paths: string[]): Promise<PlannedFile[]> {
  if (paths.length !== 1) throw new InstructifyError('E_OPTION', `source ${kind} takes one annotation file, got ${paths.length}`);
  return [{ path: paths[0]!, role: kind }];
}

export const cocoCaptions: SourceKind = {
  kind: 'coco-captions',
  family: 'coco',
  expects: 'captions_*.json (COCO captions: images + annotations with caption)',
  plan: (paths) => singleFile('coco-captions', paths),
  handler(file, ctx) {
    return cocoHandler(file, ctx, 'captions', (a, offset) => {
      const text = str(a.caption);
      const f = emptyFragment(cocoRef(num(a.image_id)), ctx, file.path, offset);
      f.requiresCatalogFrom = ctx.source;
      if (text !== null && text.trim() !== '') f.captions.push(text.trim());
      ctx.sink.emit(f);
    });
  },
};

export const cocoInstances: SourceKind = {
  kind: 'coco-instances',
  family: 'coco',
  expects: 'instances_*.json (COCO instances: images + annotations with bbox, category_id, segmentation + categories)',
  plan: (paths) => singleFile('coco-instances', paths),
  handler(file, ctx) {
    return cocoHandler(file, ctx, 'instances', (a, offset, raw) => {
      const f = emptyFragment(cocoRef(num(a.image_id)), ctx, file.path, offset);
      f.requiresCatalogFrom = ctx.source;
      const bbox = Array.isArray(a.bbox) ? a.bbox : [];
      const box = rawBox(null, num(bbox[0]), num(bbox[1]), num(bbox[2]), num(bbox[3]));
      box.categoryId = num(a.category_id);
      box.iscrowd = a.iscrowd === 1 || a.iscrowd === true;
      box.sourceId = str(a.id);
      box.mask = parseSegmentation(a.segmentation, raw?.segmentation);
      f.boxes.push(box);
      ctx.sink.emit(f);
    });
  },
};
