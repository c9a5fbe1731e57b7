import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { InstructifyError } from '../errors.js';
import { inShard, shardTag, type Shard } from '../read/sharding.js';
import { DEFAULT_TREE_STAGE, depthFileFor, addTree } from '../tree/stage.js';
import type { ImageRecord } from '../types.js';
import { VERSION } from '../version.js';
import { onHardStop } from '../write/hard-stop.js';
import { claimOutput } from '../write/output-folder.js';
import { PREPARED_SCHEMA_VERSION, preparedSchema } from '../write/schema.js';
import { expectOutputOf, readShardFile, readShards } from '../write/shard-reader.js';
import { fileSizeAndMtime, ShardWriter, type ShardInfo } from '../write/shards.js';
import { DepthModel, SamModel } from './models.js';
import { OCR_SOURCE, OcrReader } from './ocr.js';
import { loadOnnxRuntime } from './runtime.js';
import { HUB_MODELS, hubModel, type HubModel, type HubOptions } from './hub.js';

/**
 * `instructify enrich`: a prepared folder in, a prepared folder of the same
 * schema out, with what models add: a depth map per image (its layers in
 * the tree), a mask for every box a dataset gave none (the tree's
 * containment from masks, not rectangles), OCR words as boxes and a fact.
 * A dataset's own polygons are never replaced.
 */
export interface EnrichOptions {
  input: string;
  out: string;
  depth?: boolean;
  masks?: boolean;
  ocr?: boolean;
  /** Image root; default: the one the input's manifest names. */
  images?: string | null;
  /** A folder holding `depth-anything-v2-small/` and `slimsam-77-uniform/` (hub layout); without it, the hub's models through the cache. */
  modelDir?: string | null;
  /** Where models come from without --model-dir: the hub, through a cache folder. */
  hub?: HubOptions;
  depthModel?: string | null;
  samModel?: string | null;
  device?: 'cpu' | 'cuda';
  /** Keep the depth maps (16-bit PNG, as --depth-dir reads them) and the OCR words (JSON) under <out>/maps. */
  keepMaps?: boolean;
  /** OCR words below this confidence (0-100) are not kept. */
  ocrMinConfidence?: number;
  shard?: Shard | null;
  /** Images per shard (default 1000: a resumed run redoes at most this many). */
  rowsPerShard?: number;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number }) => void;
  warn?: (message: string) => void;
}

export interface EnrichResult {
  images: number;
  /** Images an interrupted run had finished, kept and not worked on again. */
  resumed: number;
  masksAdded: number;
  /** Boxes that kept the dataset's own mask. */
  masksKept: number;
  depthMaps: number;
  ocrWords: number;
  /** Images per second of each model, over the run. */
  rates: Record<string, number>;
  seconds: number;
  shards: { file: string; rows: number; bytes: number }[];
}

export const DEFAULT_DEPTH_MODEL = 'depth-anything-v2-small';
export const DEFAULT_SAM_MODEL = 'slimsam-77-uniform';

interface Models {
  depth: DepthModel | null;
  sam: SamModel | null;
  ocr: OcrReader | null;
}

/** A model's folder: given, under --model-dir, or the hub's copy in the cache (fetched once when online). */
async function modelFolder(o: EnrichOptions, given: string | null | undefined, name: string, hub: HubModel): Promise<string> {
  if (given) return given;
  if (o.modelDir) return path.join(o.modelDir, name);
  return hubModel(hub, { log: (l) => o.warn?.(l), ...o.hub });
}

