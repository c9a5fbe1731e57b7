import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { InstructifyError } from '../errors.js';
import { encodeRleCounts } from '../records/rle.js';
import type { Mask } from '../types.js';
import type { OrtModule, OrtSession, OrtTensor } from './runtime.js';

/**
 * The models enrich runs, with the pre- and post-processing of their model
 * cards (Hugging Face's DPT and SAM image processors), on onnxruntime-node.
 * A model folder is laid out as on the hub: `config.json`,
 * `preprocessor_config.json` and `onnx/*.onnx`.
 */
interface ProcessorConfig {
  image_mean: number[];
  image_std: number[];
  rescale_factor?: number;
  size?: { height?: number; width?: number; longest_edge?: number };
  ensure_multiple_of?: number;
  keep_aspect_ratio?: boolean;
}

async function readModelFolder(dir: string, what: string, onnxFiles: string[]): Promise<ProcessorConfig> {
  for (const f of ['config.json', 'preprocessor_config.json', ...onnxFiles.map((o) => path.join('onnx', o))]) {
    if (!(await stat(path.join(dir, f)).catch(() => null))) {
      throw new InstructifyError('E_OPTION', `the ${what} model folder has no ${f}: give a local copy laid out as on the Hugging Face hub (config.json, preprocessor_config.json, onnx/)`, { file: dir });
    }
  }
  return JSON.parse(await readFile(path.join(dir, 'preprocessor_config.json'), 'utf8')) as ProcessorConfig;
}

/** RGB pixels, resized, as a normalised CHW float tensor of size (pad ?? size). */
async function pixelTensor(ort: OrtModule, file: string, width: number, height: number, kernel: 'cubic' | 'linear', cfg: ProcessorConfig, pad?: { width: number; height: number }): Promise<OrtTensor> {
  const { data } = await sharp(file).removeAlpha().toColourspace('srgb').resize(width, height, { fit: 'fill', kernel }).raw().toBuffer({ resolveWithObject: true });
  const pw = pad?.width ?? width;
  const ph = pad?.height ?? height;
  const out = new Float32Array(3 * pw * ph);
  const scale = cfg.rescale_factor ?? 1 / 255;
  for (let c = 0; c < 3; c++) {
    const mean = cfg.image_mean[c]!;
    const std = cfg.image_std[c]!;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) out[c * pw * ph + y * pw + x] = ((data[(y * width + x) * 3 + c]! * scale) - mean) / std;
    }
  }
  return new ort.Tensor('float32', out, [1, 3, ph, pw]);
}

/** DPT's resize: scale as little as possible towards the target, keeping the aspect ratio, to multiples of 14. */
export function dptSize(width: number, height: number, cfg: ProcessorConfig): { width: number; height: number } {
  const multiple = cfg.ensure_multiple_of ?? 1;
  let sh = (cfg.size?.height ?? 518) / height;
  let sw = (cfg.size?.width ?? 518) / width;
  if (cfg.keep_aspect_ratio) {
    if (Math.abs(1 - sw) < Math.abs(1 - sh)) sh = sw;
    else sw = sh;
  }
  const constrain = (v: number) => {
    const x = Math.round(v / multiple) * multiple;
    return x < multiple ? Math.ceil(v / multiple) * multiple : x;
  };
  return { width: constrain(sw * width), height: constrain(sh * height) };
}

export interface DepthMap {
  width: number;
  height: number;
  /** Relative inverse depth over the map's own range: 65535 nearest, 0 farthest, as Depth Anything's pipeline scales it. */
  png16: Buffer;
}

