import pluralize from 'pluralize';

/**
 * Label rules of the tree: when two labels name the same thing, how a group
 * is counted, and how types are named in the footer. Number words come from
 * `pluralize`, not hand-written rules.
 */

/** Words that start a relationship phrase (VG relations are written "<predicate> the <object>"). */
const RELATION_STARTS = [
  'next to', 'on top of', 'in front of', 'behind', 'beside', 'near', 'under', 'underneath', 'below', 'above', 'over',
  'on', 'in', 'inside', 'at', 'by', 'of', 'with', 'holding', 'wearing', 'wears', 'has', 'have', 'carrying', 'riding',
  'sitting on', 'standing on', 'to the left of', 'to the right of', 'along', 'against', 'across', 'around',
];

export function isRelationPhrase(label: string): boolean {
  const l = label.toLowerCase();
  if (/\bthe\b/.test(l) && l.split(/\s+/).length >= 3) return true;
  for (const r of RELATION_STARTS) if (l.startsWith(r) && l.charCodeAt(r.length) === 0x20) return true;
  return false;
}

/** Levenshtein distance (labels are short; a plain DP is fine). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/**
 * Merge a label into a node's label list: a label that contains another (or
 * is contained) keeps the longer; labels within `editRatio` of each other
 * keep the shorter; relationship phrases never collapse into plain labels.
 * The first label stays the primary one unless it is replaced by a longer
 * or shorter form of itself.
 */
export function mergeLabels(into: string[], add: string, editRatio: number): void {
  const a = add.trim();
  if (!a) return;
  const rel = isRelationPhrase(a);
  for (let i = 0; i < into.length; i++) {
    const k = into[i]!;
    if (isRelationPhrase(k) !== rel) continue;
    const al = a.toLowerCase();
    const kl = k.toLowerCase();
    if (al === kl) return;
    if (kl.includes(al) || al.includes(kl)) {
      if (a.length > k.length) into[i] = a;
      return;
    }
    if (editDistance(al, kl) <= editRatio * Math.max(al.length, kl.length)) {
      if (a.length < k.length) into[i] = a;
      return;
    }
  }
  into.push(a);
}

// pluralize runs a list of regular expressions per call; labels repeat a lot
// (the hierarchy and grouping compare every pair), so remember answers.
// The caches are cleared when they grow past a bound (labels are open-ended text).
export function remembered<T>(f: (label: string) => T): (label: string) => T {
  const answers = new Map<string, T>();
  return (label) => {
    let s = answers.get(label);
    if (s === undefined) {
      s = f(label);
      if (answers.size > 50_000) answers.clear();
      answers.set(label, s);
    }
    return s;
  };
}

export const singular = remembered((label) => pluralize.singular(label.toLowerCase()));
const isPluralWord = remembered((label) => pluralize.isPlural(label.toLowerCase()));
const pluralOf = remembered((label) => pluralize.plural(label));

/** "person" and "people", "car" and "cars": the same word in two numbers. */
export function isSingularPluralPair(a: string, b: string): boolean {
  const al = a.toLowerCase();
  const bl = b.toLowerCase();
  return al !== bl && singular(al) === singular(bl);
}

/** Things people do not count one by one in a picture. */
export const DEFAULT_UNCOUNTABLE = ['window', 'tree', 'building', 'drink', 'leaf', 'grass', 'cloud', 'brick', 'tile', 'hair', 'water', 'sky', 'food'];

/**
 * The count word of a group: the number itself; "several" when the label is
 * already plural or an uncountable kind; "many" above `manyAbove`.
 */
export function countWord(n: number, label: string, manyAbove: number, uncountable: readonly string[]): string {
  if (n > manyAbove) return 'many';
  if (isPluralWord(label) && singular(label) !== label.toLowerCase()) return 'several';
  if (uncountable.includes(singular(label))) return 'several';
  return String(n);
}

export function plural(label: string): string {
  return pluralOf(label);
}

/**
 * A label as people say it: LVIS's qualifiers ("beef (food)", from
 * `beef_(food)`) and underscores stay in structured fields, not in text.
 */
export function spoken(label: string): string {
  // Most labels have neither: returned as they are, without three passes of regular expressions (the tree prints every node's).
  if (label.indexOf('(') < 0 && label.indexOf('_') < 0) return label;
  return label.replace(/_/g, ' ').replace(/\s*\([^)]*\)/g, '').replace(/\s+/g, ' ').trim();
}
