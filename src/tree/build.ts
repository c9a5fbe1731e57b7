import type { Box, TreeNodeRow } from '../types.js';
import { area, boxCoverage, gridFor, insideShare, iou, markMasks, maskCoverage, releaseMasks, union, type Coverage, type Grid } from './masks.js';
import { countWord, DEFAULT_UNCOUNTABLE, isSingularPluralPair, mergeLabels, plural, singular, spoken } from './labels.js';
import { nodeLayers, type DepthLayers } from './depth.js';
import { objectCounts, placedAsOneObject } from './object-counts.js';

/**
 * The ASCII tree of an image (METHOD.md section 3): every grounded object,
 * near-duplicates merged, nested by containment, same-label siblings
 * grouped and counted, with position, size and (when a depth map is given)
 * relative depth. A pure function of the record's boxes; every threshold is
 * an option with the method's default.
 */
export interface TreeOptions {
  /** Boxes overlapping more than this (IoU) are one object. */
  boxMergeIou: number;
  /** Second merge: box IoU and mask IoU both above this. */
  maskMergeIou: number;
  /** A is inside B when more than this share of A's mask lies in B's. */
  containment: number;
  /** Depth ranges of parent and child must overlap within this many layers. */
  depthGrace: number;
  /** Labels within this share of edit distance name the same thing. */
  labelEditRatio: number;
  /** Same-label siblings whose centres are within this distance (0..1 units) form a group. */
  groupDistance: number;
  /** Above this many, a group is "many". */
  manyAbove: number;
  /** Positions are rounded to this step. */
  round: number;
  uncountable: readonly string[];
}

export const DEFAULT_TREE_OPTIONS: TreeOptions = {
  boxMergeIou: 0.95,
  maskMergeIou: 0.6,
  containment: 0.2,
  depthGrace: 1,
  labelEditRatio: 0.2,
  groupDistance: 0.5,
  manyAbove: 8,
  round: 0.05,
  uncountable: DEFAULT_UNCOUNTABLE,
};

/** A node of the tree: the row written to `tree_nodes`, with its children instead of a parent index. */
export interface TreeNode extends Omit<TreeNodeRow, 'parent'> {
  children: TreeNode[];
}

export interface Tree {
  roots: TreeNode[];
  text: string;
  /** Object counts by singular label, from the annotations (see `footerCounts`). */
  counts: Map<string, number | 'many'>;
}

interface Work {
  labels: string[];
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  mask: Coverage;
  area: number;
  /** The box's area (0..1 of the image): sorting compares it often. */
  boxArea: number;
  merged: number;
  /** The datasets its boxes came from: one object seen by two of them is merged (see step 2). */
  sources: string[];
  depths: number[] | null;
  /** Closest depth layer (0 without depth): sorting compares it often. */
  nearest: number;
  parent: Work | null;
  children: Work[];
}

function boxArea(w: { x1: number; y1: number; x2: number; y2: number }): number {
  return Math.max(0, w.x2 - w.x1) * Math.max(0, w.y2 - w.y1);
}

/** IoU of two boxes from their real corners (the reference code read x2/y2 as width/height). */
export function boxIou(a: { x1: number; y1: number; x2: number; y2: number }, b: { x1: number; y1: number; x2: number; y2: number }): number {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = ix * iy;
  const u = boxArea(a) + boxArea(b) - inter;
  return u > 0 ? inter / u : 0;
}

function labelsOf(b: Box): string[] {
  const labels = [b.label.trim()];
  for (const a of b.attributes) if (a.trim()) labels.push(a.trim());
  for (const r of b.relations) if (r.trim()) labels.push(r.trim());
  return labels;
}

function absorb(g: Grid, into: Work, other: Work, o: TreeOptions): void {
  for (const l of other.labels) mergeLabels(into.labels, l, o.labelEditRatio);
  into.x1 = Math.min(into.x1, other.x1);
  into.y1 = Math.min(into.y1, other.y1);
  into.x2 = Math.max(into.x2, other.x2);
  into.y2 = Math.max(into.y2, other.y2);
  into.boxArea = boxArea(into);
  into.mask = union(g, into.mask, other.mask);
  into.area = area(into.mask);
  into.merged += other.merged;
  for (const src of other.sources) if (!into.sources.includes(src)) into.sources.push(src);
}

