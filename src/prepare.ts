import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, realpath, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { jsonValues } from '../transforms/json-values.js';
import { ingestSink } from '../transforms/ingest.js';
import { shardSink } from '../transforms/shard-sink.js';
import { buildRecord, DEFAULT_EDGE_TOLERANCE, resolveGroup, type AssembleOptions, type ResolvedGroup, type Size } from './assemble.js';
import { InstructifyError } from './errors.js';
import { probeImage } from './images.js';
import { FragmentJoin } from './join.js';
import { PREPARED_SCHEMA_VERSION, preparedSchema } from './schema.js';
import { fileSizeAndMtime, ShardWriter, type ShardFormat, type ShardInfo } from './shards.js';
import { SOURCE_KINDS } from './sources/index.js';
import { createIngestState, type HandlerContext, type PlannedFile, type SourceKind } from './sources/types.js';
import { StageStats } from './stats.js';
import type { Fragment, ImageRecord, Reject } from './types.js';
import { VERSION } from './version.js';

export interface SourceSpec {
  /** Loader name, e.g. `coco-instances`. */
  kind: string;
  /** Name recorded in the output (defaults to the kind; repeated kinds get `kind-2`, ...). */
  name?: string;
  paths: string[];
}

export interface PrepareOptions {
  sources: SourceSpec[];
  /** Image root; image paths in the output are relative to it. Null: images are not checked. */
  images: string | null;
  out: string;
  format?: ShardFormat;
  rowsPerShard?: number;
  /** Bytes of fragments held in memory before the join spills to disk. */
  memoryBudget?: number;
  tmpDir?: string;
  /** Check every image exists (and read sizes the annotations lack). Default: true when `images` is set. */
  checkImages?: boolean;
  /** Keep records whose image is missing or unreadable (they are still listed in rejects.jsonl). */
  keepMissing?: boolean;
  /** Any rejected record stops the run with an error. */
  strict?: boolean;
  imageDirs?: Partial<Record<string, string>>;
  cocoNaming?: '2017' | '2014';
  imageConcurrency?: number;
  edgeTolerance?: number;
  /** Read size per chunk; tests set it tiny to prove chunk boundaries change nothing. */
  readChunkBytes?: number;
  onProgress?: (p: PrepareProgress) => void;
}

export interface PrepareProgress {
  phase: 'read' | 'write';
  bytesRead: number;
  bytesTotal: number;
  records: number;
}

export interface PrepareCounts {
  images: number;
  boxes: number;
  captions: number;
  qa: number;
  regions: number;
  masks: number;
}

export interface InputInfo {
  source: string;
  kind: string;
  role: string;
  file: string;
  size: number;
  mtime: string;
}

export interface PrepareResult {
  out: string;
  counts: PrepareCounts;
  perSource: Record<string, { fragments: number; images: number }>;
  rejects: Record<string, number>;
  shards: ShardInfo[];
  stages: Record<string, ReturnType<StageStats['toJSON']>>;
  inputs: InputInfo[];
  seconds: number;
  join: FragmentJoin['stats'];
}

export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024;
export const DEFAULT_ROWS_PER_SHARD = 10_000;

export function manifestPath(out: string): string {
  return path.join(out, 'manifest.json');
}

interface ResolvedOptions extends Required<Omit<PrepareOptions, 'onProgress' | 'tmpDir' | 'images' | 'sources'>> {
  images: string | null;
  tmpDir: string | undefined;
  onProgress: PrepareOptions['onProgress'];
  sources: (SourceSpec & { name: string; loader: SourceKind })[];
}

