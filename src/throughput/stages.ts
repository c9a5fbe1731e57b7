import { createReadStream } from 'node:fs';
import { mkdir, readdir, realpath, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';
import { buildRecord, resolveGroup, type AssembleOptions, type ResolvedGroup } from '../records/assemble.js';
import { InstructifyError } from '../errors.js';
import { probeImage } from '../records/images.js';
import { FragmentJoin, groupPartition } from '../join/join.js';
import { prepare } from '../prepare/prepare.js';
import { preparedSchema } from '../write/schema.js';
import { ShardWriter } from '../write/shards.js';
import { cocoInstances } from '../sources/coco.js';
import { createIngestState, type HandlerContext } from '../sources/types.js';
import { sceneSvg, syntheticImage, writeSyntheticCoco } from '../sources/synthetic.js';
import { rng } from '../util/random.js';
import { addTree, DEFAULT_TREE_STAGE } from '../tree/stage.js';
import type { Fragment, ImageGroup, ImageRecord } from '../types.js';
import { jsonValues } from '../../transforms/json-values.js';
import { ingestSink } from '../../transforms/ingest.js';
import { describeMachine, type Machine } from './machine.js';
import { PeakMemory } from './peak-memory.js';

/**
 * `instructify bench --stages`: each local stage of `prepare` measured on
 * its own, on seeded generated COCO-like data of a chosen size. A stage's
 * input is made (untimed) by the stage before it and held in memory, so
 * each line measures that stage alone; the last line is the whole of
 * `prepare` on the same file, for comparison.
 */
export interface StageBenchOptions {
  /** Size of the generated annotation file, in bytes. */
  bytes: number;
  /** Images written to disk and sized with sharp (the sizes stage). */
  images: number;
  seed: number;
  /** Working folder (generated data, shards); default under the OS temp folder. */
  dir?: string;
  log?: (line: string) => void;
}

export interface StageRow {
  stage: 'parse' | 'join' | 'sizes' | 'tree' | 'write' | 'prepare';
  /** What the stage measures, in a few words. */
  what: string;
  items: number;
  unit: string;
  seconds: number;
  itemsPerSecond: number;
  /** Input megabytes per second, where the stage reads the annotation bytes. */
  mbPerSecond: number | null;
  /** Highest resident set size while the stage ran, and how far above the start that was. */
  peakRssMB: number;
  rssGrowthMB: number;
}

export interface StageBenchResult {
  machine: Machine;
  input: { file: string; mb: number; images: number; boxes: number; seed: number };
  stages: StageRow[];
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number; peakRssMB: number; rssGrowthMB: number }> {
  const mem = new PeakMemory();
  const t = performance.now();
  const value = await fn();
  const seconds = (performance.now() - t) / 1000;
  const m = mem.stop();
  return { value, seconds, ...m };
}

function row(stage: StageRow['stage'], what: string, items: number, unit: string, m: { seconds: number; peakRssMB: number; rssGrowthMB: number }, mb: number | null): StageRow {
  const s = Math.max(m.seconds, 1e-6);
  return { stage, what, items, unit, seconds: m.seconds, itemsPerSecond: items / s, mbPerSecond: mb === null ? null : mb / s, peakRssMB: m.peakRssMB, rssGrowthMB: m.rssGrowthMB };
}

/** sizes: image headers read with sharp, a window of 16 at a time as prepare does. */
async function benchSizes(dir: string, images: number, seed: number, log: (line: string) => void): Promise<StageRow> {
  const imageDir = path.join(dir, 'images');
  await mkdir(imageDir, { recursive: true });
  const have = new Set(await readdir(imageDir));
  const r = rng(seed);
  const names: string[] = [];
  for (let i = 1; i <= images; i++) {
    const scene = syntheticImage(r, i);
    names.push(scene.fileName);
    if (!have.has(scene.fileName)) await sharp(Buffer.from(sceneSvg(scene))).jpeg({ quality: 85 }).toFile(path.join(imageDir, scene.fileName));
  }
  const realRoot = await realpath(imageDir);
  log('sizes ...');
  const sizes = await timed(async () => {
    let ok = 0;
    for (let i = 0; i < names.length; i += 16) {
      const got = await Promise.all(names.slice(i, i + 16).map((n) => probeImage(imageDir, realRoot, n, true)));
      for (const g of got) if (g.ok && g.size) ok++;
    }
    return ok;
  });
  if (sizes.value !== names.length) throw new Error(`sizes stage: read ${sizes.value} of ${names.length} image sizes`);
  return row('sizes', 'image headers read with sharp', names.length, 'images', sizes, null);
}

/** write: the records (trees included) as zstd Parquet shards. */
async function benchWrite(records: ImageRecord[], dir: string, log: (line: string) => void): Promise<StageRow> {
  const shardDir = path.join(dir, 'shards');
  await rm(shardDir, { recursive: true, force: true });
  await mkdir(shardDir, { recursive: true });
  log('write ...');
  const write = await timed(async () => {
    const w = new ShardWriter({ dir: shardDir, prefix: 'part-0', format: 'parquet', rowsPerShard: 10_000, metadata: [...preparedSchema.metadata] });
    for (let i = 0; i < records.length; i += 1000) {
      PeakMemory.sampleNow();
      await w.add(records.slice(i, i + 1000));
    }
    await w.close();
    return w.shards;
  });
  const written = write.value.reduce((s, x) => s + x.bytes, 0) / 1e6;
  await rm(shardDir, { recursive: true, force: true });
  return row('write', `Parquet shards (zstd, ${written.toFixed(1)} MB written)`, records.length, 'rows', write, null);
}

export async function benchStages(o: StageBenchOptions): Promise<StageBenchResult> {
  if (!(Number.isFinite(o.bytes) && o.bytes >= 10_000)) throw new InstructifyError('E_OPTION', `--size must be at least 10KB, got ${o.bytes} bytes`);
  if (!(Number.isInteger(o.images) && o.images >= 1)) throw new InstructifyError('E_OPTION', `--images must be a positive whole number, got ${o.images}`);
  const log = o.log ?? (() => {});
  const dir = o.dir ?? path.join(os.tmpdir(), 'instructify-bench-stages');
  await mkdir(dir, { recursive: true });

  // Seeded input, reused while its size matches (about 2 KB of annotations per image, as in COCO).
  const file = path.join(dir, `coco-like-${Math.round(o.bytes / 1000)}kb-seed${o.seed}.json`);
  const existing = await stat(file).catch(() => null);
  if (!existing || Math.abs(existing.size - o.bytes) / o.bytes > 0.25) {
    log(`making ${(o.bytes / 1e6).toFixed(1)} MB of seeded COCO-like annotations in ${file}`);
    await writeSyntheticCoco({ instancesFile: file, count: Math.max(1, Math.round(o.bytes / 1950)), seed: o.seed, objects: [3, 10], polygonPoints: 24 });
  }
  const mb = (await stat(file)).size / 1e6;
  const stages: StageRow[] = [];

  // parse: bytes -> JSON values (the splitter and per-element JSON.parse), to a null sink.
  // One handler: its key lists drive the parse stage, and it makes the join's input afterwards.
  const fragments: Fragment[] = [];
  const ctx: HandlerContext = { source: 'coco-instances', family: 'coco', state: createIngestState(), cocoNaming: '2017', images: null, sink: { emit: (f) => fragments.push(f), reject: () => {} } };
  const handler = cocoInstances.handler({ path: file, role: 'instances' }, ctx);
  const values = () => jsonValues({ file, skipKeys: handler.skipKeys, rawKeys: handler.rawKeys });
  log('parse ...');
  const parse = await timed(async () => {
    let count = 0;
    await pipeline(
      createReadStream(file, { highWaterMark: 1 << 20 }),
      values(),
      new Writable({ objectMode: true, write: (batch: unknown[], _e, done) => ((count += batch.length), done()) }),
    );
    return count;
  });
  stages.push(row('parse', 'annotation bytes to JSON values', parse.value, 'values', parse, mb));

  // The join's input: every fragment of the file (made untimed, as prepare's ingest makes it).
  await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), values(), ingestSink(handler, () => undefined));

  // join: fragments into hash partitions (spilling above the default budget), then grouped per
  // image. The groups are counted and dropped, as prepare hands each partition on and lets it go.
  const assemble: AssembleOptions = { imageDirs: {}, cocoNaming: '2017', edgeTolerance: 0.01 };
  const joinAll = async (each: (g: ImageGroup) => void, sample: boolean) => {
    const j = new FragmentJoin({ memoryBudget: 32 * 1024 * 1024, tmpDir: dir });
    try {
      for (let i = 0; i < fragments.length; i++) {
        if (sample && (i & 4095) === 0) PeakMemory.sampleNow();
        const wait = j.add(fragments[i]!);
        if (wait) await wait;
      }
      await j.settled();
      for await (const part of j.partitionsInOrder()) {
        if (sample) PeakMemory.sampleNow();
        for (const g of groupPartition(part, j.codec)) each(g);
      }
    } finally {
      await j.cleanup();
    }
  };
  log('join ...');
  const join = await timed(async () => {
    let groups = 0;
    await joinAll(() => groups++, true);
    return groups;
  });
  stages.push(row('join', 'fragments grouped per image (spills above 32 MB)', fragments.length, 'fragments', join, mb));
  // The tree's input, made untimed: records with sizes from the annotations.
  const records: ImageRecord[] = [];
  await joinAll((g) => {
    const resolved = resolveGroup(g, assemble).value as ResolvedGroup | null;
    if (resolved === null) return;
    const built = buildRecord(resolved, null, { state: ctx.state, opts: assemble, sourceOrder: ['coco-instances'] }).value;
    if (built) records.push(built);
  }, false);
  fragments.length = 0;

  stages.push(await benchSizes(dir, o.images, o.seed, log));

  // tree: the tree added to each record.
  const boxes = records.reduce((s, rec) => s + rec.boxes.length, 0);
  log('tree ...');
  const tree = await timed(async () => {
    for (let i = 0; i < records.length; i++) {
      if ((i & 63) === 0) PeakMemory.sampleNow();
      await addTree(records[i]!, DEFAULT_TREE_STAGE);
    }
    return records.length;
  });
  stages.push(row('tree', 'ASCII trees (masks, merges, hierarchy)', records.length, 'images', tree, null));

  stages.push(await benchWrite(records, dir, log));
  const imagesCount = records.length;
  records.length = 0;

  // The whole of prepare on the same file (tree on, default workers), for comparison.
  log('prepare (all stages) ...');
  const outDir = path.join(dir, 'prepared');
  const all = await timed(() => prepare({ sources: [{ kind: 'coco-instances', paths: [file] }], images: null, out: outDir }));
  stages.push(row('prepare', 'whole prepare: tree on, default workers', all.value.counts.images, 'images', all, mb));
  await rm(outDir, { recursive: true, force: true });

  return { machine: describeMachine(), input: { file, mb, images: imagesCount, boxes, seed: o.seed }, stages };
}

