import { decodeRleString } from '../masks/rle.js';
import type { Mask } from '../types.js';

/**
 * Object masks at a reduced resolution: the image is covered by a grid whose
 * longer side has `GRID_MAX` cells (aspect kept), and each cell holds how
 * much of it the object covers (0..255). 128 cells: a mask costs at most
 * 16 KB, positions resolve to under 1% of the image (the tree rounds them to
 * 5%), and because cells hold coverage rather than yes/no, areas stay close
 * to the true pixel counts (RLE coverage is counted exactly per cell;
 * polygons are sampled 4x4 per cell).
 */
export const GRID_MAX = 128;
const FULL = 255;
const SUB = 4; // polygon samples per cell side

export interface Grid {
  /** Grid size in cells. */
  gw: number;
  gh: number;
  /** Image size in pixels the grid covers. */
  width: number;
  height: number;
}

export function gridFor(width: number, height: number, max = GRID_MAX): Grid {
  const scale = max / Math.max(width, height);
  return { gw: Math.max(1, Math.round(width * scale)), gh: Math.max(1, Math.round(height * scale)), width, height };
}

/**
 * Coverage over a window of the grid: cells [x0, x0 + w) x [y0, y0 + h),
 * row-major, 0..255. Only the object's own cells are stored, so every
 * operation costs in proportion to the object, not to the image.
 */
export interface Coverage {
  x0: number;
  y0: number;
  w: number;
  h: number;
  data: Uint8Array;
}

function emptyWindow(g: Grid, cx1: number, cy1: number, cx2: number, cy2: number): Coverage {
  const x0 = Math.max(0, Math.min(g.gw - 1, Math.floor(cx1)));
  const y0 = Math.max(0, Math.min(g.gh - 1, Math.floor(cy1)));
  const x1 = Math.max(x0 + 1, Math.min(g.gw, Math.ceil(cx2)));
  const y1 = Math.max(y0 + 1, Math.min(g.gh, Math.ceil(cy2)));
  return { x0, y0, w: x1 - x0, h: y1 - y0, data: new Uint8Array((x1 - x0) * (y1 - y0)) };
}

/** A box (normalised 0..1 corners) as coverage, with partial cells at its edges. */
export function boxCoverage(g: Grid, x1: number, y1: number, x2: number, y2: number): Coverage {
  const cx1 = x1 * g.gw;
  const cx2 = x2 * g.gw;
  const cy1 = y1 * g.gh;
  const cy2 = y2 * g.gh;
  const m = emptyWindow(g, cx1, cy1, cx2, cy2);
  for (let yy = 0; yy < m.h; yy++) {
    const gy = m.y0 + yy;
    const fy = Math.min(gy + 1, cy2) - Math.max(gy, cy1);
    if (fy <= 0) continue;
    for (let xx = 0; xx < m.w; xx++) {
      const gx = m.x0 + xx;
      const fx = Math.min(gx + 1, cx2) - Math.max(gx, cx1);
      if (fx > 0) m.data[yy * m.w + xx] = Math.round(FULL * fx * fy);
    }
  }
  return m;
}

// Scratch space for polygon scan conversion, reused across calls (one thread each).
let rowCount = new Int32Array(1024);
let rowFill = new Int32Array(1024);
let xsBuf = new Float64Array(4096);
// Per-cell sample counts: partial cells at span ends go to `cellBuf`; whole
// cells inside a span are added once to `runBuf` as a difference (+ at the
// first cell, - after the last), summed along the row at the end, so a span
// costs the same whatever its length.
let cellBuf = new Int32Array(GRID_MAX * GRID_MAX);
let runBuf = new Int32Array(GRID_MAX * (GRID_MAX + 1));
/** Sample count -> 0..255 coverage, per samples-per-cell (1, 4, 16). */
const COVERAGE_LUT = new Map<number, Uint8Array>(
  [1, 4, 16].map((n) => [n, Uint8Array.from({ length: n + 1 }, (_, k) => Math.round((FULL * k) / n))]),
);

/**
 * Polygons (pixel coordinates of the image the grid covers) as coverage:
 * each cell is sampled SUB x SUB times (2 x 2 for objects over 32 cells
 * across and once for those over 64, whose size already gives them
 * resolution); a sample is inside
 * when a ring contains it (even-odd per ring, rings united, as COCO draws
 * them).
 */