/** Two datasets' boxes of one kind of object, overlapping as one object does (the footer's rule, object-counts.ts). */
function sameObjectOfTwoSources(a: Work, b: Work): boolean {
  for (const src of b.sources) if (a.sources.includes(src)) return false;
  return singular(a.labels[0]!) === singular(b.labels[0]!) && placedAsOneObject(a, b);
}

function depthsOverlap(a: number[] | null, b: number[] | null, grace: number): boolean {
  if (a === null || b === null || !a.length || !b.length) return true;
  return Math.min(...a) <= Math.max(...b) + grace && Math.min(...b) <= Math.max(...a) + grace;
}

/**
 * Sort in place, stable, as `Array.prototype.sort` does, but without what
 * V8's sort allocates per call (its state and a copy of the array): short
 * lists, most of a tree's, are sorted by insertion here. Building trees
 * allocated 580 bytes per object in sorts alone.
 */
function sortInPlace<T>(a: T[], cmp: (x: T, y: T) => number): T[] {
  if (a.length > 16) return a.sort(cmp);
  for (let i = 1; i < a.length; i++) {
    const x = a[i]!;
    let j = i - 1;
    while (j >= 0 && cmp(a[j]!, x) > 0) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = x;
  }
  return a;
}

/** The order objects are merged in: larger box first, then label, then position. */
function compareLargestBoxFirst(a: Work, b: Work): number {
  return sign(b.boxArea, a.boxArea) || (a.labels[0]! < b.labels[0]! ? -1 : a.labels[0]! > b.labels[0]! ? 1 : 0) || sign(a.x1, b.x1) || sign(a.y1, b.y1);
}

/**
 * The sign of p - q (0 for NaN, which `||` passes over as it does NaN).
 * Comparators answer -1, 0 or 1 rather than a difference: sorts call them
 * through a parameter, not inlined, and a fractional answer is a heap
 * number made per comparison (22 MB per 60 MB of COCO-like input).
 */
function sign(p: number, q: number): number {
  return p < q ? -1 : p > q ? 1 : 0;
}

/** Sort key for deterministic order: larger mask first, then closer, then label, then position. */
function compareSiblings(a: Work, b: Work): number {
  return sign(b.area, a.area) || sign(a.nearest, b.nearest) || (a.labels[0]! < b.labels[0]! ? -1 : a.labels[0]! > b.labels[0]! ? 1 : 0) || sign(a.x1, b.x1) || sign(a.y1, b.y1);
}

export interface TreeInput {
  boxes: readonly Box[];
  /** Labels no count may be given for (see ImageRecord.uncounted). */
  uncounted?: readonly string[];
  width: number | null;
  height: number | null;
  depth?: DepthLayers | null;
}

// The stage passes the same options object for every record: merge it with
// the defaults once, not per tree (options objects are made once and not
// changed afterwards; a changed object would keep its first merge).
const NO_OPTIONS: Partial<TreeOptions> = {};
let lastOptions: Partial<TreeOptions> | null = null;
let lastWithDefaults: TreeOptions = DEFAULT_TREE_OPTIONS;

function withDefaults(options: Partial<TreeOptions>): TreeOptions {
  if (options !== lastOptions) {
    lastWithDefaults = { ...DEFAULT_TREE_OPTIONS, ...options };
    lastOptions = options;
  }
  return lastWithDefaults;
}

export function buildTree(input: TreeInput, options: Partial<TreeOptions> = NO_OPTIONS): Tree {
  // The masks live only while the tree is built (nodes keep none): their room is used again by the next tree.
  const mark = markMasks();
  try {
    return buildTreeWithMasks(input, options);
  } finally {
    releaseMasks(mark);
  }
}

