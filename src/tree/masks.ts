import { decodeRleString } from '../records/rle.js';
import type { Mask } from '../types.js';

/**
 * Object masks as row spans on a reduced grid. The image is covered by a
 * grid whose longer side has `GRID_MAX` cells (aspect kept); each grid row
 * is sampled along its middle line (y = row + 0.5), and a mask holds, per
 * row, the stretches of that line the object covers, with their ends exact
 * (continuous cell units, not rounded to cells).
 *
 * Why spans and not a grid of cells: a polygon becomes spans from where its
 * edges cross the sample lines, so making one costs the rows it spans, not
 * the cells it covers; overlap, union and the median position cost the
 * spans, a few per row. Filling exact per-cell coverage was 60% of the
 * tree's time. What sampling loses is the part of a row between its sample
 * line and the row's edges: areas are therefore taken from the shapes
 * themselves where they give one (a box; a polygon ring inside the image,
 * by the shoelace formula; RLE, by counting its pixels), and only fall back
 * to the spans' sum where they do not (rings that cross the image edge,
 * overlap each other, or cross themselves). An object thinner than a row is
 * sampled once, through its middle, so it never vanishes.
 *
 * 128 rows and columns: positions resolve to under 1% of the image (the
 * tree rounds them to 5%), and a mask costs a few hundred bytes.
 */
export const GRID_MAX = 128;

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
 * What an object covers: rows y0 .. y0 + h - 1 of the grid, row y0 + r
 * holding the spans `spans[2k], spans[2k + 1]` (from, to; in cells, left to
 * right, not overlapping) for k in starts[s0 + r] .. starts[s0 + r + 1] - 1.
 * `starts` and `spans` are shared slabs (other masks live elsewhere in
 * them), so a mask is read only through these indices. Never changed once
 * made.
 */
export interface Coverage {
  y0: number;
  h: number;
  starts: Int32Array;
  /** Where row 0's entry is in `starts`. */
  s0: number;
  spans: Float64Array;
  /** The object's area in cells: exact where the shape gives it, else `spanArea`. */
  area: number;
  /** The spans' total length (each row counts 1 high): what overlaps are measured against. */
  spanArea: number;
  /** The spans' median position, normalised to 0..1 of the whole grid (top-left origin); NaN without spans. */
  mx: number;
  my: number;
}

/**
 * Masks are written straight into shared slabs, one for row starts and one
 * for spans, and refer to their stretch by index: no typed array is made
 * per mask. V8 takes 1.3-2 microseconds to make a small typed array (a
 * backing store of its own, zeroed and tracked for the collector) and about
 * 0.1 for a view into an existing one; with views, a mask cost four (two
 * kept, two to copy from the scratch it was made in), 390 bytes and about
 * 0.5 microseconds. Writing in place also leaves nothing to copy. A slab is
 * never handed out twice: when the next mask does not fit, a new one is
 * made, and the old one is freed once no mask refers to it (masks live as
 * long as one tree is being built). A mask too large for a sixteenth of a
 * slab gets arrays of its own.
 */
const START_SLAB = 1 << 18;
const SPAN_SLAB = 1 << 17;
let startSlab = new Int32Array(START_SLAB);
let startUsed = 0;
let spanSlab = new Float64Array(SPAN_SLAB);
/** Doubles of spanSlab in use (always even). */
let spanUsed = 0;

/**
 * The mask being made (one per thread at a time): row k's entry goes to
 * outStarts[rowBase + k], holding an index of a span pair in outSpans;
 * pairs are written from pair index outCount on (outCount starts where the
 * mask's room starts and is the next pair's index).
 */
let outStarts = startSlab;
let rowBase = 0;
let outSpans = spanSlab;
let outCount = 0;
let ownStarts = false;
let ownSpans = false;

/** Room for a mask of `rows` rows and at most `maxPairs` spans. */
function beginMask(rows: number, maxPairs: number): void {
  ownStarts = rows + 1 > START_SLAB >> 4;
  if (ownStarts) {
    outStarts = new Int32Array(rows + 1);
    rowBase = 0;
  } else {
    if (startUsed + rows + 1 > START_SLAB) {
      startSlab = new Int32Array(START_SLAB);
      startUsed = 0;
    }
    outStarts = startSlab;
    rowBase = startUsed;
  }
  ownSpans = 2 * maxPairs > SPAN_SLAB >> 4;
  if (ownSpans) {
    outSpans = new Float64Array(2 * maxPairs);
    outCount = 0;
  } else {
    if (spanUsed + 2 * maxPairs > SPAN_SLAB) {
      spanSlab = new Float64Array(SPAN_SLAB);
      spanUsed = 0;
    }
    outSpans = spanSlab;
    outCount = spanUsed >> 1;
  }
}