export function polygonCoverage(g: Grid, rings: number[][]): Coverage {
  const kx = g.gw / g.width;
  const ky = g.gh / g.height;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const ring of rings) {
    for (let i = 0; i + 1 < ring.length; i += 2) {
      const x = ring[i]! * kx;
      const y = ring[i + 1]! * ky;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
  }
  const m = emptyWindow(g, minX, minY, maxX, maxY);
  // Relative accuracy is what matters: big objects need fewer samples per cell.
  const span = Math.max(m.w, m.h);
  const sub = span > 64 ? 1 : span > 32 ? 2 : SUB;
  const rows = m.h * sub;
  const sw = m.w * sub;
  const cellsN = m.w * m.h;
  const runW = m.w + 1;
  if (cellBuf.length < cellsN) cellBuf = new Int32Array(cellsN);
  if (runBuf.length < runW * m.h) runBuf = new Int32Array(runW * m.h);
  const counts = cellBuf;
  const runs = runBuf;
  counts.fill(0, 0, cellsN);
  runs.fill(0, 0, runW * m.h);
  const sx = kx * sub;
  const sy = ky * sub;
  const ox = m.x0 * sub;
  const oy = m.y0 * sub;
  // Edge table in flat, reused arrays: each edge adds its crossing to just
  // the sample rows it spans (count, then place by row offsets).
  if (rowCount.length < rows + 1) {
    rowCount = new Int32Array(rows * 2 + 1);
    rowFill = new Int32Array(rows * 2 + 1);
  }
  for (const ring of rings) {
    const n = ring.length >> 1;
    if (n < 3) continue;
    rowCount.fill(0, 0, rows + 1);
    let total = 0;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const ya = ring[2 * j + 1]! * sy - oy;
      const yb = ring[2 * i + 1]! * sy - oy;
      if (ya === yb) continue;
      const lo = Math.min(ya, yb);
      const hi = Math.max(ya, yb);
      // Rows whose sample centre (row + 0.5) lies in [lo, hi).
      const r0 = Math.max(0, Math.ceil(lo - 0.5));
      const r1 = Math.min(rows - 1, Math.ceil(hi - 0.5) - 1);
      for (let r = r0; r <= r1; r++) rowCount[r + 1]!++;
      if (r1 >= r0) total += r1 - r0 + 1;
    }
    for (let r = 0; r < rows; r++) rowCount[r + 1]! += rowCount[r]!;
    if (xsBuf.length < total) xsBuf = new Float64Array(total * 2);
    rowFill.set(rowCount.subarray(0, rows), 0);
    for (let i = 0, j = n - 1; i < n; j = i++) {
      let xa = ring[2 * j]! * sx - ox;
      let ya = ring[2 * j + 1]! * sy - oy;
      let xb = ring[2 * i]! * sx - ox;
      let yb = ring[2 * i + 1]! * sy - oy;
      if (ya === yb) continue;
      if (ya > yb) {
        [xa, xb] = [xb, xa];
        [ya, yb] = [yb, ya];
      }
      const r0 = Math.max(0, Math.ceil(ya - 0.5));
      const r1 = Math.min(rows - 1, Math.ceil(yb - 0.5) - 1);
      const slope = (xb - xa) / (yb - ya);
      for (let r = r0; r <= r1; r++) xsBuf[rowFill[r]!++] = xa + (r + 0.5 - ya) * slope;
    }
    for (let r = 0; r < rows; r++) {
      const start = rowCount[r]!;
      const end = rowCount[r + 1]!;
      if (end - start < 2) continue;
      // Insertion sort in place: a row has a handful of crossings, and a
      // typed-array subarray + sort per row cost more than the whole scan.
      for (let a = start + 1; a < end; a++) {
        const v = xsBuf[a]!;
        let b = a - 1;
        while (b >= start && xsBuf[b]! > v) {
          xsBuf[b + 1] = xsBuf[b]!;
          b--;
        }
        xsBuf[b + 1] = v;
      }
      const cellRow = (r / sub) | 0;
      const base = cellRow * m.w;
      const runBase = cellRow * runW;
      for (let k = start; k + 1 < end; k += 2) {
        // Samples at x + 0.5 between the two crossings, added a cell at a time.
        // Overlapping rings (rare in COCO) may count a sample twice; cells are capped below.
        const from = Math.max(0, Math.ceil(xsBuf[k]! - 0.5));
        const to = Math.min(sw - 1, Math.floor(xsBuf[k + 1]! - 0.5));
        if (to < from) continue;
        const c0 = (from / sub) | 0;
        const c1 = (to / sub) | 0;
        if (c0 === c1) {
          counts[base + c0]! += to - from + 1;
          continue;
        }
        counts[base + c0]! += sub * (c0 + 1) - from;
        counts[base + c1]! += to - sub * c1 + 1;
        if (c1 > c0 + 1) {
          runs[runBase + c0 + 1]! += sub;
          runs[runBase + c1]! -= sub;
        }
      }
    }
  }
  const perCell = sub * sub;
  const lut = COVERAGE_LUT.get(perCell)!;
  const data = m.data;
  for (let y = 0, i = 0; y < m.h; y++) {
    let run = 0;
    const runBase = y * runW;
    for (let x = 0; x < m.w; x++, i++) {
      run += runs[runBase + x]!;
      const c = counts[i]! + run;
      data[i] = lut[c > perCell ? perCell : c]!;
    }
  }
  return m;
}

