import { plural } from '../tree/labels.js';
import { objectCounts, type ObjectCount } from '../tree/object-counts.js';
import type { Box, ImageRecord, TreeNodeRow } from '../types.js';

/**
 * Statements read straight off a record's boxes: how many of each kind of
 * object, and where the objects that are one of a kind are. No model is
 * involved, so they are true to the annotations. They stand in for the
 * model's description of the tree when that description fails its check.
 */

function horizontal(cx: number): string {
  return cx < 1 / 3 ? 'on the left' : cx > 2 / 3 ? 'on the right' : 'in the middle';
}

function vertical(cy: number): string {
  // The tree's Y points up: 0 is the bottom.
  return cy > 2 / 3 ? 'near the top' : cy < 1 / 3 ? 'near the bottom' : 'halfway up';
}

export function positionPhrase(n: Pick<TreeNodeRow, 'cx' | 'cy'>): string {
  const h = horizontal(n.cx);
  const v = vertical(n.cy);
  return h === 'in the middle' && v === 'halfway up' ? 'in the centre of the image' : `${h} of the image, ${v}`;
}

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