function buildTreeWithMasks(input: TreeInput, options: Partial<TreeOptions>): Tree {
  const o = withDefaults(options);
  const g: Grid = gridFor(input.width ?? 1, input.height ?? 1);
  const cells = g.gw * g.gh;
  // 1. Objects with masks (the dataset's, else the box), largest first.
  // 2. Near-duplicates are one object.
  const work = mergeObjects(g, objectsOf(g, input.boxes), o);
  // 3. Depth layers under each mask.
  if (input.depth) {
    for (const w of work) {
      w.depths = nodeLayers(input.depth, w.mask, g.gw);
      w.nearest = w.depths.length ? w.depths[0]! : 0;
    }
  }
  // 4. Hierarchy: the tightest container is the parent.
  assignParents(g, work, o);
  const roots: Work[] = [];
  for (const w of work) {
    if (w.parent === null) roots.push(w);
    else w.parent.children.push(w);
  }
  const rootNodes = toNodes(sortInPlace(roots, compareSiblings), cells);
  const counts = footerCounts(input.boxes, input.uncounted);
  return { roots: rootNodes, counts, text: renderTree(rootNodes, counts, o) };
}

/** Step 1: each drawable box as an object with its mask (the dataset's, else the box), largest first. */
function objectsOf(g: Grid, boxes: TreeInput['boxes']): Work[] {
  let work: Work[] = [];
  for (const b of boxes) {
    if (b.label.trim() === '' || !(b.x2 > b.x1 && b.y2 > b.y1)) continue;
    let mask = (b.mask && maskCoverage(g, b.mask)) || null;
    let a = mask ? area(mask) : 0;
    if (!mask || a <= 0) {
      mask = boxCoverage(g, b.x1, b.y1, b.x2, b.y2);
      a = area(mask);
    }
    work.push({ labels: labelsOf(b), x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2, mask, area: a, boxArea: boxArea(b), merged: 1, sources: [b.source], depths: null, nearest: 0, parent: null, children: [] });
  }
  sortInPlace(work, compareLargestBoxFirst);
  return work;
}

/**
 * Step 2: near-duplicate boxes are one object; then boxes whose masks also
 * agree, unless their labels are one word in two numbers (two cars are not
 * one). (Plain loops: a closure per object for `find` was measurable.)
 */
function mergeObjects(g: Grid, objects: Work[], o: TreeOptions): Work[] {
  let work = objects;
  const merged: Work[] = [];
  for (const w of work) {
    let same: Work | null = null;
    for (const m of merged) {
      if (boxIou(m, w) > o.boxMergeIou) {
        same = m;
        break;
      }
    }
    if (same) absorb(g, same, w, o);
    else merged.push(w);
  }
  work = [];
  for (const w of merged) {
    let same: Work | null = null;
    for (const m of work) {
      if (boxIou(m, w) > o.maskMergeIou && !isSingularPluralPair(m.labels[0]!, w.labels[0]!) && iou(m.mask, w.mask) > o.maskMergeIou) {
        same = m;
        break;
      }
    }
    if (same) absorb(g, same, w, o);
    else work.push(w);
  }
  // One object boxed by two datasets (COCO's and LVIS's chair, VG's and COCO's) is one object with
  // both their labels, as the footer counts it. (Boxes of one dataset are never merged here.)
  // Only where two datasets boxed this image is there anything to merge across them.
  let several = false;
  for (const w of work) if (w.sources.length > 1 || w.sources[0] !== work[0]!.sources[0]) several = true;
  if (several) {
    const across: Work[] = [];
    for (const w of work) {
      let same: Work | null = null;
      for (const m of across) {
        if (sameObjectOfTwoSources(m, w)) {
          same = m;
          break;
        }
      }
      if (same) absorb(g, same, w, o);
      else across.push(w);
    }
    work = across;
  }
  return work;
}

/**
 * Step 4: the tightest container is the parent. Candidates are tried from
 * the smallest box up, so the first that passes is the parent (ties: the
 * earlier object, as a scan in order would pick) and no mask overlap is
 * counted past it; the cheap tests (box overlap) come before labels and masks.
 */