/**
 * RLE counts (column-major runs, starting with background) over an h x w
 * mask, as coverage: every foreground pixel is counted into its cell.
 */
export function rleCoverage(g: Grid, counts: number[], h: number, w: number): Coverage {
  const pixels = new Float64Array(g.gw * g.gh);
  const cellW = w / g.gw;
  const cellH = h / g.gh;
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    const run = counts[i]!;
    if (i % 2 === 1 && run > 0) {
      // Foreground pixels pos .. pos+run-1, walked one column piece at a time.
      let p = pos;
      const end = pos + run;
      while (p < end) {
        const x = Math.floor(p / h);
        const y0 = p % h;
        const y1 = Math.min(h, y0 + (end - p));
        const gx = Math.min(g.gw - 1, Math.floor(x / cellW));
        for (let y = y0; y < y1; ) {
          const gy = Math.min(g.gh - 1, Math.floor(y / cellH));
          const cellEnd = Math.min(y1, Math.ceil((gy + 1) * cellH));
          const take = Math.max(1, cellEnd - y);
          pixels[gy * g.gw + gx]! += take;
          y += take;
        }
        p += y1 - y0;
      }
    }
    pos += run;
  }
  // Cells do not all hold the same number of pixels when the grid does not
  // divide the image evenly: divide by each cell's own count, so a full cell
  // is exactly full and no area is lost to clipping.
  const colPixels = new Float64Array(g.gw);
  const rowPixels = new Float64Array(g.gh);
  for (let x = 0; x < w; x++) colPixels[Math.min(g.gw - 1, Math.floor(x / cellW))]!++;
  for (let y = 0; y < h; y++) rowPixels[Math.min(g.gh - 1, Math.floor(y / cellH))]!++;
  let gx1 = g.gw;
  let gy1 = g.gh;
  let gx2 = 0;
  let gy2 = 0;
  for (let i = 0; i < pixels.length; i++) {
    if (!pixels[i]) continue;
    const gx = i % g.gw;
    const gy = Math.floor(i / g.gw);
    if (gx < gx1) gx1 = gx;
    if (gx + 1 > gx2) gx2 = gx + 1;
    if (gy < gy1) gy1 = gy;
    if (gy + 1 > gy2) gy2 = gy + 1;
  }
  if (gx2 === 0) return emptyWindow(g, 0, 0, 1, 1);
  const m = emptyWindow(g, gx1, gy1, gx2, gy2);
  for (let yy = 0; yy < m.h; yy++) {
    for (let xx = 0; xx < m.w; xx++) {
      const i = (m.y0 + yy) * g.gw + m.x0 + xx;
      if (pixels[i]) m.data[yy * m.w + xx] = Math.min(FULL, Math.round((FULL * pixels[i]!) / (colPixels[m.x0 + xx]! * rowPixels[m.y0 + yy]!)));
    }
  }
  return m;
}

