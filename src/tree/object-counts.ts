import { isRelationPhrase, remembered, singular, spoken } from './labels.js';
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
  return kindOf(label) !== '';
}

/**
 * The kind a box label counts as (singular, as spoken), or '' when it names
 * no kind. Words only: VG names text it saw ('"walk"' on a sign) and
 * sentences ("a dove is sitting near ...") as objects. Remembered: every
 * tree of a run asks it for every box, and labels repeat.
 */
const kindOf = remembered((label) => {
  const l = spoken(label);
  // A label that opens with an article is a phrase about one object ("a white ship", one of
  // DIOR-RSVG's captions beside its category box "ship"), never the name of a kind: counted, the
  // footer said "ships: 1" and "a white ships: 1" for one ship. (Longer "the ..." phrases were
  // already relation phrases.)
  if (/^(the|a|an)\s/i.test(l)) return '';
  return /^\p{L}[\p{L} '-]*$/u.test(l) && l.split(/\s+/).length <= 3 && !isRelationPhrase(l) ? singular(l) : '';
});


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

/** Two datasets' boxes of one object: the same kind, overlapping heavily (IoU 0.5) or one inside the other. */
export const SAME_OBJECT_IOU = 0.5;
export const SAME_OBJECT_INSIDE = 0.9;

type Corners = { x1: number; y1: number; x2: number; y2: number };

/**
 * Two boxes placed as one object is (the kinds are the caller's to
 * compare): IoU of SAME_OBJECT_IOU or more, or the smaller one
 * SAME_OBJECT_INSIDE inside the larger. The counts and the tree's merge of
 * two datasets' boxes both use it, so what the footer counts once the tree
 * shows once.
 */
export function placedAsOneObject(a: Corners, b: Corners): boolean {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = ix * iy;
  const areaA = Math.max(0, a.x2 - a.x1) * Math.max(0, a.y2 - a.y1);
  const areaB = Math.max(0, b.x2 - b.x1) * Math.max(0, b.y2 - b.y1);
  const union = areaA + areaB - inter;
  const small = Math.min(areaA, areaB);
  return (union > 0 && inter / union >= SAME_OBJECT_IOU) || (small > 0 && inter / small >= SAME_OBJECT_INSIDE);
}

/**
 * Objects per kind, as the annotations have them: one per non-crowd box of a
 * category, except that a box of another dataset of the same kind that
 * overlaps one already counted (COCO's chair and LVIS's chair, VG's and
 * COCO's) is the same object. Boxes of one dataset are never merged: two
 * annotations there are two objects. Sorted by label.
 */
export function objectCounts(boxes: readonly Box[], uncounted: readonly string[] = []): ObjectCount[] {
  // One dataset's boxes are never one object: only with two datasets is there anything to match
  // (and the tree asks this of every record, most of them of one dataset).
  let several = false;
  for (const b of boxes) if (b.source !== boxes[0]!.source) several = true;
  const by = new Map<string, { count: ObjectCount; objects: Box[][] | null }>();
  // Kinds whose objects were not all annotated: the boxes there are some of them, not how many.
  const skip = uncounted.length ? new Set(uncounted.map((l) => singular(spoken(l)))) : null;
  for (const b of boxes) {
    if (PHRASE_SOURCES.test(b.source)) continue;
    const label = kindOf(b.label);
    if (!label || skip?.has(label)) continue;
    let e = by.get(label);
    if (!e) by.set(label, (e = { count: { label, count: 0, crowd: false, only: null }, objects: several ? [] : null }));
    const c = e.count;
    if (b.iscrowd) {
      c.crowd = true;
      continue;
    }
    if (e.objects) {
      const same = e.objects.find((o) => o.every((x) => x.source !== b.source) && o.some((x) => placedAsOneObject(x, b)));
      if (same) {
        same.push(b);
        continue;
      }
      e.objects.push([b]);
    }
    c.only = c.count === 0 ? b : null;
    c.count++;
  }
  const out: ObjectCount[] = [];
  for (const { count } of by.values()) {
    if (count.crowd) count.only = null;
    out.push(count);
  }
  return out.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
}

