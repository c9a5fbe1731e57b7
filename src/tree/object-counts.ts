import { isRelationPhrase, singular, spoken } from './labels.js';
import type { Box } from '../types.js';

// How many objects of each kind the annotations have: what the tree's
// "Object Counts" footer and the facts' counts say, whatever the tree merged
// (a pizza merged into the table it lies on is still a pizza).

/**
 * Sources whose box labels are phrases about one object (referring
 * expressions, caption phrases), not categories: their boxes are never
 * counted as kinds of object.
 */
const PHRASE_SOURCES = /^(refcoco|refcoco\+|refcocog|flickr30k|localized-narratives|visual7w)(-\d+)?$/;

/** A box label that names a kind of object (not a referring expression or a relation). */
export function isCategoryLabel(label: string): boolean {
  const l = spoken(label);
  // Words only: VG names text it saw ('"walk"' on a sign) and sentences ("a dove is sitting near ...") as objects.
  return /^\p{L}[\p{L} '-]*$/u.test(l) && l.split(/\s+/).length <= 3 && !isRelationPhrase(l);
}


export interface ObjectCount {
  /** Singular label as spoken, lower case. */
  label: string;
  /** Annotated objects that are not crowd regions (one object seen by two datasets counts once). */
  count: number;
  /** A crowd region of this kind was annotated ("a group of"). */
  crowd: boolean;
  /** The one box, when the count is 1 and there is no crowd. */
  only: Box | null;
}

function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = ix * iy;
  const area = (x: Box) => Math.max(0, x.x2 - x.x1) * Math.max(0, x.y2 - x.y1);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** Share of the smaller box inside the larger. */
function inside(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const area = (x: Box) => Math.max(0, x.x2 - x.x1) * Math.max(0, x.y2 - x.y1);
  const small = Math.min(area(a), area(b));
  return small > 0 ? (ix * iy) / small : 0;
}

/** Two datasets' boxes of one object: the same kind, overlapping heavily (IoU 0.5) or one inside the other. */
export const SAME_OBJECT_IOU = 0.5;
export const SAME_OBJECT_INSIDE = 0.9;

/**
 * Objects per kind, as the annotations have them: one per non-crowd box of a
 * category, except that a box of another dataset of the same kind that
 * overlaps one already counted (COCO's chair and LVIS's chair, VG's and
 * COCO's) is the same object. Boxes of one dataset are never merged: two
 * annotations there are two objects. Sorted by label.
 */
export function objectCounts(boxes: readonly Box[], uncounted: readonly string[] = []): ObjectCount[] {
  const by = new Map<string, { count: ObjectCount; objects: Box[][] }>();
  // Kinds whose objects were not all annotated: the boxes there are some of them, not how many.
  const skip = new Set(uncounted.map((l) => singular(spoken(l))));
  for (const b of boxes) {
    if (PHRASE_SOURCES.test(b.source) || !isCategoryLabel(b.label)) continue;
    const label = singular(spoken(b.label));
    if (!label || skip.has(label)) continue;
    let e = by.get(label);
    if (!e) by.set(label, (e = { count: { label, count: 0, crowd: false, only: null }, objects: [] }));
    if (b.iscrowd) {
      e.count.crowd = true;
      continue;
    }
    const same = e.objects.find((o) => o.every((x) => x.source !== b.source) && o.some((x) => iou(x, b) >= SAME_OBJECT_IOU || inside(x, b) >= SAME_OBJECT_INSIDE));
    if (same) same.push(b);
    else e.objects.push([b]);
  }
  const out: ObjectCount[] = [];
  for (const { count, objects } of by.values()) {
    count.count = objects.length;
    count.only = objects.length === 1 && !count.crowd ? objects[0]![0]! : null;
    out.push(count);
  }
  return out.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
}