/** Validate options up front, so a mistake fails before any file is read. */
export function resolvePrepareOptions(o: PrepareOptions): ResolvedOptions {
  const bad = (msg: string) => new InstructifyError('E_OPTION', msg);
  if (!o.sources.length) throw bad('no sources given: add at least one --source KIND=PATH');
  const names = new Map<string, number>();
  const sources = o.sources.map((s) => {
    const loader = SOURCE_KINDS.get(s.kind);
    if (!loader) throw bad(`unknown source kind "${s.kind}"; known kinds: ${[...SOURCE_KINDS.keys()].join(', ')}`);
    if (!s.paths.length) throw bad(`source ${s.kind} has no files`);
    const n = (names.get(s.kind) ?? 0) + 1;
    names.set(s.kind, n);
    return { ...s, name: s.name ?? (n === 1 ? s.kind : `${s.kind}-${n}`), loader };
  });
  const format = o.format ?? 'parquet';
  if (format !== 'parquet' && format !== 'jsonl') throw bad(`--format must be parquet or jsonl, got "${String(format)}"`);
  const cocoNaming = o.cocoNaming ?? '2017';
  if (cocoNaming !== '2017' && cocoNaming !== '2014') throw bad(`--coco-naming must be 2017 or 2014, got "${String(cocoNaming)}"`);
  const memoryBudget = o.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
  if (!(memoryBudget > 0)) throw bad(`--memory-budget must be positive, got ${memoryBudget}`);
  const rowsPerShard = o.rowsPerShard ?? DEFAULT_ROWS_PER_SHARD;
  if (!Number.isInteger(rowsPerShard) || rowsPerShard < 1) throw bad(`--rows-per-shard must be a positive integer, got ${rowsPerShard}`);
  const imageConcurrency = o.imageConcurrency ?? 16;
  if (!Number.isInteger(imageConcurrency) || imageConcurrency < 1) throw bad(`--image-concurrency must be a positive integer, got ${imageConcurrency}`);
  const checkImages = o.checkImages ?? o.images !== null;
  if (checkImages && o.images === null) throw bad('checking images needs --images (the image root)');
  for (const [family, dir] of Object.entries(o.imageDirs ?? {})) {
    if (dir && (path.isAbsolute(dir) || path.posix.normalize(dir).startsWith('..'))) throw bad(`--image-dir ${family}=${dir} must be a folder inside the image root`);
  }
  return {
    sources,
    images: o.images,
    out: o.out,
    format,
    rowsPerShard,
    memoryBudget,
    tmpDir: o.tmpDir,
    checkImages,
    keepMissing: o.keepMissing ?? false,
    strict: o.strict ?? false,
    imageDirs: o.imageDirs ?? {},
    cocoNaming,
    imageConcurrency,
    edgeTolerance: o.edgeTolerance ?? DEFAULT_EDGE_TOLERANCE,
    readChunkBytes: o.readChunkBytes ?? 1 << 20,
    onProgress: o.onProgress,
  };
}

/** Remove what an earlier run left in the output folder (only files this tool writes). */
async function clearOutput(out: string): Promise<void> {
  let names: string[] = [];
  try {
    names = await readdir(out);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => /^part-\d+\.(parquet|jsonl)(\.tmp)?$/.test(n) || n === 'manifest.json' || n === 'rejects.jsonl').map((n) => rm(path.join(out, n), { force: true })),
  );
}

