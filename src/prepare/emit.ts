import { buildRecord, resolveGroup, type AssembleOptions, type ResolvedGroup, type Size } from '../records/assemble.js';
import { probeImage } from '../records/images.js';
import { FragmentCodec } from '../join/fragment-codec.js';
import { decodeGroup, indexPartition, type PartitionInput, type PendingGroup } from '../join/join.js';
import type { IngestState } from '../sources/types.js';
import { addTree, type TreeStageOptions } from '../tree/stage.js';
import type { ImageRecord, Reject } from '../types.js';

/**
 * The second half of `prepare`, one partition at a time: group fragments by
 * image, check images, build records, and turn them into an Arrow IPC batch
 * (or JSONL text). Runs in the main thread or in a worker thread; everything
 * it needs travels in the task, so both give the same bytes.
 */
export interface EmitConfig {
  assemble: AssembleOptions;
  sourceOrder: string[];
  /** COCO-style category tables per source, as entries (Maps do not cross threads as-is). */
  categories: [string, [number, string][]][];
  images: string | null;
  realRoot: string;
  checkImages: boolean;
  keepMissing: boolean;
  imageConcurrency: number;
  tree: TreeStageOptions;
  /** Name tables of the join's fragment codec. */
  codec: ReturnType<FragmentCodec['tables']>;
}

export interface RecordCounts {
  images: number;
  boxes: number;
  captions: number;
  qa: number;
  regions: number;
  masks: number;
}

/** What a lane reports about one partition: counts and rejects (rows stay in the lane). */
export interface PartitionSummary {
  partition: number;
  rows: number;
  rejects: Reject[];
  counts: RecordCounts;
  perSourceImages: Record<string, number>;
  images: { seen: number; passed: number; dropped: Record<string, number> };
  ms: { group: number; images: number; assemble: number; tree: number; write: number };
}

export function emptyCounts(): RecordCounts {
  return { images: 0, boxes: 0, captions: 0, qa: 0, regions: 0, masks: 0 };
}

interface Probed {
  resolved: ResolvedGroup | null;
  size: Size | null;
  rejects: Reject[];
}

/**
 * Fragments are decoded and records go to `emit` a window of images at a
 * time, not a whole partition at once: they are then dropped soon after
 * they are made, and the collector does not carry a partition's worth of
 * them (each scavenge copied every live object, and those that lived
 * through two were promoted and left for the full collections). The time
 * `emit` took is the summary's `ms.write`.
 */
export async function processPartition(input: PartitionInput, cfg: EmitConfig, emit: (records: ImageRecord[]) => Promise<void>): Promise<PartitionSummary> {
  const ms = { group: 0, images: 0, assemble: 0, tree: 0, write: 0 };
  const imageStats = { seen: 0, passed: 0, dropped: {} as Record<string, number> };
  const state: IngestState = { vgToCoco: new Map(), annotationBoxes: new Map(), annotationMasks: new Map(), categories: new Map(cfg.categories.map(([s, entries]) => [s, new Map(entries)])) };
  const t = performance.now();
  const codec = new FragmentCodec(cfg.codec);
  const groups = indexPartition(input, codec);
  ms.group += performance.now() - t;

  const ctx: ProbeContext = { codec, cfg, ms, imageStats };

  const rejects: Reject[] = [];
  const counts = emptyCounts();
  const perSourceImages: Record<string, number> = {};
  // Images are checked a window at a time: bounded concurrency, order kept.
  for (let i = 0; i < groups.length; i += cfg.imageConcurrency) {
    const window = groups.slice(i, i + cfg.imageConcurrency);
    const probing: Promise<Probed>[] = [];
    for (const g of window) probing.push(probeOne(ctx, g));
    const probed = await Promise.all(probing);
    const records: ImageRecord[] = [];
    for (const item of probed) {
      rejects.push(...item.rejects);
      if (item.resolved === null) continue;
      const t2 = performance.now();
      const built = buildRecord(item.resolved, item.size, { state, opts: cfg.assemble, sourceOrder: cfg.sourceOrder });
      ms.assemble += performance.now() - t2;
      rejects.push(...built.rejects);
      const rec = built.value!;
      const t3 = performance.now();
      const pending = addTree(rec, cfg.tree);
      const depthProblem = pending && (await pending);
      ms.tree += performance.now() - t3;
      if (depthProblem) rejects.push(depthProblem);
      records.push(rec);
      counts.images++;
      counts.boxes += rec.boxes.length;
      counts.captions += rec.captions.length;
      counts.qa += rec.qa.length;
      counts.regions += rec.regions.length;
      for (const b of rec.boxes) if (b.mask) counts.masks++;
      for (const s of rec.sources) perSourceImages[s] = (perSourceImages[s] ?? 0) + 1;
    }
    if (records.length) {
      const t4 = performance.now();
      await emit(records);
      ms.write += performance.now() - t4;
    }
  }

  return { partition: input.partition, rows: counts.images, rejects, counts, perSourceImages, images: imageStats, ms };
}

interface ProbeContext {
  codec: FragmentCodec;
  cfg: EmitConfig;
  ms: PartitionSummary['ms'];
  imageStats: { seen: number; passed: number; dropped: Record<string, number> };
}

/**
 * Decode and resolve one image's fragments, and check its file when asked.
 * A module-level function rather than a closure per partition: V8 keeps a
 * function's optimised code only while some closure of it is alive, so a
 * closure per partition was compiled again after every full collection.
 */
async function probeOne(ctx: ProbeContext, pending: PendingGroup): Promise<Probed> {
  const { cfg, ms, imageStats } = ctx;
  const t0 = performance.now();
  const group = decodeGroup(pending, ctx.codec);
  const t1 = performance.now();
  ms.group += t1 - t0;
  const r = resolveGroup(group, cfg.assemble);
  ms.assemble += performance.now() - t1;
  const resolved = r.value;
  if (resolved === null || !cfg.checkImages) return { resolved, size: null, rejects: r.rejects };
  const tProbe = performance.now();
  const probe = await probeImage(cfg.images!, cfg.realRoot, resolved.image, resolved.size === null);
  ms.images += performance.now() - tProbe;
  imageStats.seen++;
  if (probe.ok) {
    imageStats.passed++;
    return { resolved, size: probe.size, rejects: r.rejects };
  }
  imageStats.dropped[probe.reason] = (imageStats.dropped[probe.reason] ?? 0) + 1;
  const rej: Reject = { reason: probe.reason, detail: probe.detail, source: null, file: null, offset: null, image: resolved.image };
  // A path that escapes the root is never kept, whatever --keep-missing says.
  const keep = cfg.keepMissing && probe.reason !== 'path-escape';
  return { resolved: keep ? resolved : null, size: null, rejects: [...r.rejects, rej] };
}
