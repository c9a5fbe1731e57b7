import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pluralize from 'pluralize';
import sharp from 'sharp';
import { buildTree, flatBoxes, fmtPct, type TreeNode } from '../src/tree/build.js';
import { depthLayers, histogramPeaks, loadDepthLayers, loadDepthMap } from '../src/tree/depth.js';
import { area, gridFor, maskCoverage, overlap, polygonCoverage, readPolygonText, rowSpans, spanCount, union, type Coverage } from '../src/tree/masks.js';
import { rng } from '../src/util/random.js';
import type { Box, ImageRecord } from '../src/types.js';
import { COCO_INSTANCES, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

function box(label: string, x1: number, y1: number, x2: number, y2: number, extra: Partial<Box> = {}): Box {
  return { label, x1, y1, x2, y2, attributes: [], relations: [], source: 't', iscrowd: false, sourceId: null, mask: null, ...extra };
}

function walk(nodes: TreeNode[], f: (n: TreeNode, parent: TreeNode | null) => void, parent: TreeNode | null = null): void {
  for (const n of nodes) {
    f(n, parent);
    walk(n.children, f, n);
  }
}

function footer(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  const at = text.indexOf('Object Counts:');
  if (at < 0) return out;
  for (const line of text.slice(at).split('\n').slice(1)) {
    const m = /^(.+): (\d+)$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Every footer line, numbers and "many" alike, as text. */
function footerAll(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const at = text.indexOf('Object Counts:');
  if (at < 0) return out;
  for (const line of text.slice(at).split('\n').slice(1)) {
    const m = /^(.+): (\d+|many)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const coco = JSON.parse(readFileSync(COCO_INSTANCES, 'utf8')) as {
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: { image_id: number; category_id: number; iscrowd: number; area: number; segmentation: { counts: number[] | string; size: [number, number] } | number[][] }[];
  categories: { id: number; name: string }[];
};

describe('the tree on real COCO images', async () => {
  const { result, out } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], format: 'jsonl' });
  const records = await readJsonlShards<ImageRecord>(out, result);
  const names = new Map(coco.categories.map((c) => [c.id, c.name]));

  it('footer counts equal the non-crowd ground-truth instances per category, merged or not; a crowd kind says many', () => {
    let merged = 0;
    for (const r of records) {
      const t = buildTree(r);
      let nodes = 0;
      let represented = 0;
      walk(t.roots, (n) => {
        nodes++;
        represented += n.merged;
      });
      // Every input object is accounted for exactly once.
      expect(represented).toBe(r.boxes.length);
      if (nodes < r.boxes.length) merged++;
      const truth: Record<string, number | 'many'> = {};
      const id = Number(r.ref.slice(5));
      for (const a of coco.annotations.filter((x) => x.image_id === id)) {
        // Counts are keyed by the singular label (COCO's "skis" counts as "ski").
        const name = pluralize.singular(names.get(a.category_id)!);
        if (a.iscrowd) truth[name] = 'many';
        else if (truth[name] !== 'many') truth[name] = ((truth[name] as number | undefined) ?? 0) + 1;
      }
      expect(Object.fromEntries(t.counts), r.image).toEqual(truth);
      const f = footerAll(t.text);
      for (const [k, v] of Object.entries(truth)) expect(f[pluralize.plural(k)], `${r.image} ${k}`).toBe(String(v));
    }
    // Merges happen (the pizza into the table of 160012 among them), and change no count.
    expect(merged).toBeGreaterThanOrEqual(3);
    const pizza = buildTree(records.find((r) => r.image === '000000160012.jpg')!);
    expect(footerAll(pizza.text).pizzas).toBe('2');
  });

  it('nests the cell phone in the hand of the person holding it (000000229358.jpg)', () => {
    const r = records.find((x) => x.image === '000000229358.jpg')!;
    const t = buildTree(r);
    let phoneParent: TreeNode | null = null;
    walk(t.roots, (n, parent) => {
      if (n.labels[0] === 'cell phone') phoneParent = parent;
    });
    expect(phoneParent).not.toBeNull();
    const p = phoneParent as unknown as TreeNode;
    expect(p.labels[0]).toBe('person');
    // The person in the mirror: COCO box [272, 95, 107, 148] on a 640x423 image.
    expect(p.x1).toBeCloseTo(272 / 640, 2);
    expect(p.y2).toBeCloseTo((95 + 148) / 423, 2);
    expect(t.text).toMatch(/person \[[^\]]+\], with:\n(\s+-> .*\n)*\s+-> cell phone \[/);
  });

  it('decodes crowd RLE to its true pixel area within 2% at the 128-cell grid, and to COCO\'s area where COCO agrees with itself', () => {
    const crowd = coco.annotations.filter((a) => a.iscrowd === 1);
    expect(crowd).toHaveLength(5);
    let agreeing = 0;
    for (const a of crowd) {
      const img = coco.images.find((i) => i.id === a.image_id)!;
      const g = gridFor(img.width, img.height);
      const r = records.find((x) => x.image === img.file_name)!;
      const b = r.boxes.find((x) => x.iscrowd)!;
      const cov = maskCoverage(g, b.mask!)!;
      const pixels = (area(cov) * img.width * img.height) / (g.gw * g.gh);
      // The exact foreground pixel count of the RLE, from the raw counts.
      const counts = (a.segmentation as { counts: number[] }).counts;
      const truePixels = counts.reduce((s, v, i) => s + (i % 2 ? v : 0), 0);
      expect(Math.abs(pixels - truePixels) / truePixels).toBeLessThan(0.02);
      // COCO's "area" for crowd regions is not always its RLE's pixel count (4 of these 5 differ by 3-10%).
      if (truePixels === a.area) {
        agreeing++;
        expect(Math.abs(pixels - a.area) / a.area).toBeLessThan(0.02);
      }
    }
    expect(agreeing).toBe(1);
  });

  it('reads crowd RLE on each sample line as exactly the runs of the pixel row under it', () => {
    for (const a of coco.annotations.filter((x) => x.iscrowd === 1)) {
      const img = coco.images.find((i) => i.id === a.image_id)!;
      const g = gridFor(img.width, img.height);
      const { counts, size } = a.segmentation as { counts: number[]; size: [number, number] };
      const [h, w] = size;
      // The mask decoded pixel by pixel (column-major runs, background first).
      const pixels = new Uint8Array(h * w);
      for (let i = 0, p = 0; i < counts.length; p += counts[i]!, i++) if (i % 2) pixels.fill(1, p, p + counts[i]!);
      const b = records.find((x) => x.image === img.file_name)!.boxes.find((x) => x.iscrowd)!;
      const cov = maskCoverage(g, b.mask!)!;
      let rowsWithRuns = 0;
      for (let row = 0; row < g.gh; row++) {
        const y = Math.min(h - 1, Math.floor(((row + 0.5) * h) / g.gh));
        const runs: number[] = [];
        for (let x = 0; x < w; x++) {
          const on = pixels[x * h + y] === 1;
          const before = x > 0 && pixels[(x - 1) * h + y] === 1;
          if (on && !before) runs.push((x * g.gw) / w);
          if (!on && before) runs.push((x * g.gw) / w);
        }
        if (runs.length % 2) runs.push(g.gw);
        const at = row - cov.y0;
        const spans = rowSpans(cov, at).flat();
        expect(spans.length).toBe(runs.length);
        spans.forEach((v, i) => expect(v).toBeCloseTo(runs[i]!, 9));
        if (runs.length) rowsWithRuns++;
      }
      expect(rowsWithRuns).toBeGreaterThan(5);
    }
  });

  it('decodes polygons to about the area COCO states', () => {
    const errors: number[] = [];
    for (const a of coco.annotations.filter((x) => x.iscrowd === 0 && x.area > 2000)) {
      const img = coco.images.find((i) => i.id === a.image_id)!;
      const g = gridFor(img.width, img.height);
      const cov = maskCoverage(g, { format: 'polygon', polygons: JSON.stringify(a.segmentation), rle: null, height: img.height, width: img.width })!;
      errors.push(Math.abs((area(cov) * img.width * img.height) / (g.gw * g.gh) - a.area) / a.area);
    }
    errors.sort((x, y) => x - y);
    expect(errors[Math.floor(errors.length / 2)]!).toBeLessThan(0.02);
  });
});

describe('tree rules on hand-built cases', () => {
  const size = { width: 1000, height: 1000 };

  it('merges duplicate boxes (IoU > 0.95) into one node with both labels', () => {
    const t = buildTree({ ...size, boxes: [box('man', 0.1, 0.1, 0.5, 0.9), box('person', 0.1, 0.1, 0.5, 0.905), box('small dog', 0.6, 0.6, 0.9, 0.9), box('dog', 0.6, 0.6, 0.9, 0.9)] });
    // The larger box's label is the primary one.
    expect(t.text).toContain('person (man) [');
    expect(t.text).toContain('small dog [');
    expect(t.text).not.toContain('dog (');
    expect(t.roots).toHaveLength(2);
  });

  it('second merge: same thing on box and mask IoU > 0.6, but never a singular/plural pair', () => {
    const same = buildTree({ ...size, boxes: [box('car', 0.1, 0.1, 0.5, 0.5), box('car', 0.15, 0.1, 0.55, 0.5)] });
    expect(same.roots).toHaveLength(1);
    expect(same.roots[0]!.merged).toBe(2);
    const pair = buildTree({ ...size, boxes: [box('car', 0.1, 0.1, 0.5, 0.5), box('cars', 0.15, 0.1, 0.55, 0.5)] });
    expect(pair.roots).toHaveLength(2);
  });

  it('relationship phrases never collapse into plain labels', () => {
    const t = buildTree({ ...size, boxes: [box('man', 0.1, 0.1, 0.5, 0.9, { relations: ['on the street'], attributes: ['tall'] })] });
    expect(t.text).toContain('man (tall, on the street) [');
  });

  it('counts groups with numbers, "several" for plural and uncountable labels, "many" above 8', () => {
    // Centres at 0.05, 0.15, ...: eight of them average 0.40.
    const row = (label: string, n: number) => Array.from({ length: n }, (_, i) => box(label, 0.025 + i * 0.1, 0.38, 0.075 + i * 0.1, 0.42));
    expect(buildTree({ ...size, boxes: row('car', 8) }).text).toMatch(/^8 cars \[Average X: 0\.40, Average Y: 0\.60, Average Pixel Size: [\d.]+%\] X$/m);
    expect(buildTree({ ...size, boxes: row('car', 9) }).text).toMatch(/^many cars \[/m);
    expect(buildTree({ ...size, boxes: row('window', 3) }).text).toMatch(/^several windows \[/m);
    expect(buildTree({ ...size, boxes: row('people', 2) }).text).toMatch(/^several people \[/m);
    expect(buildTree({ ...size, boxes: row('car', 9) }).text).toContain('cars: 9');
  });

  it('a group of parents prints in braces with each member and its children', () => {
    const t = buildTree({ ...size, boxes: [box('person', 0.1, 0.1, 0.3, 0.9), box('person', 0.4, 0.1, 0.54, 0.9), box('cup', 0.15, 0.4, 0.2, 0.44)] });
    expect(t.text.split('\n').slice(0, 5)).toEqual([
      '2 people {',
      '    -> person [X: 0.20, Y: 0.50, Pixel Size: 16%], with:',
      '        -> cup [X: 0.20, Y: 0.60, Pixel Size: 0.20%] X',
      '    -> person [X: 0.45, Y: 0.50, Pixel Size: 11%] X',
      '}',
    ]);
  });

  it('a group of parents prints its members larger first, whatever order they were linked in', () => {
    // The large person links the small one (near it), which links the middle one (too far from the large one):
    // link order large, small, middle; size order large, middle, small.
    const large = box('person', 0.05, 0.1, 0.25, 0.9);
    const small = box('person', 0.53, 0.45, 0.57, 0.55);
    const middle = box('person', 0.8, 0.3, 1.0, 0.7);
    const t = buildTree({ ...size, boxes: [large, small, middle, box('cup', 0.1, 0.5, 0.13, 0.53)] });
    const members = t.text.split('\n').filter((l) => /^ {4}-> person /.test(l));
    expect(t.text.split('\n')[0]).toBe('3 people {');
    const sizes = members.map((l) => Number(/Pixel Size: ([\d.]+)%/.exec(l)![1]));
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
    expect(sizes).toHaveLength(3);
  });

  it("one object boxed by two datasets is one node with both labels; one dataset's two boxes stay two", () => {
    const coco = box('chair', 0.1, 0.1, 0.5, 0.6, { source: 'coco-instances' });
    // IoU 0.51: over the 0.5 of one object, under the 0.6 of the mask merge.
    const lvis = box('chair', 0.2, 0.15, 0.6, 0.65, { source: 'lvis', attributes: ['wooden'] });
    const two = buildTree({ ...size, boxes: [coco, lvis] });
    const nodes: TreeNode[] = [];
    walk(two.roots, (n) => nodes.push(n));
    expect(nodes).toHaveLength(1);
    expect(nodes[0]!.merged).toBe(2);
    expect(two.text).toContain('chairs: 1');
    // The same two boxes from one dataset are two chairs (IoU 0.51, under the 0.95 of a duplicate and the 0.6 of the mask merge).
    const one = buildTree({ ...size, boxes: [coco, { ...lvis, source: 'coco-instances' }] });
    const sameSource: TreeNode[] = [];
    walk(one.roots, (n) => sameSource.push(n));
    expect(sameSource.length).toBe(2);
    expect(one.text).toContain('chairs: 2');
  });

  it('puts Y up (0 = bottom) and rounds positions to 0.05', () => {
    const t = buildTree({ ...size, boxes: [box('kite', 0.0, 0.0, 0.24, 0.2), box('boat', 0.78, 0.8, 0.88, 1.0)] });
    expect(t.text).toContain('kite [X: 0.10, Y: 0.90,');
    expect(t.text).toContain('boat [X: 0.85, Y: 0.10,');
  });

  it('rounds a position half way between two steps up, whatever the last bit of its arithmetic', () => {
    // Rectangles drawn as polygons, centred half way between two steps
    // (0.175, 0.225, ...): their medians come out a last bit below or above
    // the tie depending on the order of a sum; all must round up.
    const wrong: string[] = [];
    for (const [W, H] of [
      [640, 480],
      [500, 375],
    ] as const) {
      for (let k = 0; k < 19; k++) {
        for (const w of [0.02, 0.05, 0.1, 0.3]) {
          const c = k * 0.05 + 0.025;
          if (c - w / 2 < 0 || c + w / 2 > 1) continue;
          const [x1, x2] = [(c - w / 2) * W, (c + w / 2) * W];
          const polygons = JSON.stringify([[x1, 0.4 * H, x2, 0.4 * H, x2, 0.6 * H, x1, 0.6 * H]]);
          const cup = box('cup', c - w / 2, 0.4, c + w / 2, 0.6, { mask: { format: 'polygon', polygons, rle: null, height: H, width: W } });
          const x = /X: ([\d.]+)/.exec(buildTree({ boxes: [cup], width: W, height: H }).text)![1]!;
          if (x !== (c + 0.025).toFixed(2)) wrong.push(`${W}x${H}, centre ${c.toFixed(3)}, width ${w}: X ${x}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('prints pixel sizes as toFixed does (remembered texts), ties and their neighbours included', () => {
    const r = rng(21);
    const values = [0, 0.005, 0.015, 0.125, 1.005, 1.05, 2.25, 9.95, 9.995, 9.9951, 10, 10.5, 99.5, 100];
    for (let i = 0; i < 20_000; i++) values.push(r() * 100, r() * 10, r(), r() * 0.1);
    // Last-bit neighbours of two-decimal ties: where the product p * 100 rounds the other way.
    for (let k = 0; k < 1000; k++) for (const d of [-1e-16, 0, 1e-16]) values.push((k + 0.5) / 100 + d);
    const wrong = values.filter((p) => fmtPct(p) !== p.toFixed(p >= 10 ? 0 : p >= 1 ? 1 : 2));
    expect(wrong).toEqual([]);
  });

  it('nests by containment: a small object mostly inside a larger one, labels different', () => {
    const t = buildTree({ ...size, boxes: [box('table', 0.1, 0.5, 0.9, 0.9), box('plate', 0.3, 0.55, 0.5, 0.65), box('table', 0.3, 0.52, 0.6, 0.7)] });
    // The plate's tightest container is the small table; a table inside a table is not its child.
    const small = t.roots.find((n) => n.labels[0] === 'table' && n.x1 === 0.3)!;
    expect(small.children.map((c) => c.labels[0])).toEqual(['plate']);
    expect(t.roots.filter((n) => n.labels[0] === 'table')).toHaveLength(2);
    const only = buildTree({ ...size, boxes: [box('table', 0.1, 0.5, 0.9, 0.9), box('plate', 0.3, 0.55, 0.5, 0.65), box('bird', 0.0, 0.0, 0.1, 0.1)] });
    expect(only.roots.find((n) => n.labels[0] === 'table')!.children.map((c) => c.labels[0])).toEqual(['plate']);
    expect(only.roots.find((n) => n.labels[0] === 'bird')!.children).toEqual([]);
  });

  it('gives the flat alternative with y inverted', () => {
    expect(flatBoxes([box('kite', 0.1, 0.0, 0.3, 0.2)])).toBe('[kite, 0.10, 0.80, 0.30, 1.00]');
  });

  it('works with no boxes and with thousands', () => {
    expect(buildTree({ ...size, boxes: [] }).text).toBe('');
    const r = rng(5);
    const many = Array.from({ length: 2000 }, (_, i) => {
      const x = r() * 0.9;
      const y = r() * 0.9;
      return box(['car', 'person', 'tree', 'sign'][i % 4]!, x, y, x + 0.01 + r() * 0.09, y + 0.01 + r() * 0.09);
    });
    const t = buildTree({ ...size, boxes: many });
    let merged = 0;
    walk(t.roots, (n) => (merged += n.merged));
    expect(merged).toBe(2000);
  });
});

/** A star-convex ring of `points` vertices somewhere on a 640 x 480 image, its radius from..from + span pixels, each vertex pulled in at random. */
function blobRing(r: () => number, points: number, from: number, span: number): number[] {
  const cx = r() * 640;
  const cy = r() * 480;
  const radius = from + r() * span;
  const ring: number[] = [];
  for (let i = 0; i < points; i++) {
    const t = (2 * Math.PI * i) / points;
    ring.push(cx + radius * (0.5 + 0.5 * r()) * Math.cos(t), cy + radius * Math.sin(t));
  }
  return ring;
}

describe('polygon coverage', () => {
  const g = gridFor(640, 480);
  const cellArea = (640 / g.gw) * (480 / g.gh);
  const pixels = (rings: number[][]) => area(polygonCoverage(g, rings)) * cellArea;
  const shoelace = (ring: number[]) => {
    let a = 0;
    const n = ring.length / 2;
    for (let i = 0, j = n - 1; i < n; j = i++) a += ring[2 * j]! * ring[2 * i + 1]! - ring[2 * i]! * ring[2 * j + 1]!;
    return Math.abs(a) / 2;
  };

  it('covers exactly the area of random polygons, either winding, to within 0.2%', () => {
    const r = rng(21);
    for (let k = 0; k < 500; k++) {
      const cx = 160 + r() * 320;
      const cy = 120 + r() * 240;
      const radius = 10 + r() * 100;
      const sides = 3 + Math.floor(r() * 22);
      const ring: number[] = [];
      for (let i = 0; i < sides; i++) {
        const t = (2 * Math.PI * i) / sides;
        ring.push(cx + radius * (0.6 + 0.4 * r()) * Math.cos(t), cy + radius * Math.sin(t));
      }
      const reversed: number[] = [];
      for (let i = sides - 1; i >= 0; i--) reversed.push(ring[2 * i]!, ring[2 * i + 1]!);
      const want = shoelace(ring);
      expect(Math.abs(pixels([ring]) - want) / want).toBeLessThan(0.002);
      expect(Math.abs(pixels([reversed]) - want) / want).toBeLessThan(0.002);
    }
  });

  it('covers, on each row\'s sample line, exactly the points inside the polygon by the non-zero rule', () => {
    // The oracle: winding numbers counted edge by edge at a point, for every
    // ring, the shape inside where any ring winds around it. Shapes cover
    // both windings, self-crossing rings (a star drawn in one stroke winds
    // twice round its middle), random points, spikes, several rings, and
    // edges outside the image on every side.
    const winding = (ring: number[], x: number, y: number) => {
      let w = 0;
      const n = ring.length / 2;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const [xa, ya, xb, yb] = [ring[2 * j]!, ring[2 * j + 1]!, ring[2 * i]!, ring[2 * i + 1]!];
        if (ya <= y && yb > y && (xb - xa) * (y - ya) - (x - xa) * (yb - ya) > 0) w++;
        else if (yb <= y && ya > y && (xb - xa) * (y - ya) - (x - xa) * (yb - ya) < 0) w--;
      }
      return w;
    };
    const r = rng(33);
    let checked = 0;
    let inside = 0;
    for (let k = 0; k < 600; k++) {
      const kind = k % 5;
      const ringCount = kind === 4 ? 2 + Math.floor(r() * 3) : 1;
      const rings: number[][] = [];
      for (let q = 0; q < ringCount; q++) {
        const sides = kind === 3 ? 5 : 3 + Math.floor(r() * 30);
        const cx = -80 + r() * 800;
        const cy = -60 + r() * 600;
        const radius = 2 + r() * 300;
        const ring: number[] = [];
        for (let i = 0; i < sides; i++) {
          if (kind === 2) ring.push(-40 + r() * 720, -30 + r() * 540);
          else {
            // kind 3: a pentagram, each vertex two steps round from the last.
            const t = ((kind === 1 ? -2 : kind === 3 ? 4 : 2) * Math.PI * i) / sides;
            const rr = radius * (kind === 3 ? 1 : 0.5 + 0.5 * r());
            ring.push(cx + rr * Math.cos(t), cy + rr * Math.sin(t));
          }
        }
        rings.push(ring);
      }
      const m = polygonCoverage(g, rings);
      const cellW = 640 / g.gw;
      const cellH = 480 / g.gh;
      const covered = (row: number, x: number) => {
        return rowSpans(m, row - m.y0).some(([from, to]) => x >= from && x < to);
      };
      let spanSum = 0;
      for (let row = 0; row < m.h; row++) for (const [from, to] of rowSpans(m, row)) spanSum += to - from;
      expect(m.spanArea).toBeCloseTo(spanSum, 9);
      if (m.h === 1 && m.spanArea > 0) continue; // a shape thinner than a row is sampled through its own middle
      for (let row = 0; row < g.gh; row++) {
        const y = (row + 0.5) * cellH;
        for (let t = 0; t < 4; t++) {
          const x = r() * 640;
          // Points within a hair of an edge could go either way in floating point.
          const near = rings.some((ring) => winding(ring, x - 1e-6, y) !== winding(ring, x + 1e-6, y));
          if (near) continue;
          const want = rings.some((ring) => winding(ring, x, y) !== 0);
          expect(covered(row, x / cellW), `shape ${k}, row ${row}, x ${x}`).toBe(want);
          checked++;
          if (want) inside++;
        }
      }
    }
    // Enough of both answers were checked for the comparison to mean something.
    expect(checked).toBeGreaterThan(200_000);
    expect(inside).toBeGreaterThan(20_000);
  });

  it('answers the containment test from a partial overlap exactly as from the whole one', () => {
    const r = rng(8);
    const blob = () => polygonCoverage(g, [blobRing(r, 16, 20, 200)]);
    let stopped = 0;
    for (let k = 0; k < 400; k++) {
      const a = blob();
      const b = blob();
      const aArea = a.spanArea;
      const whole = overlap(a, b);
      for (const share of [0, 0.05, 0.2, 0.5, 0.9, 1]) {
        const partial = overlap(a, b, share);
        expect(partial / aArea <= share).toBe(whole / aArea <= share);
        // Where the test fails, nothing was skipped; where it passes, at most everything was summed.
        if (whole / aArea <= share) expect(partial).toBe(whole);
        else expect(partial).toBeLessThanOrEqual(whole);
        if (partial < whole) stopped++;
      }
    }
    // The stop did happen, so the comparison above was not between two whole sums.
    expect(stopped).toBeGreaterThan(50);
  });

  it('keeps spans ordered, apart, inside the image and summed right for any ring, however far out or thin', () => {
    const r = rng(99);
    for (let k = 0; k < 6000; k++) {
      const kind = k % 6;
      const ring: number[] = [];
      for (let i = 0, n = 3 + Math.floor(r() * 40); i < n; i++) {
        if (kind === 0) ring.push((r() - 0.5) * 2e9, (r() - 0.5) * 2e9); // far outside
        else if (kind === 1) ring.push(100, 100); // a single point
        else if (kind === 2) ring.push(r() * 640, 200 + r() * 0.3); // thinner than a row
        else if (kind === 3) ring.push(300 + r() * 0.2, r() * 480); // thinner than a column
        else if (kind === 4) ring.push(-1000 + r() * 3000, -1000 + r() * 3000); // across the edges
        else ring.push(r() * 640, r() * 480);
      }
      const m = polygonCoverage(g, [ring]);
      expect(m.y0).toBeGreaterThanOrEqual(0);
      expect(m.y0 + m.h).toBeLessThanOrEqual(g.gh);
      let sum = 0;
      for (let row = 0; row < m.h; row++) {
        let end = -Infinity;
        for (const [from, to] of rowSpans(m, row)) {
          expect(from >= 0 && to <= g.gw && to > from && from >= end, `ring ${k}, row ${row}: span ${from}..${to} after ${end}`).toBe(true);
          end = to;
          sum += to - from;
        }
      }
      expect(m.spanArea).toBeCloseTo(sum, 6);
      expect(m.area).toBeGreaterThanOrEqual(0);
      if (kind === 2 && m.area > 0) expect(m.h).toBe(1); // sampled once, through its middle
      if (m.spanArea > 0) {
        expect(m.mx >= 0 && m.mx <= 1 && m.my >= 0 && m.my <= 1).toBe(true);
      }
    }
  });

  it('unites two masks into the spans their rings give together', () => {
    // union() merges span lists; the multi-ring sampling unites rings by
    // winding: two separate pieces of code that must agree.
    const r = rng(12);
    for (let k = 0; k < 300; k++) {
      const [a, b] = [blobRing(r, 12, 5, 150), blobRing(r, 12, 5, 150)];
      const u = union(g, polygonCoverage(g, [a]), polygonCoverage(g, [b]));
      const both = polygonCoverage(g, [a, b]);
      // Rows without spans at either end are allowed to differ; the spans must not.
      const rowsOf = (m: typeof u) => {
        const rows = new Map<number, number[]>();
        for (let i = 0; i < m.h; i++) if (rowSpans(m, i).length) rows.set(m.y0 + i, rowSpans(m, i).flat());
        return rows;
      };
      const ur = rowsOf(u);
      const br = rowsOf(both);
      expect([...ur.keys()]).toEqual([...br.keys()]);
      for (const [row, spans] of br) {
        const got = ur.get(row)!;
        expect(got.length).toBe(spans.length);
        got.forEach((v, i) => expect(v).toBeCloseTo(spans[i]!, 9));
      }
      expect(u.spanArea).toBeCloseTo(both.spanArea, 6);
    }
  });

  it('takes the area from the spans where the shoelace sum would mislead', () => {
    // A bow tie crosses itself: its shoelace sum is 0, the area it covers is half its square.
    const bowTie = polygonCoverage(g, [[100, 100, 300, 300, 300, 100, 100, 300]]);
    expect(pixels([[100, 100, 300, 300, 300, 100, 100, 300]])).toBeGreaterThan(0.97 * 20_000);
    expect(pixels([[100, 100, 300, 300, 300, 100, 100, 300]])).toBeLessThan(1.03 * 20_000);
    expect(area(bowTie)).toBeCloseTo(bowTie.spanArea, 9);
    // Two overlapping squares: the union, not the sum of both.
    const square = (x: number, y: number, s: number) => [x, y, x + s, y, x + s, y + s, x, y + s];
    expect(pixels([square(100, 100, 100), square(150, 150, 100)])).toBeCloseTo(10_000 + 10_000 - 2_500, 0);
  });

  it('unites rings, and clips at the image edge', () => {
    const square = (x: number, y: number, s: number) => [x, y, x + s, y, x + s, y + s, x, y + s];
    // Two separate squares add up; a square inside another adds nothing.
    expect(pixels([square(100, 100, 50), square(300, 300, 40)])).toBeCloseTo(2500 + 1600, 0);
    expect(pixels([square(100, 100, 100), square(120, 120, 20)])).toBeCloseTo(10_000, 0);
    // Half of this square lies right of the image: only the half inside counts.
    expect(pixels([square(600, 100, 80)])).toBeCloseTo(40 * 80, 0);
  });

  it('keeps every mask its own while many are alive (masks share slabs of memory)', () => {
    // 3,000 masks of up to 96 rows: several slabs' worth, all held at once.
    const r = rng(5);
    const rings = Array.from({ length: 3000 }, () => {
      const x = r() * 400;
      const y = r() * 300;
      const s = 20 + r() * 220;
      return [x, y, x + s, y + 0.3 * s, x + 0.6 * s, y + s];
    });
    const held = rings.map((ring) => polygonCoverage(g, [ring]));
    // Copies taken as each window is made would show a window that a later one wrote over.
    const copies: number[][] = [];
    const contents = (m: Coverage) => Array.from({ length: m.h }, (_, row) => rowSpans(m, row).flat()).flat();
    const fresh = rings.map((ring) => {
      const m = polygonCoverage(g, [ring]);
      copies.push(contents(m));
      return m;
    });
    const slabs = new Set<Float64Array>();
    for (let i = 0; i < rings.length; i++) {
      expect(contents(held[i]!)).toEqual(copies[i]);
      expect(contents(fresh[i]!)).toEqual(copies[i]);
      expect(spanCount(held[i]!)).toBe(copies[i]!.length / 2);
      slabs.add(held[i]!.spans);
    }
    // Several masks share a slab, and there is more than one slab.
    expect(slabs.size).toBeGreaterThan(1);
    expect(slabs.size).toBeLessThan(rings.length / 10);
    expect(area(held[0]!)).toBeGreaterThan(0);
  });

  it("uses a tree's mask room again for the next, and leaves masks made before it as they were", () => {
    const r = rng(9);
    const ring = () => {
      const x = r() * 400;
      const y = r() * 300;
      return [x, y, x + 200, y + 30, x + 120, y + 170];
    };
    const before = Array.from({ length: 50 }, () => polygonCoverage(g, [ring()]));
    const copies = before.map((m) => Array.from({ length: m.h }, (_, row) => rowSpans(m, row).flat()));
    const boxes = Array.from({ length: 400 }, (_, i) => {
      const x = r() * 0.8;
      const y = r() * 0.8;
      return box(i % 2 ? 'cup' : 'person', x, y, x + 0.05 + r() * 0.15, y + 0.05 + r() * 0.15);
    });
    const first = buildTree({ width: 640, height: 480, boxes });
    for (let k = 0; k < 20; k++) expect(buildTree({ width: 640, height: 480, boxes }).text).toBe(first.text);
    before.forEach((m, i) => expect(Array.from({ length: m.h }, (_, row) => rowSpans(m, row).flat())).toEqual(copies[i]));
    // The next mask goes where the trees' masks went: right after the last one made before them.
    const last = before[before.length - 1]!;
    const after = polygonCoverage(g, [ring()]);
    expect(after.spans).toBe(last.spans);
    expect(after.starts[after.s0]).toBe(last.starts[last.s0 + last.h]);
  });

  it('reads polygon text to the numbers JSON.parse gives, and leaves anything but plain numeric rings to JSON', () => {
    const r = rng(8);
    const num = () => {
      const k = r();
      if (k < 0.3) return String(Math.floor(r() * 640));
      if (k < 0.8) return (r() * 640).toFixed(1 + Math.floor(r() * 12));
      if (k < 0.85) return `-${(r() * 5).toFixed(3)}`;
      if (k < 0.9) return `${(r() * 9).toFixed(2)}e${Math.floor(r() * 4)}`;
      if (k < 0.95) return `${Math.floor(r() * 1e6)}.${String(Math.floor(r() * 1e12)).padStart(12, '0')}`; // 18 digits: past the fast path
      return k < 0.975 ? '0' : '-0';
    };
    const texts: string[] = [];
    for (let t = 0; t < 2000; t++) {
      const rings = Array.from({ length: 1 + Math.floor(r() * 3) }, () => Array.from({ length: 2 + Math.floor(r() * 30) }, num));
      const sep = r() < 0.2 ? ' , ' : ',';
      texts.push(`${r() < 0.2 ? ' ' : ''}[${rings.map((ring) => `[${ring.join(sep)}]`).join(sep)}]${r() < 0.2 ? '\n' : ''}`);
    }
    for (const text of texts) {
      const flat = readPolygonText(text)!;
      // What the JSON path keeps: rings of 6 or more numbers.
      const expected = (JSON.parse(text) as number[][]).filter((ring) => ring.length >= 6);
      expect(flat.count).toBe(expected.length);
      for (let k = 0; k < flat.count; k++) {
        const got = Array.from(flat.coords.subarray(flat.starts[k]!, flat.starts[k + 1]!));
        // Object.is: -0 stays -0, and every double is the same double.
        expect(got.every((v, i) => Object.is(v, expected[k]![i]))).toBe(true);
      }
    }
    // Not plain rings of numbers, or not JSON at all: null, and maskCoverage asks JSON.parse.
    // Characters past ASCII (here one whose low byte is the digit 0) are never read as digits.
    for (const t of ['[[1,2,3,4,5,\u0130]]', '[[1,2,3,4,5,6]]\u00a0', '[[1,2,3,4,5,6],[null]]', '[[1,2,3,4,5,"6"]]', '[[[1,2]]]', '[[012,2,3,4,5,6]]', '[[1.,2,3,4,5,6]]', '[[+1,2,3,4,5,6]]', '[[1,2,3,4,5,6]', '[[1,2,3,4,5,6]] x', '{"a":1}', 'null']) {
      expect(readPolygonText(t)).toBeNull();
    }
    // The JSON path still takes the good rings of such text, as before.
    const mixed = maskCoverage(g, { format: 'polygon', polygons: '[[100,100,200,100,200,200,100,200],[null]]', rle: null, height: 0, width: 0 })!;
    expect(area(mixed) * cellArea).toBeCloseTo(10_000, 0);
    expect(maskCoverage(g, { format: 'polygon', polygons: '[[1,2,3,4,5,"6"]]', rle: null, height: 0, width: 0 })).toBeNull();
    // Text of over a million characters goes to JSON too (the byte scratch is not grown for it): same mask.
    const side = Array.from({ length: 80_000 }, (_, i) => [100 + (100 * i) / 80_000, 100]).flat();
    const huge = JSON.stringify([[...side, 200, 100, 200, 200, 100, 200]]);
    expect(huge.length).toBeGreaterThan(1 << 20);
    expect(readPolygonText(huge)).toBeNull();
    expect(area(maskCoverage(g, { format: 'polygon', polygons: huge, rle: null, height: 0, width: 0 })!) * cellArea).toBeCloseTo(10_000, 0);
  });
});

describe('property: random boxes', () => {
  it('every object is accounted for once and the footer sums to the merged objects', () => {
    const r = rng(11);
    const labels = ['car', 'cars', 'person', 'dog', 'cup', 'window', 'man'];
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(r() * 40);
      const boxes = Array.from({ length: n }, () => {
        const x = r() * 0.8;
        const y = r() * 0.8;
        const w = 0.02 + r() * 0.2;
        const h = 0.02 + r() * 0.2;
        // Some exact duplicates, to exercise merging.
        return box(labels[Math.floor(r() * labels.length)]!, x, y, Math.min(1, x + w), Math.min(1, y + h));
      });
      if (n > 3) boxes.push({ ...boxes[0]! }, { ...boxes[1]! });
      const t = buildTree({ width: 640, height: 480, boxes });
      let nodes = 0;
      let represented = 0;
      const seen = new Set<TreeNode>();
      walk(t.roots, (node) => {
        expect(seen.has(node)).toBe(false);
        seen.add(node);
        nodes++;
        represented += node.merged;
      });
      expect(represented).toBe(boxes.length);
      // The footer counts the annotations, not the nodes: all boxes are one dataset's, so each is an object.
      expect(Object.values(footer(t.text)).reduce((a, b) => a + b, 0)).toBe(boxes.length);
      expect(nodes).toBeLessThanOrEqual(boxes.length);
      expect(buildTree({ width: 640, height: 480, boxes }).text).toBe(t.text);
    }
  });
});

describe('depth', () => {
  it('finds two layers in a two-plane depth map, 8- and 16-bit, and the flag flips them', async () => {
    const dir = await tmpDir();
    const w = 200;
    const h = 100;
    const near8 = Buffer.alloc(w * h);
    const near16 = new Uint16Array(w * h);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        // Left half near (large values: inverse depth), right half far.
        near8[y * w + x] = x < w / 2 ? 220 : 30;
        near16[y * w + x] = x < w / 2 ? 60000 : 5000;
      }
    const f8 = path.join(dir, 'd8.png');
    const f16 = path.join(dir, 'd16.png');
    await sharp(near8, { raw: { width: w, height: h, channels: 1 } }).png().toFile(f8);
    // A Uint16Array tells sharp the samples are 16-bit.
    await sharp(near16, { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16').png().toFile(f16);
    const g = gridFor(w, h);
    const boxes = [box('ball', 0.1, 0.2, 0.3, 0.5), box('tree', 0.6, 0.1, 0.9, 0.9)];
    for (const file of [f8]) {
      const values = await loadDepthMap(file, g, false);
      const t = buildTree({ width: w, height: h, boxes, depth: depthLayers(values) });
      expect(t.text).toContain('ball [X: 0.20, Y: 0.65, Pixel Size: 6.0%, Relative Depths: 0] X');
      expect(t.text).toMatch(/tree \[[^\]]*Relative Depths: 1\] X/);
      const flipped = buildTree({ width: w, height: h, boxes, depth: depthLayers(await loadDepthMap(file, g, true)) });
      expect(flipped.text).toMatch(/ball \[[^\]]*Relative Depths: 1\] X/);
      // Two balls either side of the planes' edge group into one line with
      // every layer of its members, closest first (the larger, farther one
      // comes first among the siblings).
      const pair = [box('ball', 0.4, 0.4, 0.48, 0.6), box('ball', 0.52, 0.4, 0.62, 0.6)];
      const grouped = buildTree({ width: w, height: h, boxes: pair, depth: depthLayers(await loadDepthMap(file, g, false)) });
      expect(grouped.text).toMatch(/^2 balls \[Average X: [\d.]+, Average Y: 0\.50, Average Pixel Size: [\d.]+%, Relative Depths: 0, 1\] X$/m);
    }
    expect((await sharp(f16).metadata()).depth).toBe('ushort');
    const v16 = await loadDepthMap(f16, g, false);
    expect(buildTree({ width: w, height: h, boxes, depth: depthLayers(v16) }).text).toMatch(/tree \[[^\]]*Relative Depths: 1\] X/);
  });

  it('finds the layers on the full-resolution map: thin planes the grid would blend into one are two', async () => {
    const dir = await tmpDir();
    const w = 1024;
    const h = 256;
    const px = Buffer.alloc(w * h);
    // Left half one plane; right half two planes in one-pixel columns, which any grid averages into a third value.
    // The top row holds the extremes, so every plane lies inside the range (a histogram's end bin is no peak).
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = y === 0 ? (x % 2 ? 255 : 0) : x < w / 2 ? 230 : x % 2 ? 120 : 20;
    const file = path.join(dir, 'stripes.png');
    await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toFile(file);
    const g = gridFor(w, h);
    const full = await loadDepthLayers(file, g, false);
    // Three planes (near 0.10, 0.53, 0.92): two cuts, one between each pair.
    expect(full.cuts).toHaveLength(2);
    expect(full.cuts[0]).toBeGreaterThan(0.1);
    expect(full.cuts[0]).toBeLessThan(0.53);
    expect(full.cuts[1]).toBeGreaterThan(0.53);
    expect(full.cuts[1]).toBeLessThan(0.92);
    // The grid's cells blend the columns: a histogram of the grid would not see those three planes.
    expect(depthLayers(await loadDepthMap(file, g, false)).cuts).not.toHaveLength(2);
    // The grid values are the cells' means, on the same 0..1 scale (near is 0).
    expect(full.values[g.gw]).toBeCloseTo(1 - 230 / 255, 5);
    expect(full.values[2 * g.gw - 1]).toBeCloseTo(1 - 70 / 255, 2);
  });

  it('gives an object the distinct layers of its mask between the 15th and 85th percentile, not every layer between', () => {
    const W = 300;
    const H = 100;
    const g = gridFor(W, H);
    const values = new Float32Array(g.gw * g.gh);
    for (let i = 0; i < values.length; i++) values[i] = (i % g.gw) / g.gw < 1 / 3 ? 0.05 : (i % g.gw) / g.gw < 2 / 3 ? 0.5 : 0.95;
    const d = depthLayers(values);
    // A fence in two parts, left and right, seen past a middle plane it does not cover.
    const polygons = JSON.stringify([
      [0, 0, 90, 0, 90, 100, 0, 100],
      [210, 0, 300, 0, 300, 100, 210, 100],
    ]);
    const fence = box('fence', 0, 0, 1, 1, { mask: { format: 'polygon', polygons, rle: null, height: H, width: W } });
    const t = buildTree({ width: W, height: H, boxes: [fence] }, {});
    expect(t.roots[0]!.depths).toBeNull();
    const withDepth = buildTree({ width: W, height: H, boxes: [fence], depth: d });
    expect(withDepth.roots[0]!.depths).toEqual([0, 2]);
    expect(withDepth.text).toContain('Relative Depths: 0, 2]');
  });

  it('keeps prominent histogram peaks only, at least two', () => {
    // The bump at 9 stands only 7.5/7 above the valley beside it: dropped.
    expect(histogramPeaks([0, 10, 0, 0, 9, 0, 0, 8, 7, 7.5, 0])).toEqual([1, 4, 7]);
    expect(histogramPeaks([0, 10, 0, 0, 9, 0, 0, 8, 0])).toEqual([1, 4, 7]);
    expect(histogramPeaks([5, 6, 5, 6, 5])).toHaveLength(2);
  });

  it('does not nest objects whose depth layers are far apart', () => {
    const g = gridFor(300, 100);
    const values = new Float32Array(g.gw * g.gh);
    // Three planes left to right: near, middle, far.
    for (let i = 0; i < values.length; i++) values[i] = (i % g.gw) / g.gw < 1 / 3 ? 0.05 : (i % g.gw) / g.gw < 2 / 3 ? 0.5 : 0.95;
    const d = depthLayers(values);
    expect(d.cuts).toHaveLength(2);
    const boxes = [box('wall', 0.0, 0.0, 1.0, 1.0), box('lamp', 0.05, 0.1, 0.25, 0.5), box('bird', 0.75, 0.1, 0.95, 0.5)];
    const t = buildTree({ width: 300, height: 100, boxes, depth: d }, { depthGrace: 0 });
    const wall = t.roots.find((n) => n.labels[0] === 'wall')!;
    expect(wall.depths).toEqual([0, 1, 2]);
    expect(wall.children.map((c) => c.labels[0]).sort()).toEqual(['bird', 'lamp']);
    const narrow = [box('shelf', 0.0, 0.0, 0.3, 1.0), box('bird', 0.05, 0.1, 0.25, 0.5)];
    // Same plane: nested. Shelf near, bird far: not.
    expect(buildTree({ width: 300, height: 100, boxes: narrow, depth: d }).roots).toHaveLength(1);
    // A far bird seen through the box of a near shelf: 2D containment holds, depth does not.
    const scene = new Float32Array(g.gw * g.gh).fill(0.05);
    for (let gy = 0; gy < g.gh; gy++)
      for (let gx = 0; gx < g.gw; gx++) {
        const x = gx / g.gw;
        const y = gy / g.gh;
        if (x > 0.7) scene[gy * g.gw + gx] = 0.5;
        if (x >= 0.1 && x < 0.2 && y >= 0.1 && y < 0.3) scene[gy * g.gw + gx] = 0.95;
      }
    const d2 = depthLayers(scene);
    const shelfAndBird = [box('shelf', 0.0, 0.0, 0.5, 1.0), box('bird', 0.1, 0.1, 0.2, 0.3)];
    const t2 = buildTree({ width: 300, height: 100, boxes: shelfAndBird, depth: d2 });
    expect(t2.roots.find((n) => n.labels[0] === 'shelf')!.depths).toEqual([0]);
    expect(t2.roots.find((n) => n.labels[0] === 'bird')!.depths).toEqual([2]);
    expect(t2.roots).toHaveLength(2);
    // Within the grace (2 layers), it nests again.
    expect(buildTree({ width: 300, height: 100, boxes: shelfAndBird, depth: d2 }, { depthGrace: 2 }).roots).toHaveLength(1);
    // Without a depth map, depth is ignored: nested.
    expect(buildTree({ width: 300, height: 100, boxes: shelfAndBird }).roots).toHaveLength(1);
  });
});