export class DepthModel {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: OrtSession,
    private readonly cfg: ProcessorConfig,
    readonly name: string,
  ) {}

  static async load(ort: OrtModule, dir: string, executionProviders: string[]): Promise<DepthModel> {
    const cfg = await readModelFolder(dir, 'depth', ['model.onnx']);
    const session = await ort.InferenceSession.create(path.join(dir, 'onnx', 'model.onnx'), { executionProviders });
    return new DepthModel(ort, session, cfg, path.basename(dir));
  }

  /** The depth map of an image of the given size (the caller has read its header). */
  async estimate(file: string, { width, height }: { width: number; height: number }): Promise<DepthMap> {
    const size = dptSize(width, height, this.cfg);
    const out = await this.session.run({ [this.session.inputNames[0]!]: await pixelTensor(this.ort, file, size.width, size.height, 'cubic', this.cfg) });
    const pred = out[this.session.outputNames[0]!]!.data as Float32Array;
    let min = Infinity;
    let max = -Infinity;
    for (const v of pred) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const span = max - min || 1;
    const u16 = new Uint16Array(pred.length);
    for (let i = 0; i < pred.length; i++) u16[i] = Math.round(((pred[i]! - min) / span) * 65535);
    // Back to the image's own size (bilinear, as the pipeline interpolates), kept 16-bit, then over the
    // full range again (interpolation pulls the extremes in).
    const { data } = await sharp(u16, { raw: { width: size.width, height: size.height, channels: 1 } })
      .toColourspace('grey16')
      .resize(width, height, { fit: 'fill', kernel: 'linear' })
      .extractChannel(0)
      .raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    const sized = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    let lo = 65535;
    let hi = 0;
    for (const v of sized) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const full = new Uint16Array(sized.length);
    for (let i = 0; i < sized.length; i++) full[i] = Math.round(((sized[i]! - lo) / (hi - lo || 1)) * 65535);
    const png16 = await sharp(full, { raw: { width, height, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    return { width, height, png16 };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** A binary mask (row-major, 1 inside) as COCO's compressed RLE, which counts down the columns. */
export function maskToRle(bits: Uint8Array, width: number, height: number): Mask {
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = bits[y * width + x] ? 1 : 0;
      if (v === current) run++;
      else {
        counts.push(run);
        current = v;
        run = 1;
      }
    }
  }
  counts.push(run);
  return { format: 'rle', polygons: null, rle: encodeRleCounts(counts), width, height };
}

export interface ImageEmbedding {
  width: number;
  height: number;
  /** The resized image inside the 1024 x 1024 input. */
  resized: { width: number; height: number };
  feeds: Record<string, OrtTensor>;
}

export class SamModel {
  private constructor(
    private readonly ort: OrtModule,
    private readonly encoder: OrtSession,
    private readonly decoder: OrtSession,
    private readonly cfg: ProcessorConfig,
    readonly name: string,
  ) {}

  static async load(ort: OrtModule, dir: string, executionProviders: string[]): Promise<SamModel> {
    const files = ['vision_encoder.onnx', 'prompt_encoder_mask_decoder.onnx'];
    const cfg = await readModelFolder(dir, 'SAM', files);
    const [encoder, decoder] = await Promise.all(files.map((f) => ort.InferenceSession.create(path.join(dir, 'onnx', f), { executionProviders })));
    return new SamModel(ort, encoder!, decoder!, cfg, path.basename(dir));
  }

  /** The image through the vision encoder once; every box of it is then one decoder run. */
  async embed(file: string, { width, height }: { width: number; height: number }): Promise<ImageEmbedding> {
    const longest = this.cfg.size?.longest_edge ?? 1024;
    const scale = longest / Math.max(width, height);
    const resized = { width: Math.round(width * scale), height: Math.round(height * scale) };
    const pixels = await pixelTensor(this.ort, file, resized.width, resized.height, 'linear', this.cfg, { width: longest, height: longest });
    const out = await this.encoder.run({ pixel_values: pixels });
    return { width, height, resized, feeds: { image_embeddings: out.image_embeddings!, image_positional_embeddings: out.image_positional_embeddings! } };
  }

  /** The mask of a box (pixels of the image, x1 y1 x2 y2), prompted as SAM takes boxes: two corner points labelled 2 and 3. */
  async maskForBox(e: ImageEmbedding, box: [number, number, number, number]): Promise<Mask> {
    const sx = e.resized.width / e.width;
    const sy = e.resized.height / e.height;
    const points = new this.ort.Tensor('float32', Float32Array.from([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]), [1, 1, 2, 2]);
    const labels = new this.ort.Tensor('int64', BigInt64Array.from([2n, 3n]), [1, 1, 2]);
    const out = await this.decoder.run({ input_points: points, input_labels: labels, ...e.feeds });
    const scores = out.iou_scores!.data as Float32Array;
    const masks = out.pred_masks!;
    const [, , n, mh, mw] = masks.dims as number[];
    let best = 0;
    for (let i = 1; i < n!; i++) if (scores[i]! > scores[best]!) best = i;
    // Logits to 0..255 (the sigmoid); the part covering the image (the input is padded at the right and
    // bottom) resized to the image in one step, then cut at 0.5. (Upscaling to the padded 1024 first, as
    // the processor does, took two resizes per box: 0.9 against 1.3 images/s with the test models.)
    const logits = (masks.data as Float32Array).subarray(best * mh! * mw!, (best + 1) * mh! * mw!);
    const grey = new Uint8Array(logits.length);
    for (let i = 0; i < logits.length; i++) grey[i] = Math.round(255 / (1 + Math.exp(-logits[i]!)));
    const longest = this.cfg.size?.longest_edge ?? 1024;
    const cropW = Math.max(1, Math.min(mw!, Math.round((e.resized.width * mw!) / longest)));
    const cropH = Math.max(1, Math.min(mh!, Math.round((e.resized.height * mh!) / longest)));
    const { data } = await sharp(grey, { raw: { width: mw!, height: mh!, channels: 1 } })
      .extract({ left: 0, top: 0, width: cropW, height: cropH })
      .resize(e.width, e.height, { fit: 'fill', kernel: 'linear' })
      // One channel out, as it came in (sharp would otherwise hand back sRGB triplets).
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const bits = new Uint8Array(e.width * e.height);
    for (let i = 0; i < bits.length; i++) bits[i] = data[i]! >= 128 ? 1 : 0;
    return maskToRle(bits, e.width, e.height);
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}