async function writeManifest(out: string, manifest: object): Promise<void> {
  const file = manifestPath(out);
  await writeFile(`${file}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
}

export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  const o = resolvePrepareOptions(options);
  const started = new Date();
  const t0 = performance.now();

  // Plan every input file before reading any, so a bad path fails at once.
  const planned: { file: PlannedFile; source: ResolvedOptions['sources'][number] }[] = [];
  for (const s of o.sources) for (const file of await s.loader.plan(s.paths)) planned.push({ file, source: s });
  // Image tables that define aliases (VG image_data) are read before everything else.
  planned.sort((a, b) => Number(b.file.first ?? false) - Number(a.file.first ?? false));
  const inputs: InputInfo[] = [];
  for (const { file, source } of planned) {
    const info = await fileSizeAndMtime(file.path).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source ${source.name}: ${err.message}`, { file: file.path, source: source.name, cause: err });
    });
    inputs.push({ source: source.name, kind: source.kind, role: file.role, file: file.path, ...info });
  }
  const bytesTotal = inputs.reduce((s, i) => s + i.size, 0);

  await mkdir(o.out, { recursive: true });
  await clearOutput(o.out);
  const baseManifest = {
    tool: 'instructify',
    version: VERSION,
    command: 'prepare',
    schema: PREPARED_SCHEMA_VERSION,
    format: o.format,
    started: started.toISOString(),
    inputs,
  };
  // Until the run finishes, the manifest says so: nothing here looks complete.
  await writeManifest(o.out, { ...baseManifest, status: 'running' });

  const realRoot = o.images !== null ? await realpath(o.images) : '';
  const state = createIngestState();
  const join = new FragmentJoin({ memoryBudget: o.memoryBudget, tmpDir: o.tmpDir });
  const stages = {
    parse: new StageStats('parse'),
    join: new StageStats('join'),
    images: new StageStats('images'),
    assemble: new StageStats('assemble'),
    write: new StageStats('write'),
  };
  const rejectCounts: Record<string, number> = {};
  const perSource: Record<string, { fragments: number; images: number }> = {};
  for (const s of o.sources) perSource[s.name] = { fragments: 0, images: 0 };
  const counts: PrepareCounts = { images: 0, boxes: 0, captions: 0, qa: 0, regions: 0, masks: 0 };
  const rejectsOut: WriteStream = createWriteStream(path.join(o.out, 'rejects.jsonl'));
  const shards = new ShardWriter({ dir: o.out, prefix: 'part', format: o.format, schema: preparedSchema, rowsPerShard: o.rowsPerShard });

  const recordReject = (r: Reject): void => {
    rejectCounts[r.reason] = (rejectCounts[r.reason] ?? 0) + 1;
    if (o.strict) {
      throw new InstructifyError('E_BAD_RECORD', `${r.reason}: ${r.detail} (strict mode stops at the first bad record)`, {
        file: r.file ?? undefined,
        offset: r.offset ?? undefined,
        imageId: r.image ?? undefined,
        source: r.source ?? undefined,
      });
    }
    rejectsOut.write(JSON.stringify(r) + '\n');
  };

  let bytesRead = 0;
  let records = 0;
  const progress = (phase: PrepareProgress['phase']) => o.onProgress?.({ phase, bytesRead, bytesTotal, records });

  try {
    // 1. Read every file into the join.
    for (const { file, source } of planned) {
      let pendingSpill: Promise<void> | undefined;
      const ctx: HandlerContext = {
        source: source.name,
        family: source.loader.family,
        state,
        cocoNaming: o.cocoNaming,
        sink: {
          emit: (f: Fragment) => {
            perSource[source.name]!.fragments++;
            stages.join.seen++;
            const wait = join.add(f);
            if (wait) pendingSpill = pendingSpill ? pendingSpill.then(() => wait) : wait;
          },
          reject: recordReject,
        },
      };
      const handler = source.loader.handler(file, ctx);
      const input = createReadStream(file.path, { highWaterMark: o.readChunkBytes });
      input.on('data', (chunk) => {
        bytesRead += chunk.length;
        progress('read');
      });
      const t = performance.now();
      await pipeline(
        input,
        jsonValues({ file: file.path, skipKeys: handler.skipKeys, rawKeys: handler.rawKeys }),
        ingestSink(handler, () => {
          const w = pendingSpill;
          pendingSpill = undefined;
          return w;
        }),
      );
      stages.parse.busyMs += performance.now() - t;
      stages.parse.seen++;
      stages.parse.passed++;
    }

    // 2. Group per image, check images, build records, write shards.
    const sourceOrder = o.sources.map((s) => s.name);
    const groups = Readable.from(timed(join.groupsInOrder(), stages.join));
    const probed = groups.map(
      async (group): Promise<{ resolved: ResolvedGroup | null; size: Size | null; rejects: Reject[]; missing: boolean }> => {
        const r = stages.assemble.time(() => resolveGroup(group, o as AssembleOptions));
        const resolved = r.value;
        if (resolved === null || !o.checkImages) return { resolved, size: null, rejects: r.rejects, missing: false };
        const t = performance.now();
        const probe = await probeImage(o.images!, realRoot, resolved.image, resolved.size === null);
        stages.images.busyMs += performance.now() - t;
        stages.images.seen++;
        if (probe.ok) {
          stages.images.passed++;
          return { resolved, size: probe.size, rejects: r.rejects, missing: false };
        }
        stages.images.drop(probe.reason);
        const rej: Reject = { reason: probe.reason, detail: probe.detail, source: null, file: null, offset: null, image: resolved.image };
        // A path that escapes the root is never kept, whatever --keep-missing says.
        const keep = o.keepMissing && probe.reason !== 'path-escape';
        return { resolved: keep ? resolved : null, size: null, rejects: [...r.rejects, rej], missing: true };
      },
      { concurrency: o.imageConcurrency },
    );

    const toRecords = async function* (source: AsyncIterable<Awaited<ReturnType<Parameters<typeof groups.map>[0]>>>) {
      for await (const item of source) {
        stages.assemble.seen++;
        for (const rej of item.rejects) recordReject(rej);
        if (item.resolved === null) {
          stages.assemble.drop('rejected');
          continue;
        }
        const resolved = item.resolved;
        const built = stages.assemble.time(() => buildRecord(resolved, item.size, { state, opts: o as AssembleOptions, sourceOrder }));
        for (const rej of built.rejects) recordReject(rej);
        const rec = built.value!;
        stages.assemble.passed++;
        yield rec;
      }
    };

    await pipeline(
      probed,
      toRecords,
      shardSink<ImageRecord>(shards, (rec) => {
        records++;
        counts.images++;
        counts.boxes += rec.boxes.length;
        counts.captions += rec.captions.length;
        counts.qa += rec.qa.length;
        counts.regions += rec.regions.length;
        for (const b of rec.boxes) if (b.mask) counts.masks++;
        for (const s of rec.sources) perSource[s]!.images++;
        stages.write.seen++;
        stages.write.passed++;
        if (records % 1000 === 0) progress('write');
      }),
    );
    progress('write');
    await new Promise<void>((resolve, reject) => rejectsOut.end((err?: Error | null) => (err ? reject(err) : resolve())));

    const result: PrepareResult = {
      out: o.out,
      counts,
      perSource,
      rejects: rejectCounts,
      shards: shards.shards,
      stages: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, v.toJSON()])),
      inputs,
      seconds: Math.round(performance.now() - t0) / 1000,
      join: join.stats,
    };
    await writeManifest(o.out, {
      ...baseManifest,
      status: 'complete',
      finished: new Date().toISOString(),
      seconds: result.seconds,
      counts,
      per_source: perSource,
      rejects: rejectCounts,
      shards: result.shards,
      stages: result.stages,
      join: join.stats,
    });
    return result;
  } catch (err) {
    await shards.abort();
    rejectsOut.destroy();
    await writeManifest(o.out, {
      ...baseManifest,
      status: 'failed',
      finished: new Date().toISOString(),
      error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message },
      shards: shards.shards,
    }).catch(() => {});
    throw err;
  } finally {
    // A failed cleanup must not hide the run's own error; say it and move on.
    await join.cleanup().catch((err: Error) => process.stderr.write(`instructify: could not remove the join's spill folder: ${err.message}\n`));
  }
}

/** Time spent inside an async iterator's `next()`, counted against a stage. */
async function* timed<T>(it: AsyncIterable<T>, stage: StageStats): AsyncGenerator<T> {
  const iter = it[Symbol.asyncIterator]();
  for (;;) {
    const t = performance.now();
    const r = await iter.next();
    stage.busyMs += performance.now() - t;
    if (r.done) return;
    stage.passed++;
    yield r.value;
  }
}
