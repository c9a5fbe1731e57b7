import path from 'node:path';
import indefinite from 'indefinite';
import { plural, spoken } from '../tree/labels.js';
import type { IngestState } from '../sources/types.js';
import { cocoFileName } from '../sources/vqa.js';
import type { Box, Caption, Fragment, ImageGroup, ImageRecord, QAPair, RawBox, Region, Reject, RejectReason } from '../types.js';

/**
 * Turning a joined group into a record happens in two pure steps around the
 * image check: `resolveGroup` decides which file the image is and what size
 * each dataset says it has; `buildRecord` normalises and validates boxes
 * once the size is settled.
 */
export interface AssembleOptions {
  /** Folder (relative to the image root) holding each family's images, e.g. { coco: 'val2017' }. */
  imageDirs: Partial<Record<string, string>>;
  cocoNaming: '2017' | '2014';
  /**
   * How far a box may overshoot the image edge (fraction of the side) before
   * it is rejected rather than clamped. COCO has boxes that end half a pixel
   * past the edge.
   */
  edgeTolerance: number;
}

export const DEFAULT_EDGE_TOLERANCE = 0.01;

export interface Size {
  width: number;
  height: number;
}

export interface ResolvedGroup {
  ref: string;
  image: string;
  /** The size the datasets give for the file chosen as `image` (null: read it from the file). */
  size: Size | null;
  /** Size per family, for normalising each family's pixel boxes. */
  familySizes: Record<string, Size>;
  fragments: Fragment[];
}

export interface Assembled<T> {
  value: T | null;
  rejects: Reject[];
}

function reject(reason: RejectReason, detail: string, f: Fragment | null, image: string | null): Reject {
  return { reason, detail, source: f?.source ?? null, file: f?.prov.file ?? null, offset: f?.prov.offset ?? null, image };
}

/** A relative path that stays inside the image root, or null. */
export function safeRelativePath(p: string): string | null {
  if (p === '' || p.includes('\0')) return null;
  if (path.posix.isAbsolute(p) || path.win32.isAbsolute(p)) return null;
  const norm = path.posix.normalize(p.replace(/\\/g, '/'));
  if (norm === '..' || norm.startsWith('../') || norm === '.') return null;
  return norm;
}

function idOfRef(ref: string): number {
  return Number(ref.slice(ref.indexOf(':') + 1));
}

export function resolveGroup(group: ImageGroup, opts: AssembleOptions): Assembled<ResolvedGroup> {
  const rejects: Reject[] = [];
  const catalogSources = new Set<string>();
  for (const f of group.fragments) if (f.catalog) catalogSources.add(f.source);

  const fragments: Fragment[] = [];
  for (const f of group.fragments) {
    if (f.requiresCatalogFrom !== null && !catalogSources.has(f.requiresCatalogFrom)) {
      rejects.push(reject('unknown-image', `annotation for image ${group.ref}, which is not in the file's "images"`, f, null));
    } else fragments.push(f);
  }
  if (!fragments.length) return { value: null, rejects };

  const ns = group.ref.slice(0, group.ref.indexOf(':'));
  // The file: a catalog path from the image's own family first, then any
  // catalog path, then a path hint, then the family's naming convention.
  // (One loop, no closures: this runs per image, and V8 compiles a closure
  // made per call again after every full collection.)
  let catalogOwn: Fragment | null = null;
  let catalogAny: Fragment | null = null;
  let hintOwn: Fragment | null = null;
  let hintAny: Fragment | null = null;
  for (const f of fragments) {
    if (f.path === null) continue;
    if (f.catalog) {
      if (catalogOwn === null && f.family === ns) catalogOwn = f;
      catalogAny ??= f;
    }
    if (hintOwn === null && f.family === ns) hintOwn = f;
    hintAny ??= f;
  }
  const chosen = catalogOwn ?? catalogAny ?? hintOwn ?? hintAny;
  let rel: string;
  let family: string;
  if (chosen) {
    rel = chosen.path!;
    family = chosen.family;
  } else {
    family = ns;
    const id = idOfRef(group.ref);
    // Images known by something other than a number (a URL) have no naming convention: only a catalog names their file.
    if (!Number.isFinite(id)) {
      const hint = ns === 'web' ? ': give the img2dataset folder that downloaded it' : '';
      rejects.push(reject('unknown-image', `no source names a file for ${group.ref}${hint}`, fragments[0]!, null));
      return { value: null, rejects };
    }
    rel = ns === 'coco' ? cocoFileName(id, '2017', null) : `${id}.jpg`;
  }
  const dir = opts.imageDirs[family] ?? '';
  const image = safeRelativePath(dir ? `${dir}/${rel}` : rel);
  if (image === null) {
    rejects.push(reject('path-escape', `image path "${dir ? `${dir}/${rel}` : rel}" leaves the image root`, chosen, null));
    return { value: null, rejects };
  }

  const familySizes: Record<string, Size> = {};
  for (const f of fragments) {
    if (f.width !== null && f.height !== null && !familySizes[f.family]) familySizes[f.family] = { width: f.width, height: f.height };
  }
  const size = chosen?.catalog && chosen.width !== null && chosen.height !== null ? { width: chosen.width, height: chosen.height } : (familySizes[family] ?? null);
  return { value: { ref: group.ref, image, size, familySizes, fragments }, rejects };
}