function assignParents(g: Grid, work: Work[], o: TreeOptions): void {
  const boxAreas: number[] = [];
  const singulars: string[] = [];
  const bySize: number[] = [];
  for (let i = 0; i < work.length; i++) {
    boxAreas.push(work[i]!.boxArea);
    singulars.push(singular(work[i]!.labels[0]!));
    bySize.push(i);
  }
  sortAreas = boxAreas;
  sortInPlace(bySize, compareBySmallerBox);
  sortAreas = NO_AREAS;
  for (let i = 0; i < work.length; i++) {
    const a = work[i]!;
    if (a.area <= 0) continue;
    // Masks overlap at most the boxes' overlap, on the sample lines inside
    // it (one more than its height in rows, at most): below this, too little.
    const need = o.containment * a.mask.spanArea;
    // The first candidate with a strictly larger box.
    let lo = 0;
    let hi = bySize.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (boxAreas[bySize[mid]!]! <= boxAreas[i]!) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < bySize.length; k++) {
      const j = bySize[k]!;
      const b = work[j]!;
      const ix = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
      if (ix <= 0) continue;
      const iy = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
      if (iy <= 0 || ix * g.gw * (iy * g.gh + 1) <= need) continue;
      if (singulars[i] === singulars[j]) continue;
      if (!depthsOverlap(a.depths, b.depths, o.depthGrace)) continue;
      if (insideShare(a.mask, b.mask, o.containment) <= o.containment) continue;
      a.parent = b;
      break;
    }
  }
}

// What follows is written as module-level functions, not closures made per
// tree: V8 keeps a function's optimised code only while some closure of it
// is alive, so closures made per call were compiled again after each full
// collection (a 300 MB run compiled the renderer's inner closure 28 times,
// 30-50 ms each, and ran it unoptimised in between).

/** Box areas that `compareBySmallerBox` sorts indices by (set around one sort). */
const NO_AREAS: number[] = [];
let sortAreas: number[] = NO_AREAS;

/** Indices by box area, smaller first; ties keep index order. */
function compareBySmallerBox(x: number, y: number): number {
  return sign(sortAreas[x]!, sortAreas[y]!) || x - y;
}

function toNodes(ws: Work[], cells: number): TreeNode[] {
  const nodes: TreeNode[] = [];
  for (const w of ws) nodes.push(toNode(w, cells));
  return nodes;
}

function toNode(w: Work, cells: number): TreeNode {
  // The mask's median position; the box's centre when it has no spans.
  const spans = w.mask.spanArea > 0;
  return {
    labels: w.labels,
    x1: w.x1,
    y1: w.y1,
    x2: w.x2,
    y2: w.y2,
    cx: spans ? w.mask.mx : (w.x1 + w.x2) / 2,
    cy: 1 - (spans ? w.mask.my : (w.y1 + w.y2) / 2),
    pixelPct: (100 * w.area) / cells,
    depths: w.depths,
    merged: w.merged,
    children: w.children.length ? toNodes(sortInPlace(w.children, compareSiblings), cells) : [],
  };
}

/**
 * The footer's counts: the annotations' objects per kind (one object seen by
 * two datasets once; categories only, never a referring expression), not
 * the tree's nodes: a merge ("dining table (pizza)") must not make a pizza
 * disappear from the count the model reads. A kind annotated as a crowd
 * region counts "many".
 */
export function footerCounts(boxes: readonly Box[], uncounted: readonly string[] = []): Map<string, number | 'many'> {
  const counts = new Map<string, number | 'many'>();
  for (const c of objectCounts(boxes, uncounted)) counts.set(c.label, c.crowd ? 'many' : c.count);
  return counts;
}

// Rounded positions take few values (21 at the default step): their text is
// made once per step and value, not formatted for every node.
const stepTexts = new Map<number, Map<number, string>>();

/**
 * A position as a multiple of the step. A value half way between two steps
 * (a centred object's 0.125, say) goes up, as Math.round has it; but the
 * arithmetic that made it may have left it a last bit below or above
 * (0.12499999999999999), so the share of a step is first rounded to
 * millionths: which way such a tie goes no longer depends on the order of
 * a sum.
 */