export function formatStageBench(r: StageBenchResult): string {
  const m = r.machine;
  const lines = [
    `machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGB.toFixed(0)} GB, ${m.platform}, Node ${m.node}`,
    `input: ${r.input.mb.toFixed(1)} MB of seeded COCO-like instances (seed ${r.input.seed}), ${r.input.images} images, ${r.input.boxes} boxes`,
    '',
 '(peak RSS: while the stage ran, with its input held in memory as the stage before made it; growth: above where the stage started)',
    '',
    'stage   | items               | seconds | items/s     | MB/s  | peak RSS MB (+growth) | what',
    '--------|---------------------|---------|-------------|-------|-----------------------|-----',
  ];
  for (const s of r.stages) {
    lines.push(
      [
        s.stage.padEnd(7),
        `${s.items} ${s.unit}`.padEnd(19),
        s.seconds.toFixed(2).padStart(7),
        s.itemsPerSecond.toFixed(0).padStart(11),
        (s.mbPerSecond === null ? '-' : s.mbPerSecond.toFixed(1)).padStart(5),
        `${s.peakRssMB.toFixed(0)} (+${s.rssGrowthMB.toFixed(0)})`.padEnd(21),
        s.what,
      ].join(' | '),
    );
  }
  return lines.join('\n');
}