export interface BuildContext {
  state: IngestState;
  opts: AssembleOptions;
  /** Source names in the order the user gave them: records list their sources in that order. */
  sourceOrder: string[];
}

/** Normalise a pixel box to 0..1 corners, clamping small overshoots; a reason string when it is unusable. */
export function normaliseBox(x: number, y: number, w: number, h: number, size: Size | null, tolerance: number): [number, number, number, number] | [RejectReason, string] {
  // Checked one by one, not through an array and a callback: this runs for every box of a run.
  if (!Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(w) || !Number.isFinite(h)) return ['bad-box', `box [${x}, ${y}, ${w}, ${h}] has a value that is not a number`];
  if (w <= 0 || h <= 0) return ['bad-box', `box [${x}, ${y}, ${w}, ${h}] has no area`];
  if (x < -tolerance * (size?.width ?? 1) || y < -tolerance * (size?.height ?? 1)) return ['bad-box', `box [${x}, ${y}, ${w}, ${h}] starts at a negative coordinate`];
  // Not the box's fault: no file or table gave the image's size (a VG region of an image missing from image_data).
  if (size === null) return ['image-size-unknown', `box [${x}, ${y}, ${w}, ${h}] cannot be placed: the image size is unknown (no size in the annotations, and the image was not opened)`];
  const x1 = x / size.width;
  const y1 = y / size.height;
  const x2 = (x + w) / size.width;
  const y2 = (y + h) / size.height;
  if (x1 >= 1 || y1 >= 1 || x2 > 1 + tolerance || y2 > 1 + tolerance) {
    return ['box-outside-image', `box [${x}, ${y}, ${w}, ${h}] lies outside the ${size.width}x${size.height} image`];
  }
  return [clamp01(x1), clamp01(y1), clamp01(x2), clamp01(y2)];
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/**
 * A RefCOCO expression is about one COCO annotation (its box's `source_id`
 * starts with that `ann_id`): joined with coco-instances, its box becomes
 * that annotation's box exactly, so the tree holds the two as one object
 * whatever a re-released ref's own bbox says (joined by id, not geometry).
 */
function joinExpressionsByAnnotation(boxes: Box[]): void {
  let refs = false;
  for (const b of boxes) if (b.source.startsWith('refcoco')) refs = true;
  if (!refs) return;
  const byAnnotation = new Map<string, Box>();
  for (const b of boxes) if (b.source.startsWith('coco-instances') && b.sourceId) byAnnotation.set(b.sourceId, b);
  if (!byAnnotation.size) return;
  for (const b of boxes) {
    if (!b.source.startsWith('refcoco') || !b.sourceId) continue;
    const c = byAnnotation.get(b.sourceId.split(':')[0]!);
    if (!c) continue;
    b.x1 = c.x1;
    b.y1 = c.y1;
    b.x2 = c.x2;
    b.y2 = c.y2;
    b.mask ??= c.mask;
  }
}

/** "This image contains a cup, bananas and an apple." from box labels (plural where boxed more than once). */
export function containsSentence(labels: string[]): string | null {
  const counts = new Map<string, number>();
  // Said as people say it: no LVIS qualifier ("beef", not "beef (food)"), a or an as the word wants.
  for (const l of labels.map(spoken)) if (l) counts.set(l, (counts.get(l) ?? 0) + 1);
  const words = [...counts].map(([l, n]) => (n > 1 ? plural(l) : indefinite(l)));
  if (!words.length) return null;
  return `This image contains ${words.length > 1 ? `${words.slice(0, -1).join(', ')} and ${words.at(-1)}` : words[0]}.`;
}

/** A box on its way into a record, with the fragment it came from; `own`: a copy made for merging. */
interface MergedBox {
  box: RawBox;
  f: Fragment;
  own: boolean;
}

function pushUnique(into: string[], from: string[]): void {
  for (const s of from) if (!into.includes(s)) into.push(s);
}

/**
 * Boxes that a dataset names by id (VG objects, attributes and relationships)
 * merge into one. A box is copied only when a second fragment names it: most
 * ids (every COCO annotation's) come once, and a copy of each box, its lists
 * and an entry key string was a fifth of buildRecord's time.
 */
function addBox(b: RawBox, f: Fragment, boxes: MergedBox[], boxesById: Map<string, Map<string, MergedBox>>): void {
  if (b.sourceId === null) {
    boxes.push({ box: b, f, own: false });
    return;
  }
  let ids = boxesById.get(f.source);
  if (ids === undefined) boxesById.set(f.source, (ids = new Map()));
  const had = ids.get(b.sourceId);
  if (!had) {
    const entry: MergedBox = { box: b, f, own: false };
    ids.set(b.sourceId, entry);
    boxes.push(entry);
    return;
  }
  // The fragments' own boxes are never changed: the first merge works on a copy.
  if (!had.own) {
    had.box = { ...had.box, attributes: [...had.box.attributes], relations: [...had.box.relations] };
    had.own = true;
  }
  if (had.box.label === null) had.box.label = b.label;
  pushUnique(had.box.attributes, b.attributes);
  pushUnique(had.box.relations, b.relations);
  had.box.mask ??= b.mask;
}

/** The record's boxes: labelled from the categories, normalised to 0..1, and set aside with the reason when they cannot be. */
function finalBoxes(boxes: MergedBox[], g: ResolvedGroup, recordSize: Size | null, ctx: BuildContext, rejects: Reject[]): Box[] {
  const tol = ctx.opts.edgeTolerance;
  const outBoxes: Box[] = [];
  for (const { box: b, f } of boxes) {
    let label = b.label;
    if (label === null && b.categoryId !== null) {
      label = ctx.state.categories.get(f.source)?.get(b.categoryId) ?? null;
      if (label === null) {
        rejects.push(reject('unknown-category', `category_id ${b.categoryId} is not in the file's "categories"`, f, g.image));
        continue;
      }
    }
    if (label === null || label === '') {
      rejects.push(reject('bad-box', 'box has no label', f, g.image));
      continue;
    }
    const size = f.width !== null && f.height !== null ? { width: f.width, height: f.height } : (g.familySizes[f.family] ?? recordSize);
    const n = normaliseBox(b.x, b.y, b.w, b.h, b.normalized ? { width: 1, height: 1 } : size, tol);
    if (n.length === 2) {
      rejects.push(reject(n[0], `"${label}" ${n[1]}`, f, g.image));
      continue;
    }
    let mask = b.mask;
    if (mask && mask.format === 'polygon' && size) mask = { ...mask, width: size.width, height: size.height };
    outBoxes.push({
      label,
      x1: n[0],
      y1: n[1],
      x2: n[2],
      y2: n[3],
      attributes: b.attributes,
      relations: b.relations,
      source: f.source,
      iscrowd: b.iscrowd,
      sourceId: b.sourceId,
      mask,
    });
  }
  return outBoxes;
}

export function buildRecord(g: ResolvedGroup, fileSize: Size | null, ctx: BuildContext): Assembled<ImageRecord> {
  const rejects: Reject[] = [];
  const tol = ctx.opts.edgeTolerance;
  const recordSize = g.size ?? fileSize;
  const sources: string[] = [];
  const captions: Caption[] = [];
  const facts: Caption[] = [];
  // Made when first needed, as is every map here: a record is built for every image of a run,
  // and most images have no facts, no questions and nothing absent.
  let factTexts: Set<string> | null = null;
  const regions: Region[] = [];
  // Boxes a dataset names by id merge into one (addBox).
  const boxesById = new Map<string, Map<string, MergedBox>>();
  const boxes: MergedBox[] = [];
  const absent: string[] = [];
  const uncounted: string[] = [];
  let qaById: Map<string, { question: string | null; answer: string | null; answers: string[]; source: string }> | null = null;
  const qaOrder: { question: string | null; answer: string | null; answers: string[]; source: string }[] = [];
  let labelSentences = false;

  for (const f of g.fragments) {
    if (!sources.includes(f.source)) sources.push(f.source);
    if (f.labelSentence) labelSentences = true;
    for (const text of f.captions) captions.push({ text, source: f.source });
    // The same statement often comes with every question of an image (TextVQA's OCR tokens): keep it once.
    for (const text of f.facts) {
      factTexts ??= new Set();
      if (factTexts.has(text)) continue;
      factTexts.add(text);
      facts.push({ text, source: f.source });
    }
    for (const b of f.boxes) addBox(b, f, boxes, boxesById);
    const size = f.width !== null && f.height !== null ? { width: f.width, height: f.height } : (g.familySizes[f.family] ?? recordSize);
    for (const id of f.uncountedCategoryIds) {
      const name = ctx.state.categories.get(f.source)?.get(id);
      if (name !== undefined && !uncounted.includes(name)) uncounted.push(name);
    }
    for (const id of f.absentCategoryIds) {
      const name = ctx.state.categories.get(f.source)?.get(id);
      if (name === undefined) rejects.push(reject('unknown-category', `negative category_id ${id} is not in the file's "categories"`, f, g.image));
      else if (!absent.includes(name)) absent.push(name);
    }
    for (const r of f.regions) {
      const n = normaliseBox(r.x, r.y, r.w, r.h, size, tol);
      if (n.length === 2) rejects.push(reject(n[0], `region "${r.text}": ${n[1]}`, f, g.image));
      else regions.push({ text: r.text, x1: n[0], y1: n[1], x2: n[2], y2: n[3], source: f.source });
    }
    for (const q of f.qa) {
      let entry = q.id !== null ? qaById?.get(`${f.source}\0${q.id}`) : undefined;
      if (!entry) {
        entry = { question: null, answer: null, answers: [], source: f.source };
        if (q.id !== null) (qaById ??= new Map()).set(`${f.source}\0${q.id}`, entry);
        qaOrder.push(entry);
      }
      entry.question ??= q.question;
      entry.answer ??= q.answer;
      pushUnique(entry.answers, q.answers);
    }
  }

  const outBoxes = finalBoxes(boxes, g, recordSize, ctx, rejects);
  joinExpressionsByAnnotation(outBoxes);

  // "This image contains ..." for sources that ask for it (LVIS, METHOD.md section 1).
  if (labelSentences) {
    for (const s of new Set(g.fragments.filter((f) => f.labelSentence).map((f) => f.source))) {
      const text = containsSentence(outBoxes.filter((b) => b.source === s).map((b) => b.label));
      factTexts ??= new Set();
      if (text && !factTexts.has(text)) {
        factTexts.add(text);
        facts.push({ text, source: s });
      }
    }
  }

  const qa: QAPair[] = [];
  for (const e of qaOrder) {
    if (e.question && e.answer) qa.push({ question: e.question, answer: e.answer, answers: e.answers.length ? e.answers : [e.answer], source: e.source });
  }

  if (sources.length > 1) sources.sort((a, b) => ctx.sourceOrder.indexOf(a) - ctx.sourceOrder.indexOf(b));
  // A label some dataset boxed is present, whatever another says: never both.
  const present = absent.length ? new Set(outBoxes.map((b) => b.label.toLowerCase())) : null;
  const record: ImageRecord = {
    image: g.image,
    width: recordSize?.width ?? null,
    height: recordSize?.height ?? null,
    ref: g.ref,
    sources,
    captions,
    facts,
    boxes: outBoxes,
    qa,
    regions,
    // Not all annotated is not absent either: a dataset that says both is taken at its weaker word.
    absent: (present ? absent.filter((l) => !present.has(l.toLowerCase())) : absent).filter((l) => !uncounted.includes(l)),
    uncounted,
    tree: null,
    treeNodes: [],
  };
  return { value: record, rejects };
}