/** The coverage of a dataset mask, or null when it cannot be read (the caller falls back to the box). */
export function maskCoverage(g: Grid, mask: Mask): Coverage | null {
  try {
    if (mask.format === 'polygon' && mask.polygons) {
      const rings = JSON.parse(mask.polygons) as unknown;
      if (!Array.isArray(rings)) return null;
      const valid = rings.filter((r): r is number[] => Array.isArray(r) && r.length >= 6 && r.every((v) => typeof v === 'number'));
      if (!valid.length) return null;
      // Polygons are drawn on the annotated image: scale when its size differs from the grid's.
      const scaled = mask.width > 0 && mask.height > 0 && (mask.width !== g.width || mask.height !== g.height) ? valid.map((r) => r.map((v, i) => v * (i % 2 ? g.height / mask.height : g.width / mask.width))) : valid;
      return polygonCoverage(g, scaled);
    }
    if (mask.format === 'rle' && mask.rle && mask.height > 0 && mask.width > 0) {
      return rleCoverage(g, decodeRleString(mask.rle), mask.height, mask.width);
    }
  } catch {
    return null;
  }
  return null;
}

/** Sum of coverage, in cells (a full cell counts 1). */
export function area(m: Coverage): number {
  let s = 0;
  const d = m.data;
  for (let i = 0; i < d.length; i++) s += d[i]!;
  return s / FULL;
}

/** Overlap of two coverages, in cells: the smaller coverage per cell, over where both windows meet. */
export function overlap(a: Coverage, b: Coverage): number {
  const x1 = Math.max(a.x0, b.x0);
  const y1 = Math.max(a.y0, b.y0);
  const x2 = Math.min(a.x0 + a.w, b.x0 + b.w);
  const y2 = Math.min(a.y0 + a.h, b.y0 + b.h);
  let s = 0;
  for (let y = y1; y < y2; y++) {
    let ia = (y - a.y0) * a.w + (x1 - a.x0);
    let ib = (y - b.y0) * b.w + (x1 - b.x0);
    for (let x = x1; x < x2; x++, ia++, ib++) {
      const p = a.data[ia]!;
      if (p) {
        const q = b.data[ib]!;
        s += p < q ? p : q;
      }
    }
  }
  return s / FULL;
}

export function iou(a: Coverage, b: Coverage): number {
  const inter = overlap(a, b);
  const u = area(a) + area(b) - inter;
  return u > 0 ? inter / u : 0;
}

/** Cell-wise union (max), for merged objects. */
export function union(a: Coverage, b: Coverage): Coverage {
  const x0 = Math.min(a.x0, b.x0);
  const y0 = Math.min(a.y0, b.y0);
  const w = Math.max(a.x0 + a.w, b.x0 + b.w) - x0;
  const h = Math.max(a.y0 + a.h, b.y0 + b.h) - y0;
  const m: Coverage = { x0, y0, w, h, data: new Uint8Array(w * h) };
  for (const src of [a, b]) {
    for (let y = 0; y < src.h; y++) {
      const to = (src.y0 - y0 + y) * w + (src.x0 - x0);
      for (let x = 0; x < src.w; x++) {
        const v = src.data[y * src.w + x]!;
        if (v > m.data[to + x]!) m.data[to + x] = v;
      }
    }
  }
  return m;
}

/** Coverage-weighted median cell position, normalised to 0..1 of the whole grid (top-left origin). */
export function medianPosition(g: Grid, m: Coverage): { x: number; y: number } | null {
  const cols = new Float64Array(m.w);
  const rows = new Float64Array(m.h);
  const d = m.data;
  let total = 0;
  // Branch-free sums: most cells of a window are covered.
  for (let y = 0, i = 0; y < m.h; y++) {
    let rowSum = 0;
    for (let x = 0; x < m.w; x++, i++) {
      const v = d[i]!;
      cols[x]! += v;
      rowSum += v;
    }
    rows[y] = rowSum;
    total += rowSum;
  }
  if (total <= 0) return null;
  const median = (hist: Float64Array, offset: number, n: number): number => {
    let acc = 0;
    for (let i = 0; i < hist.length; i++) {
      acc += hist[i]!;
      if (acc >= total / 2) {
        // Interpolate inside the cell that crosses the half-way mark.
        const before = acc - hist[i]!;
        return (offset + i + (total / 2 - before) / hist[i]!) / n;
      }
    }
    return (offset + hist.length) / n;
  };
  return { x: median(cols, m.x0, g.gw), y: median(rows, m.y0, g.gh) };
}
