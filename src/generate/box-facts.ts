import indefinite from 'indefinite';
import { isRelationPhrase, plural, singular } from '../tree/labels.js';
import type { Box, ImageRecord } from '../types.js';
import { positionPhrase } from './facts.js';

/**
 * Statements read straight off a record's boxes: how many of each kind of
 * object, and where the objects that are one of a kind are. No model is
 * involved, so they are true to the annotations. They stand in for the
 * model's description of the tree when that description fails its check.
 */

/** A box label that names a kind of object (not a referring expression or a relation). */
export function isCategoryLabel(label: string): boolean {
  const l = label.trim();
  return l.length > 0 && l.split(/\s+/).length <= 3 && !isRelationPhrase(l);
}

export interface ObjectCount {
  /** Singular label, lower case. */
  label: string;
  /** Annotated instances that are not crowd regions. */
  count: number;
  /** A crowd region of this kind was annotated ("a group of"). */
  crowd: boolean;
  /** The one box, when the count is 1 and there is no crowd. */
  only: Box | null;
}

/** Objects per kind, over the boxes whose label names a kind. Sorted by label. */
export function objectCounts(boxes: readonly Box[]): ObjectCount[] {
  const by = new Map<string, ObjectCount>();
  for (const b of boxes) {
    if (!isCategoryLabel(b.label)) continue;
    const label = singular(b.label.trim());
    const c = by.get(label) ?? { label, count: 0, crowd: false, only: null };
    if (b.iscrowd) c.crowd = true;
    else {
      c.count++;
      c.only = c.count === 1 ? b : null;
    }
    by.set(label, c);
  }
  for (const c of by.values()) if (c.crowd) c.only = null;
  return [...by.values()].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
}

/** "There is an apple." / "There are 3 zebras." / "There is a group of people." */
export function countSentence(c: ObjectCount): string {
  if (c.crowd && c.count === 0) return `There is a group of ${plural(c.label)}.`;
  if (c.crowd) return `There are many ${plural(c.label)}.`;
  return c.count === 1 ? `There is ${indefinite(c.label)}.` : `There are ${c.count} ${plural(c.label)}.`;
}

export function boxFacts(rec: Pick<ImageRecord, 'boxes'>): string[] {
  const counts = objectCounts(rec.boxes);
  const out = counts.map(countSentence);
  for (const c of counts) {
    if (!c.only) continue;
    const b = c.only;
    // positionPhrase takes the tree's coordinates: centre, y up.
    out.push(`The ${c.label} is ${positionPhrase({ cx: (b.x1 + b.x2) / 2, cy: 1 - (b.y1 + b.y2) / 2 })}.`);
  }
  return out;
}