/** Every model loaded before the output folder is touched: a missing runtime or model is said at once. */
async function loadModels(o: EnrichOptions): Promise<Models> {
  const providers = o.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'];
  const needOrt = o.depth || o.masks;
  const ort = needOrt ? loadOnnxRuntime(o.depth ? '--depth' : '--masks') : null;
  const depth = o.depth ? await DepthModel.load(ort!, await modelFolder(o, o.depthModel, DEFAULT_DEPTH_MODEL, HUB_MODELS.depth), providers) : null;
  const sam = o.masks ? await SamModel.load(ort!, await modelFolder(o, o.samModel, DEFAULT_SAM_MODEL, HUB_MODELS.sam), providers) : null;
  const ocr = o.ocr ? await OcrReader.start(o.ocrMinConfidence ?? 60) : null;
  return { depth, sam, ocr };
}

/** Path of an image's map under a maps folder, as --depth-dir lays them out. */
function mapFile(dir: string, image: string, ext: string): string {
  return depthFileFor(dir, image).replace(/\.png$/, ext);
}

class EnrichRun {
  readonly result: EnrichResult = { images: 0, resumed: 0, masksAdded: 0, masksKept: 0, depthMaps: 0, ocrWords: 0, rates: {}, seconds: 0, shards: [] };
  private readonly busy: Record<string, number> = {};

  constructor(
    readonly o: EnrichOptions,
    readonly models: Models,
    readonly root: string,
    readonly depthDir: string,
    readonly ocrDir: string | null,
  ) {}

