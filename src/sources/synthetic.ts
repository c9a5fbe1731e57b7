import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { rng } from '../util/random.js';

/**
 * Seeded, generated COCO-style data: for the demo, tests at scale and the
 * benchmarks. Every scene is a set of simple shapes with labels, boxes and
 * polygon outlines; people may hold a cup or a phone inside their outline,
 * so the data has the containment the ASCII tree looks for.
 */


export const SYNTHETIC_CATEGORIES = [
  { id: 1, name: 'person', supercategory: 'person', shape: 'rect', color: '#d9534f' },
  { id: 18, name: 'dog', supercategory: 'animal', shape: 'ellipse', color: '#8b5a2b' },
  { id: 37, name: 'sports ball', supercategory: 'sports', shape: 'circle', color: '#f0ad4e' },
  { id: 3, name: 'car', supercategory: 'vehicle', shape: 'rect', color: '#337ab7' },
  { id: 62, name: 'chair', supercategory: 'furniture', shape: 'rect', color: '#5cb85c' },
  { id: 47, name: 'cup', supercategory: 'kitchen', shape: 'circle', color: '#ffffff' },
  { id: 77, name: 'cell phone', supercategory: 'electronic', shape: 'rect', color: '#222222' },
] as const;

export interface SyntheticObject {
  id: number;
  categoryId: number;
  label: string;
  bbox: [number, number, number, number];
  polygon: number[];
  color: string;
  shape: string;
}

