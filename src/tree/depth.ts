import { loadSharp } from '../records/sharp.js';
import { forEachCell, type Coverage, type Grid } from './masks.js';

/**
 * Relative depth from a user-supplied depth map (METHOD.md section 3): the
 * depth range is cut into layers at the midpoints between the prominent
 * peaks of its histogram; each object gets the layers under its mask
 * between the 15th and 85th percentile. Layer 0 is the closest.
 */
export interface DepthOptions {
  bins: number;
  maxPeaks: number;
  /** A peak must stand this many times above its neighbouring valleys. */
  prominence: number;
  minPeaks: number;
  lowPercentile: number;
  highPercentile: number;
}

export const DEFAULT_DEPTH_OPTIONS: DepthOptions = { bins: 50, maxPeaks: 15, prominence: 1.6, minPeaks: 2, lowPercentile: 0.15, highPercentile: 0.85 };

export interface DepthLayers {
  /** Per grid cell, 0 = closest .. 1 = farthest. */
  values: Float32Array;
  /** Depth values (same scale) where one layer ends and the next begins. */
  cuts: number[];
}

/** Peaks of a histogram after pruning, as bin indices in increasing order. */
export function histogramPeaks(hist: ArrayLike<number>, o: DepthOptions = DEFAULT_DEPTH_OPTIONS): number[] {
  const n = hist.length;
  const h = (i: number) => (i < 0 || i >= n ? 0 : hist[i]!);
  let peaks: number[] = [];
  for (let i = 0; i < n; i++) if (h(i) > 0 && h(i) > h(i - 1) && h(i) >= h(i + 1)) peaks.push(i);
  peaks = peaks.sort((a, b) => h(b) - h(a) || a - b).slice(0, o.maxPeaks).sort((a, b) => a - b);
  const valley = (from: number, to: number) => {
    let m = Infinity;
    for (let i = Math.max(0, from); i <= Math.min(n - 1, to); i++) m = Math.min(m, h(i));
    return m === Infinity ? 0 : m;
  };
  for (;;) {
    if (peaks.length <= o.minPeaks) break;
    let worst = -1;
    let worstRatio = Infinity;
    for (let k = 0; k < peaks.length; k++) {
      const p = peaks[k]!;
      const left = valley(k > 0 ? peaks[k - 1]! : 0, p);
      const right = valley(p, k + 1 < peaks.length ? peaks[k + 1]! : n - 1);
      const ratio = h(p) / Math.max(1e-9, Math.max(left, right));
      if (ratio < worstRatio) {
        worstRatio = ratio;
        worst = k;
      }
    }
    if (worstRatio >= o.prominence) break;
    peaks.splice(worst, 1);
  }
  return peaks;
}

/**
 * Layers of a depth map given as grid cells with 0 = closest .. 1 = farthest.
 * The histogram is taken over `histogramOf` when given (the full-resolution
 * map, as the method does), else over the grid cells themselves.
 */
export function depthLayers(values: Float32Array, o: DepthOptions = DEFAULT_DEPTH_OPTIONS, histogramOf: ArrayLike<number> = values): DepthLayers {
  const hist = new Float64Array(o.bins);
  for (let i = 0; i < histogramOf.length; i++) hist[Math.min(o.bins - 1, Math.max(0, Math.floor(histogramOf[i]! * o.bins)))]!++;
  const peaks = histogramPeaks(hist, o);
  const centre = (b: number) => (b + 0.5) / o.bins;
  const cuts: number[] = [];
  for (let k = 0; k + 1 < peaks.length; k++) cuts.push((centre(peaks[k]!) + centre(peaks[k + 1]!)) / 2);
  return { values, cuts };
}

export function layerOf(d: DepthLayers, v: number): number {
  let l = 0;
  while (l < d.cuts.length && v >= d.cuts[l]!) l++;
  return l;
}

/**
 * The distinct layers under a mask, of the depths between its low and high
 * percentiles (METHOD.md section 3): an object standing on two layers with
 * nothing of it in between has those two, not every layer from one to the other.
 */
