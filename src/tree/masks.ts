import { decodeRleString } from '../masks/rle.js';
import type { Mask } from '../types.js';

/**
 * Object masks at a reduced resolution: the image is covered by a grid whose
 * longer side has `GRID_MAX` cells (aspect kept), and each cell holds how
 * much of it the object covers (0..255). 128 cells: a mask costs at most
 * 16 KB, positions resolve to under 1% of the image (the tree rounds them to
 * 5%), and because cells hold coverage rather than yes/no, areas stay close
 * to the true pixel counts (RLE coverage is counted exactly per cell, and
 * so is the area of polygons).
 */
export const GRID_MAX = 128;
const FULL = 255;

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
  /**
   * Row and column sums of `data`, once known: the area and the median
   * position both read them, and polygon coverage fills them in the same
   * pass that writes the cells (a window is never changed once made).
   */
  sums?: Marginals;
}

interface Marginals {
  cols: Float64Array;
  rows: Float64Array;
  total: number;
}

/**
 * Windows and their sums are cut from shared slabs rather than made as
 * typed arrays of their own: V8 takes 1.3-2 microseconds to make a small
 * typed array (a backing store of its own, zeroed and tracked for the
 * collector) against about 0.1 for a view into an existing one, and polygon
 * coverage made four per object, which was more than half its time. A slab
 * is never handed out twice: when one is used up the next is made, and the
 * old one is freed once no window refers to it (windows live as long as one
 * tree is being built). Views come out zeroed, as new arrays would.
 */
const SLAB_BYTES = 1 << 20;

class Slab<A extends Uint8Array | Float64Array> {
  private slab: A;
  private used = 0;
  constructor(
    private readonly make: (length: number) => A,
    private readonly length: number,
  ) {
    this.slab = make(length);
  }
  /** A zeroed view of n elements; large requests (over a sixteenth of a slab) get an array of their own. */
  take(n: number): A {
    if (n > this.length >> 4) return this.make(n);
    if (this.used + n > this.length) {
      this.slab = this.make(this.length);
      this.used = 0;
    }
    const v = this.slab.subarray(this.used, this.used + n) as A;
    this.used += n;
    return v;
  }
}

const byteSlab = new Slab((n) => new Uint8Array(n), SLAB_BYTES);
const floatSlab = new Slab((n) => new Float64Array(n), SLAB_BYTES >> 3);
const takeBytes = (n: number): Uint8Array => byteSlab.take(n);
const takeFloats = (n: number): Float64Array => floatSlab.take(n);

function marginals(m: Coverage): Marginals {
  if (m.sums) return m.sums;
  const cols = takeFloats(m.w);
  const rows = takeFloats(m.h);
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
  return (m.sums = { cols, rows, total });
}

