import { plural } from '../tree/labels.js';
import { objectCounts, type ObjectCount } from '../tree/object-counts.js';
import type { Box, ImageRecord } from '../types.js';
import { positionPhrase } from './facts.js';

/**
 * Statements read straight off a record's boxes: how many of each kind of
 * object, and where the objects that are one of a kind are. No model is
 * involved, so they are true to the annotations. They stand in for the
 * model's description of the tree when that description fails its check.
 */

export { spoken } from '../tree/labels.js';
export { isCategoryLabel, objectCounts, SAME_OBJECT_INSIDE, SAME_OBJECT_IOU, type ObjectCount } from '../tree/object-counts.js';

/** "There is one apple." / "There are 3 zebras." / "There is a group of people." (a crowd region has no number). */
export function countSentence(c: ObjectCount): string {
  if (c.crowd && c.count === 0) return `There is a group of ${plural(c.label)}.`;
  if (c.crowd) return `There are many ${plural(c.label)}.`;
  return c.count === 1 ? `There is one ${c.label}.` : `There are ${c.count} ${plural(c.label)}.`;
}

/** The centre of a box in the tree's coordinates (y up), for `positionPhrase`. */
export function boxCentre(b: Box): { cx: number; cy: number } {
  return { cx: (b.x1 + b.x2) / 2, cy: 1 - (b.y1 + b.y2) / 2 };
}

export function boxFacts(rec: Pick<ImageRecord, 'boxes' | 'uncounted'>): string[] {
  const counts = objectCounts(rec.boxes, rec.uncounted);
  const out = counts.map(countSentence);
  for (const c of counts) if (c.only) out.push(`The ${c.label} is ${positionPhrase(boxCentre(c.only))}.`);
  return out;
}