export function nodeLayers(d: DepthLayers, mask: Coverage, gridWidth: number, o: DepthOptions = DEFAULT_DEPTH_OPTIONS): number[] {
  const samples: [number, number][] = [];
  let total = 0;
  forEachCell(mask, gridWidth, (cell, weight) => {
    samples.push([d.values[cell]!, weight]);
    total += weight;
  });
  if (!samples.length) return [];
  samples.sort((a, b) => a[0] - b[0]);
  const at = (q: number) => {
    let acc = 0;
    for (const [v, w] of samples) {
      acc += w;
      if (acc >= q * total) return v;
    }
    return samples.at(-1)![0];
  };
  const lo = at(o.lowPercentile);
  const hi = at(o.highPercentile);
  const layers = new Set<number>();
  for (const [v] of samples) if (v >= lo && v <= hi) layers.add(layerOf(d, v));
  return [...layers].sort((a, b) => a - b);
}

/**
 * A depth map's layers as the method computes them: the histogram and its
 * peaks over every pixel of the full-resolution map (the grid's cells
 * blend thin planes into values no pixel has, and so find other layers),
 * the per-object values on the grid as the cells' means. The map is
 * decoded once.
 */
export async function loadDepthLayers(file: string, g: Grid, largerIsFarther: boolean, o: DepthOptions = DEFAULT_DEPTH_OPTIONS): Promise<DepthLayers> {
  const sharp = await loadSharp();
  const meta = await sharp(file).metadata();
  const sixteen = meta.depth === 'ushort';
  const { data, info } = await sharp(file)
    .toColourspace(sixteen ? 'grey16' : 'b-w')
    .raw(sixteen ? { depth: 'ushort' } : {})
    .toBuffer({ resolveWithObject: true });
  const raw = sixteen ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : new Uint8Array(data);
  const full = normalisedDepth(raw, largerIsFarther);
  return depthLayers(gridAverage(full, info.width, info.height, g), o, full);
}

/** Values to 0 = closest .. 1 = farthest over the map's own range. */
function normalisedDepth(raw: ArrayLike<number>, largerIsFarther: boolean): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min || 1;
  const out = new Float32Array(raw.length);
  for (let i = 0; i < out.length; i++) {
    const t = (raw[i]! - min) / span;
    out[i] = largerIsFarther ? t : 1 - t;
  }
  return out;
}

/** The mean of the pixels each grid cell covers (a map smaller than the grid: the pixel under the cell's centre). */
function gridAverage(full: Float32Array, width: number, height: number, g: Grid): Float32Array {
  const out = new Float32Array(g.gw * g.gh);
  const sums = new Float64Array(out.length);
  const counts = new Uint32Array(out.length);
  for (let y = 0; y < height; y++) {
    const cy = Math.min(g.gh - 1, Math.floor((y * g.gh) / height));
    for (let x = 0; x < width; x++) {
      const c = cy * g.gw + Math.min(g.gw - 1, Math.floor((x * g.gw) / width));
      sums[c]! += full[y * width + x]!;
      counts[c]!++;
    }
  }
  for (let cy = 0; cy < g.gh; cy++) {
    for (let cx = 0; cx < g.gw; cx++) {
      const c = cy * g.gw + cx;
      if (counts[c]) out[c] = sums[c]! / counts[c]!;
      else {
        const x = Math.min(width - 1, Math.floor(((cx + 0.5) * width) / g.gw));
        const y = Math.min(height - 1, Math.floor(((cy + 0.5) * height) / g.gh));
        out[c] = full[y * width + x]!;
      }
    }
  }
  return out;
}

/**
 * Read a depth map (PNG, 8- or 16-bit, any size) onto the grid. Depth
 * models such as MiDaS and Depth Anything write relative inverse depth, in
 * which larger values are nearer: that is the default; `largerIsFarther`
 * flips it for metric depth maps.
 */
export async function loadDepthMap(file: string, g: Grid, largerIsFarther: boolean): Promise<Float32Array> {
  const sharp = await loadSharp();
  const meta = await sharp(file).metadata();
  const sixteen = meta.depth === 'ushort';
  // A linear kernel: lanczos rings past the data range at depth edges.
  const img = sharp(file)
    .toColourspace(sixteen ? 'grey16' : 'b-w')
    .resize(g.gw, g.gh, { fit: 'fill', kernel: 'linear' });
  const { data } = await img.raw(sixteen ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true });
  const raw = sixteen ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : new Uint8Array(data);
  return normalisedDepth(raw, largerIsFarther);
}