function fmt(v: number, step: number): string {
  const k = Math.round(Math.round((v / step) * 1e6) / 1e6);
  let texts = stepTexts.get(step);
  if (!texts) stepTexts.set(step, (texts = new Map()));
  let t = texts.get(k);
  if (t === undefined) {
    t = (k * step).toFixed(2);
    if (texts.size < 10_000) texts.set(k, t);
  }
  return t;
}

// Pixel sizes as printed take a few hundred values: their texts too are
// made once (toFixed is a call into the runtime, about half a microsecond).
const pctTexts = [new Map<number, string>(), new Map<number, string>(), new Map<number, string>()];

/** A pixel size in percent: whole above 10, one decimal above 1, else two; as toFixed rounds. */
export function fmtPct(p: number): string {
  const decimals = p >= 10 ? 0 : p >= 1 ? 1 : 2;
  const x = decimals === 0 ? p : decimals === 1 ? p * 10 : p * 100;
  const k = Math.round(x);
  // Near a tie the product's own rounding could decide: toFixed, which reads the exact value, does.
  if (!(Math.abs(x - k) < 0.5 - 1e-9) || k > 1000) return p.toFixed(decimals);
  const texts = pctTexts[decimals]!;
  let t = texts.get(k);
  if (t === undefined) texts.set(k, (t = p.toFixed(decimals)));
  return t;
}

/** Labels as text says them: an LVIS qualifier ("beef (food)") would read as one of the node's other names. */
function nodeLabel(n: TreeNode): string {
  return n.labels.length > 1 ? `${spoken(n.labels[0]!)} (${n.labels.slice(1).map(spoken).join(', ')})` : spoken(n.labels[0]!);
}

function attrs(x: number, y: number, pct: number, depths: number[] | null, o: TreeOptions, average = false): string {
  const a = average ? 'Average ' : '';
  const depthText = depths && depths.length ? `, Relative Depths: ${depths.join(', ')}` : '';
  return `[${a}X: ${fmt(x, o.round)}, ${a}Y: ${fmt(y, o.round)}, ${a}Pixel Size: ${fmtPct(pct)}%${depthText}]`;
}

/**
 * Same-label siblings close in position and depth, found by single linkage.
 * Only nodes of one label can link, so each label's nodes are searched on
 * their own (in their order among the siblings, which keeps the groups and
 * their order what a search over all siblings gives). Null when every node
 * is a group of its own (no label twice among them): most lists.
 */
function groupSiblings(nodes: TreeNode[], o: TreeOptions): TreeNode[][] | null {
  const n = nodes.length;
  if (n < 2) return null;
  const keys: string[] = [];
  for (const x of nodes) keys.push(singular(x.labels[0]!));
  // A few siblings with no label twice (most lists) are groups of one each.
  let repeated = n > 8;
  for (let i = 1; i < n && !repeated; i++) for (let j = 0; j < i && !repeated; j++) repeated = keys[i] === keys[j];
  if (!repeated) return null;
  const byLabel = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const same = byLabel.get(keys[i]!);
    if (same) same.push(i);
    else byLabel.set(keys[i]!, [i]);
  }
  const groups: TreeNode[][] = [];
  const taken = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (taken[i]) continue;
    const candidates = byLabel.get(keys[i]!)!;
    const group = [nodes[i]!];
    taken[i] = 1;
    for (let k = 0; k < group.length && group.length < candidates.length; k++) {
      const g = group[k]!;
      for (const j of candidates) {
        if (taken[j]) continue;
        const m = nodes[j]!;
        if (Math.hypot(g.cx - m.cx, g.cy - m.cy) <= o.groupDistance && depthsOverlap(g.depths, m.depths, o.depthGrace)) {
          group.push(m);
          taken[j] = 1;
        }
      }
    }
    groups.push(group);
  }
  return groups;
}

