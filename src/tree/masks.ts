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

export type Coverage = Uint8Array;

/** A box (normalised 0..1 corners) as coverage, with partial cells at its edges. */
export function boxCoverage(g: Grid, x1: number, y1: number, x2: number, y2: number): Coverage {
  const m = new Uint8Array(g.gw * g.gh);
  const cx1 = x1 * g.gw;
  const cx2 = x2 * g.gw;
  const cy1 = y1 * g.gh;
  const cy2 = y2 * g.gh;
  for (let gy = Math.floor(cy1); gy < Math.min(g.gh, Math.ceil(cy2)); gy++) {
    const fy = Math.min(gy + 1, cy2) - Math.max(gy, cy1);
    for (let gx = Math.floor(cx1); gx < Math.min(g.gw, Math.ceil(cx2)); gx++) {
      const fx = Math.min(gx + 1, cx2) - Math.max(gx, cx1);
      if (fx > 0 && fy > 0) m[gy * g.gw + gx] = Math.round(FULL * fx * fy);
    }
  }
  return m;
}

/**
 * Polygons (pixel coordinates of the image the grid covers) as coverage:
 * each cell is sampled SUB x SUB times; a sample is inside when any ring
 * contains it (even-odd rule per ring, rings united, as COCO draws them).
 */
export function polygonCoverage(g: Grid, rings: number[][]): Coverage {
  const m = new Uint8Array(g.gw * g.gh);
  const sw = g.gw * SUB;
  const sh = g.gh * SUB;
  const counts = new Uint16Array(g.gw * g.gh);
  const sx = sw / g.width;
  const sy = sh / g.height;
  const crossings: number[] = [];
  for (const ring of rings) {
    const n = ring.length >> 1;
    if (n < 3) continue;
    let minY = Infinity;
    let maxY = -Infinity;
    for (let i = 0; i < n; i++) {
      const y = ring[2 * i + 1]! * sy;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
    const rowStart = Math.max(0, Math.floor(minY));
    const rowEnd = Math.min(sh - 1, Math.ceil(maxY));
    for (let row = rowStart; row <= rowEnd; row++) {
      const y = row + 0.5;
      crossings.length = 0;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const yi = ring[2 * i + 1]! * sy;
        const yj = ring[2 * j + 1]! * sy;
        if (yi > y !== yj > y) {
          const xi = ring[2 * i]! * sx;
          const xj = ring[2 * j]! * sx;
          crossings.push(xi + ((y - yi) / (yj - yi)) * (xj - xi));
        }
      }
      crossings.sort((a, b) => a - b);
      const gy = (row / SUB) | 0;
      for (let k = 0; k + 1 < crossings.length; k += 2) {
        // Samples at x + 0.5 between the two crossings.
        const from = Math.max(0, Math.ceil(crossings[k]! - 0.5));
        const to = Math.min(sw - 1, Math.floor(crossings[k + 1]! - 0.5));
        for (let col = from; col <= to; col++) {
          const idx = gy * g.gw + ((col / SUB) | 0);
          // Overlapping rings (rare in COCO) may count a sample twice; a cell is capped at full below.
          counts[idx]!++;
        }
      }
    }
  }
  const perCell = SUB * SUB;
  for (let i = 0; i < counts.length; i++) if (counts[i]) m[i] = Math.round((FULL * Math.min(counts[i]!, perCell)) / perCell);
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
  const m = new Uint8Array(g.gw * g.gh);
  for (let i = 0; i < pixels.length; i++) {
    if (pixels[i]) m[i] = Math.min(FULL, Math.round((FULL * pixels[i]!) / (colPixels[i % g.gw]! * rowPixels[Math.floor(i / g.gw)]!)));
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
  for (let i = 0; i < m.length; i++) s += m[i]!;
  return s / FULL;
}

/** Overlap of two coverages, in cells: the smaller coverage per cell. */
export function overlap(a: Coverage, b: Coverage): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if (x) {
      const y = b[i]!;
      s += x < y ? x : y;
    }
  }
  return s / FULL;
}

/** Overlap counted only over the cells of a box (normalised corners): where one mask lives. */
export function overlapIn(g: Grid, a: Coverage, b: Coverage, x1: number, y1: number, x2: number, y2: number): number {
  let s = 0;
  const gx1 = Math.max(0, Math.floor(x1 * g.gw));
  const gx2 = Math.min(g.gw, Math.ceil(x2 * g.gw));
  const gy1 = Math.max(0, Math.floor(y1 * g.gh));
  const gy2 = Math.min(g.gh, Math.ceil(y2 * g.gh));
  for (let gy = gy1; gy < gy2; gy++) {
    for (let i = gy * g.gw + gx1, end = gy * g.gw + gx2; i < end; i++) {
      const x = a[i]!;
      if (x) {
        const y = b[i]!;
        s += x < y ? x : y;
      }
    }
  }
  return s / FULL;
}

export function iou(a: Coverage, b: Coverage): number {
  const inter = overlap(a, b);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** Cell-wise union (max), for merged objects. */
export function union(a: Coverage, b: Coverage): Coverage {
  const m = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) m[i] = a[i]! > b[i]! ? a[i]! : b[i]!;
  return m;
}

/** Coverage-weighted median cell position, normalised to 0..1 (top-left origin). */
export function medianPosition(g: Grid, m: Coverage): { x: number; y: number } | null {
  const total = area(m) * FULL;
  if (total <= 0) return null;
  const cols = new Float64Array(g.gw);
  const rows = new Float64Array(g.gh);
  for (let gy = 0; gy < g.gh; gy++) {
    for (let gx = 0; gx < g.gw; gx++) {
      const v = m[gy * g.gw + gx]!;
      if (v) {
        cols[gx]! += v;
        rows[gy]! += v;
      }
    }
  }
  const median = (hist: Float64Array, n: number): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      acc += hist[i]!;
      if (acc >= total / 2) {
        // Interpolate inside the cell that crosses the half-way mark.
        const before = acc - hist[i]!;
        return (i + (total / 2 - before) / hist[i]!) / n;
      }
    }
    return 1;
  };
  return { x: median(cols, g.gw), y: median(rows, g.gh) };
}