export interface SyntheticImage {
  id: number;
  fileName: string;
  width: number;
  height: number;
  objects: SyntheticObject[];
  captions: string[];
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

function outline(shape: string, x: number, y: number, w: number, h: number, points: number): number[] {
  if (shape === 'rect') return [x, y, x + w, y, x + w, y + h, x, y + h].map(round2);
  const out: number[] = [];
  for (let i = 0; i < points; i++) {
    const a = (2 * Math.PI * i) / points;
    out.push(round2(x + w / 2 + (w / 2) * Math.cos(a)), round2(y + h / 2 + (h / 2) * Math.sin(a)));
  }
  return out;
}

const NUMBER_WORDS = ['no', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

function captionsFor(objects: SyntheticObject[], r: () => number): string[] {
  const counts = new Map<string, number>();
  for (const o of objects) counts.set(o.label, (counts.get(o.label) ?? 0) + 1);
  const parts = [...counts].map(([label, n]) => (n === 1 ? `a ${label}` : `${NUMBER_WORDS[n] ?? 'many'} ${label === 'person' ? 'people' : `${label}s`}`));
  const list = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}` : (parts[0] ?? 'nothing');
  const openers = ['A simple drawing of', 'A picture showing', 'An illustration with', 'A flat scene containing', 'Shapes standing for'];
  const out: string[] = [];
  for (let i = 0; i < 3; i++) out.push(`${openers[Math.floor(r() * openers.length)]} ${list}.`);
  return out;
}

/**
 * One scene. `polygonPoints` sets how many vertices round shapes get (the
 * benchmarks raise it to make COCO-sized polygons).
 */
export function syntheticImage(r: () => number, id: number, opts: { objects?: [number, number]; polygonPoints?: number; width?: number; height?: number } = {}): SyntheticImage {
  const width = opts.width ?? 320 + 32 * Math.floor(r() * 6);
  const height = opts.height ?? 240 + 24 * Math.floor(r() * 6);
  const [lo, hi] = opts.objects ?? [2, 7];
  const n = lo + Math.floor(r() * (hi - lo + 1));
  const points = opts.polygonPoints ?? 16;
  const objects: SyntheticObject[] = [];
  let nextId = id * 1000;
  for (let i = 0; i < n; i++) {
    const cat = SYNTHETIC_CATEGORIES[Math.floor(r() * 5)]!;
    const w = Math.max(12, Math.round(width * (0.12 + r() * 0.3)));
    const h = Math.max(12, Math.round(height * (cat.name === 'person' ? 0.4 + r() * 0.4 : 0.12 + r() * 0.3)));
    const x = Math.round(r() * (width - w));
    const y = Math.round(r() * (height - h));
    objects.push({ id: nextId++, categoryId: cat.id, label: cat.name, bbox: [x, y, w, h], polygon: outline(cat.shape, x, y, w, h, points), color: cat.color, shape: cat.shape });
    if (cat.name === 'person' && r() < 0.6) {
      // Something held: small, inside the person's outline.
      const held = SYNTHETIC_CATEGORIES[r() < 0.5 ? 5 : 6]!;
      const hw = Math.max(6, Math.round(w * 0.3));
      const hh = Math.max(6, Math.round(h * 0.15));
      const hx = x + Math.round((w - hw) / 2);
      const hy = y + Math.round(h * 0.4);
      objects.push({ id: nextId++, categoryId: held.id, label: held.name, bbox: [hx, hy, hw, hh], polygon: outline(held.shape, hx, hy, hw, hh, points), color: held.color, shape: held.shape });
    }
  }
  return { id, fileName: `${String(id).padStart(12, '0')}.jpg`, width, height, objects, captions: captionsFor(objects, r) };
}

/** An SVG drawing of the scene: larger objects first so held objects stay visible. */
export function sceneSvg(img: SyntheticImage): string {
  const shapes = [...img.objects]
    .sort((a, b) => b.bbox[2] * b.bbox[3] - a.bbox[2] * a.bbox[3])
    .map((o) => {
      const [x, y, w, h] = o.bbox;
      return o.shape === 'rect'
        ? `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="${o.color}" stroke="#000" stroke-width="1"/>`
        : `<ellipse cx="${x + w / 2}" cy="${y + h / 2}" rx="${w / 2}" ry="${h / 2}" fill="${o.color}" stroke="#000" stroke-width="1"/>`;
    });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${img.width}" height="${img.height}"><rect width="100%" height="100%" fill="#cfe8f3"/>${shapes.join('')}</svg>`;
}

function cocoHeader(): string {
  return `"info": {"description": "instructify synthetic data", "version": "1.0", "year": 2026}, "licenses": [{"id": 1, "name": "CC0", "url": ""}]`;
}

function imageEntry(img: SyntheticImage): object {
  return { license: 1, file_name: img.fileName, height: img.height, width: img.width, id: img.id };
}

/**
 * Write COCO instances and captions files for `count` scenes, streaming, so
 * files of any size can be made without holding them. Images come first and
 * categories last, as in the real files. Returns the scenes only when
 * `keep` is set (small runs).
 */
export async function writeSyntheticCoco(opts: {
  instancesFile: string;
  captionsFile?: string;
  count: number;
  seed: number;
  objects?: [number, number];
  polygonPoints?: number;
  keep?: boolean;
}): Promise<SyntheticImage[]> {
  // Two passes over the same seeded sequence: images first, then annotations.
  const scenes = function* (): Generator<SyntheticImage> {
    const r = rng(opts.seed);
    for (let i = 1; i <= opts.count; i++) yield syntheticImage(r, i, { objects: opts.objects, polygonPoints: opts.polygonPoints });
  };
  const kept: SyntheticImage[] = [];
  const inst = createWriteStream(opts.instancesFile);
  const caps = opts.captionsFile ? createWriteStream(opts.captionsFile) : null;
  const write = async (s: import('node:fs').WriteStream, text: string) => {
    if (!s.write(text)) await once(s, 'drain');
  };
  for (const s of [inst, caps]) if (s) await write(s, `{${cocoHeader()}, "images": [`);
  let first = true;
  for (const img of scenes()) {
    const text = (first ? '' : ', ') + JSON.stringify(imageEntry(img));
    await write(inst, text);
    if (caps) await write(caps, text);
    first = false;
    if (opts.keep) kept.push(img);
  }
  await write(inst, '], "annotations": [');
  if (caps) await write(caps, '], "annotations": [');
  let firstAnn = true;
  let firstCap = true;
  let capId = 1;
  for (const img of scenes()) {
    let text = '';
    for (const o of img.objects) {
      text += (firstAnn ? '' : ', ') + JSON.stringify({ segmentation: [o.polygon], area: o.bbox[2] * o.bbox[3], iscrowd: 0, image_id: img.id, bbox: o.bbox, category_id: o.categoryId, id: o.id });
      firstAnn = false;
    }
    await write(inst, text);
    if (caps) {
      let ct = '';
      for (const c of img.captions) {
        ct += (firstCap ? '' : ', ') + JSON.stringify({ image_id: img.id, id: capId++, caption: c });
        firstCap = false;
      }
      await write(caps, ct);
    }
  }
  const cats = SYNTHETIC_CATEGORIES.map((c) => JSON.stringify({ supercategory: c.supercategory, id: c.id, name: c.name })).join(', ');
  await write(inst, `], "categories": [${cats}]}`);
  if (caps) await write(caps, ']}');
  for (const s of [inst, caps]) {
    if (!s) continue;
    s.end();
    await once(s, 'finish');
  }
  return kept;
}