  private async timed<T>(model: string, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.busy[model] = (this.busy[model] ?? 0) + performance.now() - t;
    }
  }

  /** One record through the models, then its tree built anew. */
  async enrichRecord(rec: ImageRecord): Promise<void> {
    const file = path.join(this.root, rec.image);
    const meta = await sharp(file).metadata().catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read the image of ${rec.image}: ${err.message}`, { file, imageId: rec.image, cause: err });
    });
    // The header is read once here; every model takes the size from it.
    const size = { width: meta.width ?? 0, height: meta.height ?? 0 };
    const { width, height } = size;
    const { depth, sam, ocr } = this.models;
    if (sam) await this.timed(sam.name, () => this.addMasks(rec, file, size));
    if (depth) {
      const map = await this.timed(depth.name, () => depth.estimate(file, size));
      const target = depthFileFor(this.depthDir, rec.image);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, map.png16);
      this.result.depthMaps++;
    }
    if (ocr) {
      const read = await this.timed('tesseract', () => ocr.read(file, width, height));
      this.result.ocrWords += read.words.length;
      if (read.fact) {
        rec.facts.push({ text: read.fact, source: OCR_SOURCE });
        rec.boxes.push(...read.boxes);
        if (!rec.sources.includes(OCR_SOURCE)) rec.sources.push(OCR_SOURCE);
      }
      if (this.ocrDir) {
        const target = mapFile(this.ocrDir, rec.image, '.json');
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, JSON.stringify({ [rec.image]: read.words.map((w) => [w.text, w.bbox.x0, w.bbox.y0, w.bbox.x1, w.bbox.y1, Math.round(w.confidence)]) }) + '\n');
      }
    }
    rec.tree = null;
    rec.treeNodes = [];
    const rejected = await addTree(rec, { ...DEFAULT_TREE_STAGE, depthDir: depth ? this.depthDir : null });
    if (rejected) throw new InstructifyError('E_INTERNAL', `${rejected.reason}: ${rejected.detail}`, { imageId: rec.image });
  }

  private async addMasks(rec: ImageRecord, file: string, size: { width: number; height: number }): Promise<void> {
    const sam = this.models.sam!;
    const { width, height } = size;
    const bare = rec.boxes.filter((b) => b.mask === null);
    this.result.masksKept += rec.boxes.length - bare.length;
    if (!bare.length) return;
    const embedding = await sam.embed(file, size);
    for (const b of bare) {
      b.mask = await sam.maskForBox(embedding, [b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height]);
      this.result.masksAdded++;
    }
  }

  /** Images per second of each model over the time it was busy. */
  rates(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [model, ms] of Object.entries(this.busy)) out[model] = Math.round((this.result.images / Math.max(ms / 1000, 1e-6)) * 100) / 100;
    return out;
  }
}

/** What an interrupted run with the same input and settings finished: its complete shards and their images. */
interface Resumable {
  shards: ShardInfo[];
  images: Set<string>;
  nextIndex: number;
}

async function resumable(out: string, previous: Record<string, unknown> | null, fingerprint: string, prefix: string): Promise<Resumable | null> {
  const enriched = previous?.enrich as { fingerprint?: string } | undefined;
  if (!previous || previous.status === 'complete' || enriched?.fingerprint !== fingerprint) return null;
  const names = (await readdir(out)).filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.parquet')).sort();
  const kept: Resumable = { shards: [], images: new Set(), nextIndex: 0 };
  for (const name of names) {
    let rows = 0;
    for await (const r of readShardFile<{ image: string }>(path.join(out, name), LEAN)) {
      kept.images.add(r.image);
      rows++;
    }
    const { size } = await fileSizeAndMtime(path.join(out, name));
    kept.shards.push({ file: name, rows, bytes: size });
    kept.nextIndex = Math.max(kept.nextIndex, Number(/-(\d+)\.parquet$/.exec(name)![1]) + 1);
  }
  return kept;
}

/** Columns a resumed run needs no more of than the image names. */
const LEAN = ['boxes.list.item.mask', 'tree_nodes'];

function checkEnrichOptions(o: EnrichOptions): void {
  if (!o.depth && !o.masks && !o.ocr) throw new InstructifyError('E_OPTION', 'enrich needs something to add: --depth, --masks and/or --ocr');
  if (o.ocrMinConfidence !== undefined && !(o.ocrMinConfidence >= 0 && o.ocrMinConfidence <= 100)) throw new InstructifyError('E_OPTION', `--ocr-min-confidence must be from 0 to 100, got ${o.ocrMinConfidence}`);
}

async function stopModels(m: Models): Promise<void> {
  await Promise.all([m.depth?.release(), m.sam?.release(), m.ocr?.stop()]);
}

export async function enrich(o: EnrichOptions): Promise<EnrichResult> {
  checkEnrichOptions(o);
  const t0 = performance.now();
  const input = (await expectOutputOf(o.input, 'prepare', 'enrich')) ?? {};
  if (input.status !== undefined && input.status !== 'complete') throw new InstructifyError('E_OPTION', `the prepared folder is not complete (its manifest says "${String(input.status)}")`, { file: o.input });
  const root = o.images ?? (typeof input.images === 'string' ? input.images : null);
  if (!root) throw new InstructifyError('E_OPTION', 'enrich reads the images: give --images (the prepared folder names no image root)', { file: o.input });
  const models = await loadModels(o);
  let claim;
  try {
    claim = await claimOutput({ out: o.out, command: 'prepare', inputs: [o.input], roots: [root], warn: o.warn });
  } catch (err) {
    await stopModels(models);
    throw err;
  }
  const disposeHardStop = onHardStop(claim.stopNow);
  const settings = {
    depth: models.depth ? { model: models.depth.name, output: '16-bit relative inverse depth' } : null,
    masks: models.sam ? { model: models.sam.name, prompt: 'box', fills: 'boxes without a mask' } : null,
    ocr: models.ocr ? { engine: 'tesseract.js', language: 'eng', minConfidence: models.ocr.minConfidence } : null,
    device: o.device ?? 'cpu',
    keepMaps: o.keepMaps ?? false,
  };
  const from = path.resolve(o.input);
  const fingerprint = createHash('sha256').update(JSON.stringify({ from, settings, shard: o.shard ?? null, images: path.resolve(root) })).digest('hex').slice(0, 16);
  const prefix = `part-${shardTag(o.shard ?? null)}0`;
  // An interrupted run of the same work goes on where it stopped; anything else starts over.
  const resume = await resumable(o.out, claim.previous, fingerprint, prefix);
  for (const n of await readdir(o.out)) {
    if (resume && (resume.shards.some((s) => s.file === n) || n === 'maps')) continue;
    if (/^part-[\w-]+\.(parquet|jsonl|arrow)(\.tmp)?$/.test(n) || n === 'rejects.jsonl' || n === 'maps') await rm(path.join(o.out, n), { recursive: true, force: true });
  }
  if (resume) o.warn?.(`${o.out}: going on from an interrupted run: ${resume.images.size} images done in ${resume.shards.length} shards`);
  const maps = path.join(o.out, 'maps');
  const scratch = o.keepMaps ? null : await mkdtemp(path.join(os.tmpdir(), 'instructify-enrich-'));
  const depthDir = scratch ?? path.join(maps, 'depth');
  const base = { tool: 'instructify', version: VERSION, command: 'prepare', schema: PREPARED_SCHEMA_VERSION, format: 'parquet', shard: o.shard ?? null, images: path.resolve(root), inputs: input.inputs ?? [], enrich: { from, fingerprint, ...settings } };
  const writeManifest = async (m: object) => {
    const file = path.join(o.out, 'manifest.json');
    await writeFile(`${file}.tmp`, JSON.stringify({ ...base, ...m }, null, 2) + '\n');
    await rename(`${file}.tmp`, file);
  };
  await writeManifest({ status: 'running', started: new Date().toISOString() });
  const writer = new ShardWriter({ dir: o.out, prefix, format: 'parquet', rowsPerShard: o.rowsPerShard ?? 1000, metadata: [...preparedSchema.metadata], firstIndex: resume?.nextIndex ?? 0 });
  const run = new EnrichRun(o, models, root, depthDir, o.keepMaps ? path.join(maps, 'ocr') : null);
  run.result.resumed = resume?.images.size ?? 0;
  const total = Number((input.counts as { images?: number } | undefined)?.images ?? 0);
  try {
    for await (const rec of readShards<ImageRecord>(o.input)) {
      if (o.signal?.aborted) throw new InstructifyError('E_INTERRUPTED', `enrich was stopped by a signal; ${o.out} is incomplete (rerun the same command to go on)`);
      if (!inShard(rec.ref, o.shard ?? null)) continue;
      if (resume?.images.has(rec.image)) continue;
      await run.enrichRecord(rec);
      run.result.images++;
      // Each record to the writer as it is done (the models take far longer than the write): a shard
      // is complete, and kept by a resumed run, as soon as its last image is.
      await writer.add([rec]);
      o.onProgress?.({ done: run.result.resumed + run.result.images, total });
    }
    run.result.shards = [...(resume?.shards ?? []), ...(await writer.close())];
    run.result.seconds = Math.round(performance.now() - t0) / 1000;
    run.result.rates = run.rates();
    const { images, masksAdded, masksKept, depthMaps, ocrWords, rates, seconds, shards } = run.result;
    // The input's sources and what prepare set aside still describe these records (enrich adds, never
    // drops), unless this is one shard of them.
    const carried = o.shard ? {} : { per_source: input.per_source ?? {}, rejects: input.rejects ?? {} };
    await writeManifest({ status: 'complete', finished: new Date().toISOString(), seconds, counts: { images: images + run.result.resumed }, ...carried, resumed: run.result.resumed, enriched: { masks_added: masksAdded, masks_kept: masksKept, depth_maps: depthMaps, ocr_words: ocrWords, images_per_second: rates }, shards });
    return run.result;
  } catch (err) {
    // Finished shards stay (a rerun goes on after them); the shard being written goes.
    await writer.abort();
    const interrupted = o.signal?.aborted === true;
    await writeManifest({ status: interrupted ? 'interrupted' : 'failed', error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message } }).catch(() => {});
    throw err;
  } finally {
    await stopModels(models);
    if (scratch) await rm(scratch, { recursive: true, force: true });
    disposeHardStop();
    claim.release();
  }
}