/** Where the slabs stood: what `releaseMasks` goes back to. */
export interface MaskMark {
  startSlab: Int32Array;
  startUsed: number;
  spanSlab: Float64Array;
  spanUsed: number;
}

/** Mark the slabs before making masks that will all be dropped together (a tree's). */
export function markMasks(): MaskMark {
  return { startSlab, startUsed, spanSlab, spanUsed };
}

/**
 * Every mask made since `mark` is dropped: their room is used again. Masks
 * made before the mark stay as they are: a slab still in use goes back to
 * where it stood, and a slab begun since holds only the dropped masks. A
 * tree's masks are made and dropped within one tree, so its slabs stay the
 * same memory, in the cache, rather than a fresh megabyte (zeroed, and
 * counted against the collector's external memory) every few trees.
 */
export function releaseMasks(mark: MaskMark): void {
  startUsed = startSlab === mark.startSlab ? mark.startUsed : 0;
  spanUsed = spanSlab === mark.spanSlab ? mark.spanUsed : 0;
}

/** Add a span to the mask being made (within the room beginMask was given). */
function pushSpan(from: number, to: number): void {
  outSpans[2 * outCount] = from;
  outSpans[2 * outCount + 1] = to;
  outCount++;
}

/**
 * The mask made: rows y0 .. y0 + h - 1, with their h + 1 entries of
 * outStarts written. Its median position is taken now, while its spans are
 * in the cache.
 */
function finishMask(g: Grid, y0: number, h: number, area: number, spanArea: number): Coverage {
  if (!ownStarts) startUsed = rowBase + h + 1;
  if (!ownSpans) spanUsed = 2 * outCount;
  spansMedian(g, y0, h, outStarts, rowBase, outSpans, spanArea);
  return { y0, h, starts: outStarts, s0: rowBase, spans: outSpans, area, spanArea, mx: medianX, my: medianY };
}

/** The spans of row `r` of a mask (0 .. h - 1), as [from, to] pairs: for tests and inspection. */
export function rowSpans(m: Coverage, r: number): [number, number][] {
  const out: [number, number][] = [];
  if (r < 0 || r >= m.h) return out;
  for (let k = m.starts[m.s0 + r]!; k < m.starts[m.s0 + r + 1]!; k++) out.push([m.spans[2 * k]!, m.spans[2 * k + 1]!]);
  return out;
}

/** How many spans a mask holds. */
export function spanCount(m: Coverage): number {
  return m.starts[m.s0 + m.h]! - m.starts[m.s0]!;
}

const EMPTY: Coverage = { y0: 0, h: 0, starts: new Int32Array(1), s0: 0, spans: new Float64Array(0), area: 0, spanArea: 0, mx: NaN, my: NaN };

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
 * deeper nesting, bad JSON, characters past ASCII): the caller then
 * parses it as JSON. On COCO-like polygons (142 characters) 0.7
 * microseconds against 1.2 for `JSON.parse` alone. The result is the
 * thread's scratch: read it before the next call.
 */