export function renderTree(roots: TreeNode[], counts: ReadonlyMap<string, number | 'many'>, o: TreeOptions = DEFAULT_TREE_OPTIONS): string {
  const lines: string[] = [];
  emitNodes(lines, roots, 0, o);
  const types = sortInPlace([...counts], compareTypes);
  if (types.length) {
    lines.push('', 'Object Counts:');
    for (const [label, n] of types) lines.push(`${plural(label)}: ${n}`);
  }
  return lines.join('\n');
}

/** Footer order: more objects first, then label. */
function compareTypes(a: [string, number | 'many'], b: [string, number | 'many']): number {
  const n = (v: number | 'many') => (v === 'many' ? Infinity : v);
  return sign(n(b[1]), n(a[1])) || (a[0] < b[0] ? -1 : 1);
}

/** Four spaces per level, made once per level. */
const INDENTS: string[] = [];
function indentOf(level: number): string {
  return (INDENTS[level] ??= '    '.repeat(level));
}

function emitNode(lines: string[], n: TreeNode, level: number, o: TreeOptions): void {
  const head = `${indentOf(level)}${level > 0 ? '-> ' : ''}${nodeLabel(n)} ${attrs(n.cx, n.cy, n.pixelPct, n.depths, o)}`;
  if (n.children.length) {
    lines.push(`${head}, with:`);
    emitNodes(lines, n.children, level + 1, o);
  } else lines.push(`${head} X`);
}

function emitNodes(lines: string[], nodes: TreeNode[], level: number, o: TreeOptions): void {
  const groups = groupSiblings(nodes, o);
  if (groups === null) {
    for (const n of nodes) emitNode(lines, n, level, o);
    return;
  }
  const indent = indentOf(level);
  const arrow = level > 0 ? '-> ' : '';
  for (const group of groups) {
    if (group.length === 1) {
      emitNode(lines, group[0]!, level, o);
      continue;
    }
    const label = group[0]!.labels[0]!;
    const word = countWord(group.length, label, o.manyAbove, o.uncountable);
    const name = plural(singular(spoken(label)));
    let leaves = true;
    for (const n of group) if (n.children.length) leaves = false;
    if (leaves) {
      // Sums in the group's order, as the averages were always taken.
      let cx = 0;
      let cy = 0;
      let pct = 0;
      for (const n of group) {
        cx += n.cx;
        cy += n.cy;
        pct += n.pixelPct;
      }
      const k = group.length;
      lines.push(`${indent}${arrow}${word} ${name} ${attrs(cx / k, cy / k, pct / k, groupDepths(group), o, true)} X`);
    } else {
      lines.push(`${indent}${arrow}${word} ${name} {`);
      // Members as siblings print: larger first, then closer (the group itself was found in link order).
      for (const n of sortInPlace([...group], compareNodesLargerFirst)) emitNode(lines, n, level + 1, o);
      lines.push(`${indent}}`);
    }
  }
}

/** Larger mask first, then closer, then left to right, top to bottom: the order siblings print in. */
function compareNodesLargerFirst(a: TreeNode, b: TreeNode): number {
  return sign(b.pixelPct, a.pixelPct) || sign(a.depths?.[0] ?? 0, b.depths?.[0] ?? 0) || sign(a.cx, b.cx) || sign(b.cy, a.cy);
}

/** Every depth layer of a group's members, each once, closest first; null when none has depths. */
function groupDepths(group: TreeNode[]): number[] | null {
  let layers: Set<number> | null = null;
  for (const n of group) {
    if (!n.depths) continue;
    layers ??= new Set();
    for (const d of n.depths) layers.add(d);
  }
  return layers ? sortInPlace([...layers], compareNumbers) : null;
}

function compareNumbers(a: number, b: number): number {
  return a - b;
}

/**
 * The flat alternative for ablations: one `[label, x1, y1, x2, y2]` line per
 * box, y inverted so that 0 is the bottom (as the tree's Y).
 */
export function flatBoxes(boxes: readonly Box[], step = 0.01): string {
  const r = (v: number) => (Math.round(v / step) * step).toFixed(2);
  return boxes.map((b) => `[${b.label}, ${r(b.x1)}, ${r(1 - b.y2)}, ${r(b.x2)}, ${r(1 - b.y1)}]`).join('\n');
}