function emptyWindow(g: Grid, cx1: number, cy1: number, cx2: number, cy2: number): Coverage {
  const x0 = Math.max(0, Math.min(g.gw - 1, Math.floor(cx1)));
  const y0 = Math.max(0, Math.min(g.gh - 1, Math.floor(cy1)));
  const x1 = Math.max(x0 + 1, Math.min(g.gw, Math.ceil(cx2)));
  const y1 = Math.max(y0 + 1, Math.min(g.gh, Math.ceil(cy2)));
  return { x0, y0, w: x1 - x0, h: y1 - y0, data: takeBytes((x1 - x0) * (y1 - y0)) };
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

// Scratch space for polygon coverage, reused across calls (one thread each):
// signed area per cell, rows of width w + 2 (an edge at the window's right
// side spills into the two extra cells), and the union of several rings.
let accBuf = new Float32Array(GRID_MAX * (GRID_MAX + 2));
let unionBuf = new Float64Array(GRID_MAX * GRID_MAX);

/**
 * The cells each row's edges touched, as up to MAX_SPANS [first, last]
 * pairs per row (a row with more is marked SPANS_OVERFLOW and scanned whole).
 * Every other cell of the row holds 0 in the signed-area buffer, so the
 * running sum is constant across it: the single-ring pass fills such runs
 * without reading them. Scanning them for zeros was 38% of polygon
 * coverage's own time.
 */
const MAX_SPANS = 8;
const SPANS_OVERFLOW = MAX_SPANS + 1;
let spanBuf = new Int32Array(GRID_MAX * MAX_SPANS * 2);
let spanCount = new Int32Array(GRID_MAX);

function noteSpan(y: number, first: number, last: number): void {
  const k = spanCount[y]!;
  if (k >= MAX_SPANS) {
    spanCount[y] = SPANS_OVERFLOW;
    return;
  }
  const at = (y * MAX_SPANS + k) * 2;
  spanBuf[at] = first;
  spanBuf[at + 1] = last;
  spanCount[y] = k + 1;
}

/**
 * Add one polygon edge (window cell coordinates) to the signed-area buffer:
 * for every row it crosses, each cell gets the share of the row's height
 * the edge passes times the part of the cell to the edge's right, so that a
 * running sum along the row is the exact covered fraction of each cell (the
 * accumulation rasteriser of font-rs). Parts of an edge left of the window
 * count as on its left side, right of it as on its right side; rows outside
 * the window are skipped.
 */
function addEdge(acc: Float32Array, stride: number, w: number, h: number, xStart: number, yStart: number, xEnd: number, yEnd: number): void {
  if (yStart === yEnd) return;
  let x0 = xStart;
  let y0 = yStart;
  let y1 = yEnd;
  let dir = 1;
  if (y0 > y1) {
    x0 = xEnd;
    y0 = yEnd;
    y1 = yStart;
    dir = -1;
  }
  const dxdy = ((dir === 1 ? xEnd : xStart) - x0) / (y1 - y0);
  let x = x0;
  if (y0 < 0) {
    x -= y0 * dxdy;
    y0 = 0;
  }
  if (y1 > h) y1 = h;
  for (let y = Math.floor(y0); y < y1; y++) {
    const line = y * stride;
    const dy = Math.min(y + 1, y1) - Math.max(y, y0);
    const xNext = x + dxdy * dy;
    const d = dy * dir;
    let xa = x < xNext ? x : xNext;
    let xb = x < xNext ? xNext : x;
    xa = xa < 0 ? 0 : xa > w ? w : xa;
    xb = xb < 0 ? 0 : xb > w ? w : xb;
    const xaFloor = Math.floor(xa);
    const ia = xaFloor | 0;
    const xbCeil = Math.ceil(xb);
    const ib = xbCeil | 0;
    if (ib <= ia + 1) {
      // Within one cell: split by where the edge's middle falls.
      const mid = 0.5 * (xa + xb) - xaFloor;
      acc[line + ia]! += d - d * mid;
      acc[line + ia + 1]! += d * mid;
      noteSpan(y, ia, ia + 1);
    } else {
      noteSpan(y, ia, ib);
      const s = 1 / (xb - xa);
      const fa = xa - xaFloor;
      const a0 = 0.5 * s * (1 - fa) * (1 - fa);
      const fb = xb - xbCeil + 1;
      const am = 0.5 * s * fb * fb;
      acc[line + ia]! += d * a0;
      if (ib === ia + 2) acc[line + ia + 1]! += d * (1 - a0 - am);
      else {
        const a1 = s * (1.5 - fa);
        acc[line + ia + 1]! += d * (a1 - a0);
        for (let i = ia + 2; i < ib - 1; i++) acc[line + i]! += d * s;
        const a2 = a1 + (ib - ia - 3) * s;
        acc[line + ib - 1]! += d * (1 - a2 - am);
      }
      acc[line + ib]! += d * am;
    }
    x = xNext;
  }
}

/** A cell's coverage (0..255) from the running signed area at it (its sign is the ring's direction). */
function coverageByte(sum: number): number {
  const c = sum < 0 ? -sum : sum;
  return c >= 1 ? FULL : (c * FULL + 0.5) | 0;
}

/**
 * Cells [from, to) of the row starting at `row` all get `v`: one fill, and
 * their column sums go in through the difference array `runCols`. Returns
 * what they add to the row's sum.
 */
function fillRun(data: Uint8Array, runCols: Float64Array, row: number, from: number, to: number, v: number): number {
  if (!v) return 0;
  data.fill(v, row + from, row + to);
  runCols[from]! += v;
  runCols[to]! -= v;
  return v * (to - from);
}

/** Order row y's spans by their first cell (a handful each: insertion sort). */
function sortSpans(y: number, n: number): void {
  const base = y * MAX_SPANS * 2;
  for (let i = 1; i < n; i++) {
    const first = spanBuf[base + 2 * i]!;
    const last = spanBuf[base + 2 * i + 1]!;
    let j = i - 1;
    while (j >= 0 && spanBuf[base + 2 * j]! > first) {
      spanBuf[base + 2 * j + 2] = spanBuf[base + 2 * j]!;
      spanBuf[base + 2 * j + 3] = spanBuf[base + 2 * j + 1]!;
      j--;
    }
    spanBuf[base + 2 * j + 2] = first;
    spanBuf[base + 2 * j + 3] = last;
  }
}

/**
 * Polygon rings as one flat list of coordinates: ring r is
 * `coords[starts[r] .. starts[r + 1])`, x, y, x, y, ... One set of scratch
 * arrays per thread, filled anew for each mask (by `readPolygonText` or
 * from arrays) and read before the next.
 */
interface FlatRings {
  coords: Float64Array;
  starts: Int32Array;
  count: number;
}

const flat: FlatRings = { coords: new Float64Array(4096), starts: new Int32Array(64), count: 0 };

/** Make room for `coords` numbers and for ring starts up to index `rings` (the end mark included). */
function flatRoom(coords: number, rings: number): void {
  if (coords > flat.coords.length) {
    const bigger = new Float64Array(Math.max(coords, flat.coords.length * 2));
    bigger.set(flat.coords);
    flat.coords = bigger;
  }
  if (rings + 1 > flat.starts.length) {
    const bigger = new Int32Array(Math.max(rings + 1, flat.starts.length * 2));
    bigger.set(flat.starts);
    flat.starts = bigger;
  }
}

function flatFrom(rings: readonly (readonly number[])[]): FlatRings {
  let total = 0;
  for (const r of rings) total += r.length;
  flatRoom(total, rings.length);
  let k = 0;
  for (let r = 0; r < rings.length; r++) {
    flat.starts[r] = k;
    flat.coords.set(rings[r]!, k);
    k += rings[r]!.length;
  }
  flat.starts[rings.length] = k;
  flat.count = rings.length;
  return flat;
}

/** 10^0 .. 10^22: the powers of ten a double holds exactly. */
const EXACT_POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * Polygon text as datasets write it, `[[x,y,x,y,...],...]`, read straight
 * into the flat scratch arrays: no arrays are made, and numbers of up to 15
 * significant digits without an exponent (all of COCO's) are exact as one
 * integer divided by a power of ten (both exact in a double, the division
 * correctly rounded), the value `JSON.parse` gives; longer ones and
 * exponents go through `Number`. Rings of fewer than 6 numbers are dropped,
 * as the JSON path drops them. Null for anything else (nulls, strings,
 * deeper nesting, bad JSON): the caller then parses it as JSON. Half the
 * time of `JSON.parse` and the filter on COCO-like polygons (0.9-1.3
 * against 1.6-2.7 microseconds). The result is the thread's scratch: read
 * it before the next call.
 */
export function readPolygonText(s: string): FlatRings | null {
  let coords = flat.coords;
  let k = 0;
  let rings = 0;
  let i = skipSpace(s, 0);
  if (s.charCodeAt(i) !== 0x5b) return null;
  i = skipSpace(s, i + 1);
  // After an item, a list goes on (',') or ends (']'); the outer list may be empty.
  let moreRings = s.charCodeAt(i) !== 0x5d;
  if (!moreRings) i++;
  while (moreRings) {
    if (s.charCodeAt(i) !== 0x5b) return null;
    i = skipSpace(s, i + 1);
    const ringStart = k;
    let moreNumbers = s.charCodeAt(i) !== 0x5d;
    if (!moreNumbers) i++;
    while (moreNumbers) {
      const numStart = i;
      let c = s.charCodeAt(i);
      const negative = c === 0x2d;
      if (negative) c = s.charCodeAt(++i);
      if (c < 0x30 || c > 0x39) return null;
      // JSON has no leading zeros ("012").
      if (c === 0x30 && isDigit(s.charCodeAt(i + 1))) return null;
      let mantissa = 0;
      let digits = 0;
      let decimals = 0;
      for (; c >= 0x30 && c <= 0x39; c = s.charCodeAt(++i), digits++) mantissa = mantissa * 10 + (c - 0x30);
      if (c === 0x2e) {
        c = s.charCodeAt(++i);
        if (!isDigit(c)) return null;
        for (; c >= 0x30 && c <= 0x39; c = s.charCodeAt(++i), digits++, decimals++) mantissa = mantissa * 10 + (c - 0x30);
      }
      let v: number;
      if (c === 0x65 || c === 0x45 || digits > 15) {
        if (c === 0x65 || c === 0x45) {
          c = s.charCodeAt(++i);
          if (c === 0x2b || c === 0x2d) c = s.charCodeAt(++i);
          if (!isDigit(c)) return null;
          while (isDigit(c)) c = s.charCodeAt(++i);
        }
        v = Number(s.slice(numStart, i));
      } else {
        v = decimals ? mantissa / EXACT_POW10[decimals]! : mantissa;
        if (negative) v = -v;
      }
      if (k >= coords.length) {
        flatRoom(k + 1, rings);
        coords = flat.coords;
      }
      coords[k++] = v;
      i = skipSpace(s, i);
      c = s.charCodeAt(i++);
      if (c === 0x2c) i = skipSpace(s, i);
      else if (c === 0x5d) moreNumbers = false;
      else return null;
    }
    if (k - ringStart >= 6) {
      flatRoom(k, rings + 1);
      flat.starts[rings++] = ringStart;
    } else k = ringStart;
    i = skipSpace(s, i);
    const c = s.charCodeAt(i++);
    if (c === 0x2c) i = skipSpace(s, i);
    else if (c === 0x5d) moreRings = false;
    else return null;
  }
  if (skipSpace(s, i) !== s.length) return null;
  flat.starts[rings] = k;
  flat.count = rings;
  return flat;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The index of the first character at or after `i` that is not JSON whitespace. */
function skipSpace(s: string, i: number): number {
  for (let c = s.charCodeAt(i); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = s.charCodeAt(++i));
  return i;
}

/**
 * Polygons (pixel coordinates of the image the grid covers) as coverage:
 * the exact fraction of each cell inside, from signed areas accumulated
 * along each row (cost: the rows each edge crosses plus one pass over the
 * window, whatever the object's size). Several rings are united, as COCO
 * draws them; within a ring, crossings follow the non-zero rule.
 */
export function polygonCoverage(g: Grid, rings: readonly (readonly number[])[]): Coverage {
  return ringsCoverage(g, flatFrom(rings));
}

function ringsCoverage(g: Grid, rings: FlatRings): Coverage {
  const { coords, starts, count } = rings;
  const kx = g.gw / g.width;
  const ky = g.gh / g.height;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let r = 0; r < count; r++) {
    for (let i = starts[r]!, end = starts[r + 1]!; i + 1 < end; i += 2) {
      const x = coords[i]! * kx;
      const y = coords[i + 1]! * ky;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
  }
  const m = emptyWindow(g, minX, minY, maxX, maxY);
  const stride = m.w + 2;
  const cellsN = m.w * m.h;
  if (accBuf.length < stride * m.h) accBuf = new Float32Array(stride * m.h);
  if (unionBuf.length < cellsN) unionBuf = new Float64Array(cellsN);
  const acc = accBuf;
  const several = count > 1;
  if (several) unionBuf.fill(0, 0, cellsN);
  if (spanCount.length < m.h) {
    spanCount = new Int32Array(m.h);
    spanBuf = new Int32Array(m.h * MAX_SPANS * 2);
  }
  const data = m.data;
  const cols = takeFloats(m.w);
  const rows = takeFloats(m.h);
  let total = 0;
  for (let r = 0; r < count; r++) {
    const at = starts[r]!;
    const n = (starts[r + 1]! - at) >> 1;
    if (n < 3) continue;
    acc.fill(0, 0, stride * m.h);
    spanCount.fill(0, 0, m.h);
    for (let i = 0, j = n - 1; i < n; j = i++) {
      addEdge(acc, stride, m.w, m.h, coords[at + 2 * j]! * kx - m.x0, coords[at + 2 * j + 1]! * ky - m.y0, coords[at + 2 * i]! * kx - m.x0, coords[at + 2 * i + 1]! * ky - m.y0);
    }
    // The running sum along a row is the covered fraction of each cell (its sign is the ring's direction).
    if (!several) {
      // Between the cells an edge touches, the running sum does not change:
      // such a run is found by its zeros, written with one fill, and added
      // to the column sums through a difference array (`runCols`), so the
      // full per-cell work is only done where edges are.
      const runCols = takeFloats(m.w + 1);
      for (let y = 0, row = 0; y < m.h; y++, row += m.w) {
        let sum = 0;
        let rowSum = 0;
        const base = y * stride;
        const spans = spanCount[y]!;
        if (spans <= MAX_SPANS) {
          // Only the touched cells are read; between them the sum holds, so a run is one fill.
          sortSpans(y, spans);
          let x = 0;
          for (let k = 0; k < spans && x < m.w; k++) {
            const at = (y * MAX_SPANS + k) * 2;
            const first = spanBuf[at]! > x ? spanBuf[at]! : x;
            const last = spanBuf[at + 1]! < m.w - 1 ? spanBuf[at + 1]! : m.w - 1;
            if (last < first) continue;
            if (first > x) rowSum += fillRun(data, runCols, row, x, first, coverageByte(sum));
            for (let cx = first; cx <= last; cx++) {
              sum += acc[base + cx]!;
              const v = coverageByte(sum);
              data[row + cx] = v;
              cols[cx]! += v;
              rowSum += v;
            }
            x = last + 1;
          }
          if (x < m.w) rowSum += fillRun(data, runCols, row, x, m.w, coverageByte(sum));
          rows[y] = rowSum;
          total += rowSum;
          continue;
        }
        for (let x = 0; x < m.w; ) {
          const d = acc[base + x]!;
          if (d === 0) {
            let e = x + 1;
            while (e < m.w && acc[base + e] === 0) e++;
            rowSum += fillRun(data, runCols, row, x, e, coverageByte(sum));
            x = e;
            continue;
          }
          sum += d;
          const v = coverageByte(sum);
          data[row + x] = v;
          cols[x]! += v;
          rowSum += v;
          x++;
        }
        rows[y] = rowSum;
        total += rowSum;
      }
      for (let x = 0, run = 0; x < m.w; x++) {
        run += runCols[x]!;
        cols[x]! += run;
      }
    } else {
      for (let y = 0, i = 0; y < m.h; y++) {
        let sum = 0;
        for (let a = y * stride, end = a + m.w; a < end; a++, i++) {
          sum += acc[a]!;
          const c = sum < 0 ? -sum : sum;
          unionBuf[i]! += c > 1 ? 1 : c;
        }
      }
    }
  }
  if (several) {
    for (let i = 0; i < cellsN; i++) {
      const c = unionBuf[i]!;
      data[i] = c >= 1 ? FULL : (c * FULL + 0.5) | 0;
    }
    return m;
  }
  // One ring (or none drawable: all sums 0), summed as it was written.
  m.sums = { cols, rows, total };
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
      let rings = readPolygonText(mask.polygons);
      if (rings === null) {
        // Not plain numeric rings: JSON decides, and rings that are not lists of 6 or more numbers are left out.
        const parsed = JSON.parse(mask.polygons) as unknown;
        if (!Array.isArray(parsed)) return null;
        rings = flatFrom(parsed.filter((r): r is number[] => Array.isArray(r) && r.length >= 6 && r.every((v) => typeof v === 'number')));
      }
      if (!rings.count) return null;
      // Polygons are drawn on the annotated image: scale when its size differs from the grid's.
      if (mask.width > 0 && mask.height > 0 && (mask.width !== g.width || mask.height !== g.height)) {
        const sx = g.width / mask.width;
        const sy = g.height / mask.height;
        for (let r = 0; r < rings.count; r++) {
          for (let i = rings.starts[r]!, end = rings.starts[r + 1]!, odd = false; i < end; i++, odd = !odd) rings.coords[i]! *= odd ? sy : sx;
        }
      }
      return ringsCoverage(g, rings);
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
  return marginals(m).total / FULL;
}

/**
 * Overlap of two coverages, in cells: the smaller coverage per cell, over
 * where both windows meet. With `stopArea` and `stopShare` it stops after
 * the first row where overlap / stopArea passes stopShare (the containment
 * test) and returns the overlap so far: the sum only grows, so the test
 * gives the answer the whole sum would. Most such tests in COCO-like images
 * pass (87%), usually long before the last row.
 */
export function overlap(a: Coverage, b: Coverage, stopArea = 1, stopShare = Infinity): number {
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
    if (s / FULL / stopArea > stopShare) break;
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
  const m: Coverage = { x0, y0, w, h, data: takeBytes(w * h) };
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
  const { cols, rows, total } = marginals(m);
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