export function readPolygonText(s: string): FlatRings | null {
  // Read as bytes: charCodeAt checks the string's kind at every character,
  // and reading the text through it took 1.0 microseconds per COCO-like
  // polygon against 0.7 copied out as bytes first. Text that is not all
  // ASCII is no ring of numbers; it goes to JSON whole, as does text of
  // over a million characters (the scratch, 3 bytes a character, lives as
  // long as the thread).
  if (s.length > 1 << 20) return null;
  if (textBytes.length < 3 * s.length + 1) textBytes = Buffer.allocUnsafe(Math.max(3 * s.length + 1, 2 * textBytes.length));
  const t = textBytes;
  const n = t.write(s, 0, 'utf8');
  if (n !== s.length) return null;
  // A zero after the text: every test below fails on it, so no reading runs past the end.
  t[n] = 0;
  let coords = flat.coords;
  let k = 0;
  let rings = 0;
  let i = skipSpace(t, 0);
  if (t[i] !== 0x5b) return null;
  i = skipSpace(t, i + 1);
  // After an item, a list goes on (',') or ends (']'); the outer list may be empty.
  let moreRings = t[i] !== 0x5d;
  if (!moreRings) i++;
  while (moreRings) {
    if (t[i] !== 0x5b) return null;
    i = skipSpace(t, i + 1);
    const ringStart = k;
    let moreNumbers = t[i] !== 0x5d;
    if (!moreNumbers) i++;
    while (moreNumbers) {
      const numStart = i;
      let c = t[i]!;
      const negative = c === 0x2d;
      if (negative) c = t[++i]!;
      if (c < 0x30 || c > 0x39) return null;
      // JSON has no leading zeros ("012").
      if (c === 0x30 && isDigit(t[i + 1]!)) return null;
      let mantissa = 0;
      let digits = 0;
      let decimals = 0;
      for (; c >= 0x30 && c <= 0x39; c = t[++i]!, digits++) mantissa = mantissa * 10 + (c - 0x30);
      if (c === 0x2e) {
        c = t[++i]!;
        if (!isDigit(c)) return null;
        for (; c >= 0x30 && c <= 0x39; c = t[++i]!, digits++, decimals++) mantissa = mantissa * 10 + (c - 0x30);
      }
      let v: number;
      if (c === 0x65 || c === 0x45 || digits > 15) {
        if (c === 0x65 || c === 0x45) {
          c = t[++i]!;
          if (c === 0x2b || c === 0x2d) c = t[++i]!;
          if (!isDigit(c)) return null;
          while (isDigit(c)) c = t[++i]!;
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
      i = skipSpace(t, i);
      c = t[i++]!;
      if (c === 0x2c) i = skipSpace(t, i);
      else if (c === 0x5d) moreNumbers = false;
      else return null;
    }
    if (k - ringStart >= 6) {
      flatRoom(k, rings + 1);
      flat.starts[rings++] = ringStart;
    } else k = ringStart;
    i = skipSpace(t, i);
    const c = t[i++]!;
    if (c === 0x2c) i = skipSpace(t, i);
    else if (c === 0x5d) moreRings = false;
    else return null;
  }
  if (skipSpace(t, i) !== n) return null;
  flat.starts[rings] = k;
  flat.count = rings;
  return flat;
}

/** This thread's scratch for polygon text as bytes. */
let textBytes = Buffer.allocUnsafe(4096);

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The index of the first byte at or after `i` that is not JSON whitespace. */
function skipSpace(t: Uint8Array, i: number): number {
  for (let c = t[i]; c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = t[++i]);
  return i;
}

// Scratch for sampling polygons (one thread each): per row, where edges
// cross its sample line (x, and ring << 1 | 1 for an edge going down the
// image); per ring, its winding number so far, where it went inside, and
// the length it covers on the sampled lines.
let crossX = new Float64Array(1024);
let crossTag = new Int32Array(1024);
let rowFill = new Int32Array(GRID_MAX + 2);
let ringWind = new Int32Array(64);
let ringFrom = new Float64Array(64);
let ringLen = new Float64Array(64);
let ringShoelace = new Float64Array(64);

/**
 * Polygons (pixel coordinates of the image the grid covers) as spans. Each
 * edge is sampled on the lines y = row + shift it crosses (half-open in y,
 * so a vertex on a line counts once); along a line the crossings, in x
 * order, give each ring's inside by the non-zero rule, and the rings are
 * united, as COCO draws them. Cost: the rows each edge crosses, plus the
 * crossings of each row; not the cells covered.
 */
export function polygonCoverage(g: Grid, rings: readonly (readonly number[])[]): Coverage {
  return ringsCoverage(g, flatFrom(rings));
}

/**
 * The edges of the rings being sampled (one thread's scratch), each once:
 * the first sample line it crosses and the line after its last, where it
 * starts, its slope (x per line), and its ring and direction as a tag
 * (ring << 1 | 1 going down the image). Edges along a line cross none and
 * are left out; ring r's edges are ringEdges[r] .. ringEdges[r + 1] - 1.
 * Every pass over a polygon reads this table, so the geometry of which
 * lines an edge crosses is worked out in one place.
 */
let edgeFirst = new Int32Array(256);
let edgeStop = new Int32Array(256);
let edgeX = new Float64Array(256);
let edgeY = new Float64Array(256);
let edgeSlope = new Float64Array(256);
let edgeTag = new Int32Array(256);
let ringEdges = new Int32Array(65);

/** Fill the edge table for lines y = row + shift, rows rowLo .. rowHi - 1, and each ring's shoelace area; the number of edges kept. */
function tabulateEdges(rings: FlatRings, rowLo: number, rowHi: number, shift: number): number {
  const { coords, starts, count } = rings;
  if (edgeFirst.length < (starts[count]! >> 1)) {
    const n = Math.max(starts[count]! >> 1, edgeFirst.length * 2);
    edgeFirst = new Int32Array(n);
    edgeStop = new Int32Array(n);
    edgeX = new Float64Array(n);
    edgeY = new Float64Array(n);
    edgeSlope = new Float64Array(n);
    edgeTag = new Int32Array(n);
  }
  if (ringEdges.length < count + 1) ringEdges = new Int32Array(count + 1);
  let e = 0;
  for (let r = 0; r < count; r++) {
    ringEdges[r] = e;
    // The ring's last x, y pair (an odd number left at its end is not a point).
    const at = starts[r]!;
    const last = at + (((starts[r + 1]! - at) >> 1) << 1) - 2;
    let shoelace = 0;
    for (let i = at, j = last; i <= last; j = i, i += 2) {
      const xa = coords[j]!;
      const ya = coords[j + 1]!;
      const xb = coords[i]!;
      const yb = coords[i + 1]!;
      shoelace += xa * yb - xb * ya;
      if (ya === yb) continue;
      const down = ya < yb;
      const first = Math.max(rowLo, Math.ceil((down ? ya : yb) - shift));
      const stop = Math.min(rowHi, Math.ceil((down ? yb : ya) - shift));
      if (stop <= first) continue;
      edgeFirst[e] = first;
      edgeStop[e] = stop;
      edgeX[e] = xa;
      edgeY[e] = ya;
      edgeSlope[e] = (xb - xa) / (yb - ya);
      edgeTag[e] = (r << 1) | (down ? 1 : 0);
      e++;
    }
    ringShoelace[r] = Math.abs(shoelace) / 2;
  }
  ringEdges[count] = e;
  return e;
}

let pairCount = new Int32Array(GRID_MAX);

/**
 * The common case without counting first: a single ring that crosses every
 * sample line exactly twice. Its crossings go to crossX[2k], crossX[2k + 1]
 * for row rowLo + k; false as soon as a line gets a third crossing, or when
 * one gets fewer than two (the caller then counts crossings per row).
 */
function sampleInPairs(edges: number, rowLo: number, rows: number, shift: number): boolean {
  if (pairCount.length < rows) pairCount = new Int32Array(rows);
  if (crossX.length < 2 * rows) {
    crossX = new Float64Array(Math.max(2 * rows, crossX.length * 2));
    crossTag = new Int32Array(crossX.length);
  }
  const seen = pairCount;
  const xs = crossX;
  for (let k = 0; k < rows; k++) seen[k] = 0;
  for (let e = 0; e < edges; e++) {
    const x0 = edgeX[e]!;
    const y0 = edgeY[e]!;
    const slope = edgeSlope[e]!;
    for (let row = edgeFirst[e]!, stop = edgeStop[e]!; row < stop; row++) {
      const k = row - rowLo;
      const c = seen[k]!;
      if (c === 2) return false;
      seen[k] = c + 1;
      xs[2 * k + c] = x0 + (row + shift - y0) * slope;
    }
  }
  for (let k = 0; k < rows; k++) if (seen[k] !== 2) return false;
  return true;
}

/** The rings' extent in grid units, set by toGridUnits: minX, minY, maxX, maxY. */
const extent = new Float64Array(4);

/** The rings into grid units, in place (they are this thread's scratch), and their extent. */
function toGridUnits(g: Grid, rings: FlatRings): void {
  const { coords, starts, count } = rings;
  const kx = g.gw / g.width;
  const ky = g.gh / g.height;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let r = 0; r < count; r++) {
    for (let i = starts[r]!, end = starts[r + 1]!; i + 1 < end; i += 2) {
      const x = (coords[i] = coords[i]! * kx);
      const y = (coords[i + 1] = coords[i + 1]! * ky);
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
  }
  extent[0] = minX;
  extent[1] = minY;
  extent[2] = maxX;
  extent[3] = maxY;
}

function ringsCoverage(g: Grid, rings: FlatRings): Coverage {
  const { count } = rings;
  toGridUnits(g, rings);
  const minX = extent[0]!;
  const minY = extent[1]!;
  const maxX = extent[2]!;
  const maxY = extent[3]!;
  if (!(maxY > minY)) return EMPTY;
  // Rows whose middle line the shape crosses; a shape between two such
  // lines gets one line, through its own middle.
  let shift = 0.5;
  let rowLo = Math.max(0, Math.ceil(minY - 0.5));
  let rowHi = Math.min(g.gh, Math.ceil(maxY - 0.5));
  if (rowHi <= rowLo) {
    const mid = (minY + maxY) / 2;
    if (!(mid >= 0 && mid < g.gh)) return EMPTY;
    rowLo = Math.floor(mid);
    rowHi = rowLo + 1;
    shift = mid - rowLo;
  }
  const rows = rowHi - rowLo;
  if (count > ringWind.length) {
    ringWind = new Int32Array(count);
    ringFrom = new Float64Array(count);
    ringLen = new Float64Array(count);
    ringShoelace = new Float64Array(count);
  }
  const edges = tabulateEdges(rings, rowLo, rowHi, shift);
  // One ring crossing every line twice (most masks) takes the short way.
  const spanArea =
    count === 1 && sampleInPairs(edges, rowLo, rows, shift) ? pairedSpans(g, rows) : windingSpans(g, count, rows, crossingsPerRow(edges, rowLo, rows, shift));
  return finishMask(g, rowLo, rows, exactArea(g, count, minX, maxX, minY, maxY, spanArea), spanArea);
}

/**
 * One ring crossing every line twice (sampleInPairs left the crossings in
 * crossX): the two crossings go opposite ways, so the span lies between
 * them; no sorting or winding. Returns the spans' area.
 */
function pairedSpans(g: Grid, rows: number): number {
  beginMask(rows, rows);
  const out = outSpans;
  const outRows = outStarts;
  const base = rowBase;
  const xs = crossX;
  let n = 2 * outCount;
  let spanArea = 0;
  let ringIn = 0;
  const right = g.gw;
  for (let k = 0; k < rows; k++) {
    outRows[base + k] = n >> 1;
    const p = xs[2 * k]!;
    const q = xs[2 * k + 1]!;
    const lo = p < q ? p : q;
    const hi = p < q ? q : p;
    ringIn += hi - lo;
    const a = lo < 0 ? 0 : lo;
    const b = hi > right ? right : hi;
    if (b > a) {
      out[n++] = a;
      out[n++] = b;
      spanArea += b - a;
    }
  }
  outRows[base + rows] = n >> 1;
  outCount = n >> 1;
  ringLen[0] = ringIn;
  return spanArea;
}

/**
 * Every edge's crossings, grouped by row: row k's are crossX (with their
 * ring and direction in crossTag) from rowFill[k - 1] to rowFill[k].
 * Returns how many there are.
 */
function crossingsPerRow(edges: number, rowLo: number, rows: number, shift: number): number {
  if (rowFill.length < rows + 1) rowFill = new Int32Array(rows + 1);
  const fill = rowFill;
  // How many crossings each row gets (a difference array: an edge crosses a run of rows).
  fill.fill(0, 0, rows + 1);
  for (let e = 0; e < edges; e++) {
    fill[edgeFirst[e]! - rowLo]!++;
    fill[edgeStop[e]! - rowLo]!--;
  }
  // Running sums give each row's count, then where its crossings start.
  let total = 0;
  for (let k = 0, running = 0; k < rows; k++) {
    running += fill[k]!;
    fill[k] = total;
    total += running;
  }
  fill[rows] = total;
  if (crossX.length < total) {
    crossX = new Float64Array(Math.max(total, crossX.length * 2));
    crossTag = new Int32Array(crossX.length);
  }
  const xs = crossX;
  const tags = crossTag;
  // The crossings themselves. fill[k] advances as row k fills, and ends
  // where row k + 1 starts: each row's start is its predecessor's end.
  for (let e = 0; e < edges; e++) {
    const x0 = edgeX[e]!;
    const y0 = edgeY[e]!;
    const slope = edgeSlope[e]!;
    const tag = edgeTag[e]!;
    for (let row = edgeFirst[e]!, stop = edgeStop[e]!; row < stop; row++) {
      const p = fill[row - rowLo]!++;
      xs[p] = x0 + (row + shift - y0) * slope;
      tags[p] = tag;
    }
  }
  return total;
}

/**
 * Each row: crossings in x order; a ring is inside while its winding is
 * not zero, the shape while any ring is. A row gives at most half its
 * crossings as spans, so the scratch is made large enough first. Returns
 * the spans' area; each ring's sampled length goes to ringLen.
 */
function windingSpans(g: Grid, count: number, rows: number, total: number): number {
  beginMask(rows, total >> 1);
  const fill = rowFill;
  const xs = crossX;
  const tags = crossTag;
  const out = outSpans;
  const outRows = outStarts;
  const base = rowBase;
  const wind = ringWind;
  const wentIn = ringFrom;
  const length = ringLen;
  length.fill(0, 0, count);
  const right = g.gw;
  let n = 2 * outCount;
  let spanArea = 0;
  for (let k = 0, from = 0; k < rows; k++) {
    outRows[base + k] = n >> 1;
    const to = fill[k]!;
    sortRowCrossings(from, to);
    let inside = 0;
    let spanFrom = 0;
    for (let i = from; i < to; i++) {
      const x = xs[i]!;
      const tag = tags[i]!;
      const ring = tag >> 1;
      const before = wind[ring]!;
      const after = before + (tag & 1 ? 1 : -1);
      wind[ring] = after;
      if (before === 0) {
        wentIn[ring] = x;
        if (inside++ === 0) spanFrom = x;
      } else if (after === 0) {
        length[ring]! += x - wentIn[ring]!;
        if (--inside === 0) {
          const a = spanFrom < 0 ? 0 : spanFrom;
          const b = x > right ? right : x;
          if (b > a) {
            out[n++] = a;
            out[n++] = b;
            spanArea += b - a;
          }
        }
      }
    }
    from = to;
  }
  outRows[base + rows] = n >> 1;
  outCount = n >> 1;
  return spanArea;
}

/** Insertion sort of one row's crossings by x: a row holds two crossings per ring it meets, in most rows two. */
function sortRowCrossings(from: number, to: number): void {
  const xs = crossX;
  const tags = crossTag;
  for (let i = from + 1; i < to; i++) {
    const x = xs[i]!;
    const tag = tags[i]!;
    let j = i - 1;
    while (j >= from && xs[j]! > x) {
      xs[j + 1] = xs[j]!;
      tags[j + 1] = tags[j]!;
      j--;
    }
    xs[j + 1] = x;
    tags[j + 1] = tag;
  }
}

/**
 * The exact area where the rings give it: inside the image, not
 * overlapping each other (their sampled lengths add up to the union's), and
 * each ring's shoelace sum near its sampled length (a ring that crosses
 * itself has a shoelace sum that cancels in part, and keeps the sampled
 * area). Reads the ring sums the sampling left in the scratch.
 */
function exactArea(g: Grid, count: number, minX: number, maxX: number, minY: number, maxY: number, spanArea: number): number {
  if (!(minX >= 0 && maxX <= g.gw && minY >= 0 && maxY <= g.gh)) return spanArea;
  let exact = 0;
  let sampled = 0;
  for (let r = 0; r < count; r++) {
    exact += ringShoelace[r]!;
    sampled += ringLen[r]!;
    if (Math.abs(ringShoelace[r]! - ringLen[r]!) > 0.25 * ringLen[r]! + 2) return spanArea;
  }
  return sampled - spanArea <= 1e-9 * sampled ? exact : spanArea;
}

/** A box (normalised 0..1 corners) as coverage: the rectangle as a polygon. */
export function boxCoverage(g: Grid, x1: number, y1: number, x2: number, y2: number): Coverage {
  flatRoom(8, 1);
  const c = flat.coords;
  const px1 = x1 * g.width;
  const py1 = y1 * g.height;
  const px2 = x2 * g.width;
  const py2 = y2 * g.height;
  c[0] = px1;
  c[1] = py1;
  c[2] = px2;
  c[3] = py1;
  c[4] = px2;
  c[5] = py2;
  c[6] = px1;
  c[7] = py2;
  flat.starts[0] = 0;
  flat.starts[1] = 8;
  flat.count = 1;
  return ringsCoverage(g, flat);
}

/**
 * RLE counts (column-major runs, starting with background) over an h x w
 * mask, as spans: each grid row reads the pixel row under its sample line.
 * The area is the exact count of foreground pixels.
 */
export function rleCoverage(g: Grid, counts: readonly number[], h: number, w: number): Coverage {
  const gh = g.gh;
  // The pixel row each grid row reads, and for each pixel row the first grid row reading it or one below.
  const pixelRow = new Int32Array(gh);
  for (let r = 0; r < gh; r++) pixelRow[r] = Math.min(h - 1, Math.floor(((r + 0.5) * h) / gh));
  const firstRowFrom = new Int32Array(h + 1).fill(gh);
  for (let r = gh - 1; r >= 0; r--) firstRowFrom[pixelRow[r]!] = r;
  for (let y = h - 1; y >= 0; y--) if (firstRowFrom[y]! > firstRowFrom[y + 1]!) firstRowFrom[y] = firstRowFrom[y + 1]!;
  const marks = new Uint8Array(gh * w);
  // The first and last grid rows marked, noted as they are marked.
  let lo = gh;
  let hi = -1;
  let foreground = 0;
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    const run = counts[i]!;
    if (i % 2 === 1 && run > 0) {
      foreground += run;
      // Foreground pixels pos .. pos + run - 1, one column piece at a time.
      for (let p = pos, end = pos + run; p < end; ) {
        const x = Math.floor(p / h);
        const ya = p % h;
        const yb = Math.min(h, ya + (end - p));
        if (x < w) {
          for (let r = firstRowFrom[ya]!; r < gh && pixelRow[r]! < yb; r++) {
            marks[r * w + x] = 1;
            if (r < lo) lo = r;
            if (r > hi) hi = r;
          }
        }
        p += yb - ya;
      }
    }
    pos += run;
  }
  if (hi < 0) return EMPTY;
  const sx = g.gw / w;
  // Runs of marks first, for the room the mask needs.
  let runs = 0;
  for (let r = lo; r <= hi; r++) {
    for (let x = 0, row = r * w, was = 0; x < w; x++) {
      const m = marks[row + x]!;
      if (m && !was) runs++;
      was = m;
    }
  }
  beginMask(hi - lo + 1, runs);
  let spanArea = 0;
  for (let r = lo; r <= hi; r++) {
    outStarts[rowBase + r - lo] = outCount;
    for (let x = 0, row = r * w; x < w; ) {
      if (!marks[row + x]) {
        x++;
        continue;
      }
      let e = x + 1;
      while (e < w && marks[row + e]) e++;
      pushSpan(x * sx, e * sx);
      spanArea += (e - x) * sx;
      x = e;
    }
  }
  outStarts[rowBase + hi - lo + 1] = outCount;
  return finishMask(g, lo, hi - lo + 1, (foreground * g.gw * gh) / (w * h), spanArea);
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

/** The object's area, in cells (a full cell counts 1). */
export function area(m: Coverage): number {
  return m.area;
}

/** Length shared by two rows' spans. */
function rowOverlap(a: Float64Array, ai: number, aEnd: number, b: Float64Array, bi: number, bEnd: number): number {
  let s = 0;
  while (ai < aEnd && bi < bEnd) {
    const af = a[2 * ai]!;
    const at = a[2 * ai + 1]!;
    const bf = b[2 * bi]!;
    const bt = b[2 * bi + 1]!;
    const lo = af > bf ? af : bf;
    const hi = at < bt ? at : bt;
    if (hi > lo) s += hi - lo;
    if (at < bt) ai++;
    else bi++;
  }
  return s;
}

/**
 * Overlap of two coverages on their shared sample lines, in cells. With
 * `stopShare` it stops after the first row where the overlap passes that
 * share of a's spans (the containment test) and returns the overlap so
 * far: the sum only grows, so the test gives the answer the whole sum would.
 */
export function overlap(a: Coverage, b: Coverage, stopShare = Infinity): number {
  const from = Math.max(a.y0, b.y0);
  const to = Math.min(a.y0 + a.h, b.y0 + b.h);
  const stopAt = stopShare * a.spanArea;
  let s = 0;
  for (let y = from; y < to; y++) {
    const ra = y - a.y0;
    const rb = y - b.y0;
    s += rowOverlap(a.spans, a.starts[a.s0 + ra]!, a.starts[a.s0 + ra + 1]!, b.spans, b.starts[b.s0 + rb]!, b.starts[b.s0 + rb + 1]!);
    if (s > stopAt) break;
  }
  return s;
}

/** The share of a's spans that lie inside b's, stopping early once it passes `stopShare` (the answer is then above it). */
export function insideShare(a: Coverage, b: Coverage, stopShare = Infinity): number {
  return a.spanArea > 0 ? overlap(a, b, stopShare) / a.spanArea : 0;
}

/** Intersection over union of two coverages' spans. */
export function iou(a: Coverage, b: Coverage): number {
  const inter = overlap(a, b);
  const u = a.spanArea + b.spanArea - inter;
  return u > 0 ? inter / u : 0;
}

/** The union of two coverages, for merged objects. Its area: both areas less their overlap. */
export function union(g: Grid, a: Coverage, b: Coverage): Coverage {
  const y0 = Math.min(a.y0, b.y0);
  const y1 = Math.max(a.y0 + a.h, b.y0 + b.h);
  // The union has at most the spans of both.
  beginMask(y1 - y0, spanCount(a) + spanCount(b));
  let spanArea = 0;
  for (let y = y0; y < y1; y++) {
    outStarts[rowBase + y - y0] = outCount;
    const ra = y - a.y0;
    const rb = y - b.y0;
    let ai = ra >= 0 && ra < a.h ? a.starts[a.s0 + ra]! : 0;
    const aEnd = ra >= 0 && ra < a.h ? a.starts[a.s0 + ra + 1]! : 0;
    let bi = rb >= 0 && rb < b.h ? b.starts[b.s0 + rb]! : 0;
    const bEnd = rb >= 0 && rb < b.h ? b.starts[b.s0 + rb + 1]! : 0;
    // Merge by start; a span that reaches the open one extends it.
    let open = false;
    let from = 0;
    let to = 0;
    while (ai < aEnd || bi < bEnd) {
      let f: number;
      let t: number;
      if (bi >= bEnd || (ai < aEnd && a.spans[2 * ai]! <= b.spans[2 * bi]!)) {
        f = a.spans[2 * ai]!;
        t = a.spans[2 * ai + 1]!;
        ai++;
      } else {
        f = b.spans[2 * bi]!;
        t = b.spans[2 * bi + 1]!;
        bi++;
      }
      if (open && f <= to) {
        if (t > to) to = t;
        continue;
      }
      if (open) {
        pushSpan(from, to);
        spanArea += to - from;
      }
      open = true;
      from = f;
      to = t;
    }
    if (open) {
      pushSpan(from, to);
      spanArea += to - from;
    }
  }
  outStarts[rowBase + y1 - y0] = outCount;
  const inter = overlap(a, b);
  const est = a.area + b.area - (inter * (a.area + b.area)) / Math.max(1e-12, a.spanArea + b.spanArea);
  return finishMask(g, y0, y1 - y0, Math.max(a.area, b.area, est), spanArea);
}

// Per column of the grid: partial lengths, and a difference array for the
// whole cells spans pass over (so a span costs the same whatever its
// length). All zero between calls: each call clears the columns it used.
let colPart = new Float64Array(GRID_MAX + 2);
let colWhole = new Float64Array(GRID_MAX + 2);

// The answer of spansMedian (two numbers, not an object per mask).
let medianX = NaN;
let medianY = NaN;

/**
 * The median position of spans (rows y0 .. y0 + h - 1, as in a Coverage,
 * row 0's entry at starts[s0]) into medianX, medianY: the weighted median
 * of the row lengths and of the cell columns' lengths, each interpolated
 * inside the row or column where the running sum passes half. One pass
 * over the rows (y found on the way) and one over the columns (summed,
 * searched and cleared together): a mask has about as many columns as
 * spans, so passes over columns cost as much as the spans.
 */
function spansMedian(g: Grid, y0: number, h: number, starts: Int32Array, s0: number, spans: Float64Array, spanArea: number): void {
  if (!(spanArea > 0)) {
    medianX = medianY = NaN;
    return;
  }
  const half = spanArea / 2;
  if (colPart.length < g.gw + 2) {
    colPart = new Float64Array(g.gw + 2);
    colWhole = new Float64Array(g.gw + 2);
  }
  const part = colPart;
  const whole = colWhole;
  let c0 = g.gw;
  let c1 = 0;
  let accY = 0;
  let my = NaN;
  for (let r = 0; r < h; r++) {
    let len = 0;
    for (let k = starts[s0 + r]!, end = starts[s0 + r + 1]!; k < end; k++) {
      const f = spans[2 * k]!;
      const t = spans[2 * k + 1]!;
      len += t - f;
      // The cell where the span starts and the one where it ends take their
      // parts; those between, whole. (Spans lie in 0..gw: truncation is the
      // floor, and keeps the cell numbers small integers for indexing.)
      const cf = f | 0;
      const tf = t | 0;
      const ct = tf === t ? tf - 1 : tf;
      if (cf < c0) c0 = cf;
      if (ct >= c1) c1 = ct + 1;
      if (ct <= cf) part[cf]! += t - f;
      else {
        part[cf]! += cf + 1 - f;
        part[ct]! += t - ct;
        whole[cf + 1]! += 1;
        whole[ct]! -= 1;
      }
    }
    if (my !== my) {
      if (len > 0 && accY + len >= half) my = (y0 + r + (half - accY) / len) / g.gh;
      else accY += len;
    }
  }
  medianY = my === my ? my : (y0 + h) / g.gh;
  let mx = NaN;
  let accX = 0;
  for (let c = c0, run = 0; c < c1; c++) {
    run += whole[c]!;
    const v = part[c]! + run;
    part[c] = 0;
    whole[c] = 0;
    if (mx !== mx) {
      if (v > 0 && accX + v >= half) mx = (c + (half - accX) / v) / g.gw;
      else accX += v;
    }
  }
  part[c1] = 0;
  whole[c1] = 0;
  medianX = mx === mx ? mx : c1 / g.gw;
}

/**
 * The cells under a coverage, each with the length of its sample line the
 * object covers (0..1): for reading a per-cell map (depth) under a mask.
 */
export function forEachCell(m: Coverage, gridWidth: number, visit: (cell: number, weight: number) => void): void {
  for (let r = 0; r < m.h; r++) {
    const row = (m.y0 + r) * gridWidth;
    for (let k = m.starts[m.s0 + r]!; k < m.starts[m.s0 + r + 1]!; k++) {
      const f = m.spans[2 * k]!;
      const t = m.spans[2 * k + 1]!;
      for (let c = Math.floor(f); c < t && c < gridWidth; c++) {
        const w = Math.min(t, c + 1) - Math.max(f, c);
        if (w > 0) visit(row + c, w);
      }
    }
  }
}
