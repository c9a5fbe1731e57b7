import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { readdir, rm, writeFile, rename } from 'node:fs/promises';
import { claimOutput } from '../write/output-folder.js';
import { onHardStop } from '../write/hard-stop.js';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import os from 'node:os';
import { parquetValues, valueStages, wrapCsvError } from '../../transforms/record-values.js';
import { ingestSink } from '../../transforms/ingest.js';
import { readOrder } from '../join/fragment-codec.js';
import { ReadWorkers, type BatchDone, type ReadWorkStats } from '../read/read-pool.js';
import { DEFAULT_EDGE_TOLERANCE } from '../records/assemble.js';
import { emptyCounts, type EmitConfig, type PartitionSummary, type RecordCounts } from './emit.js';
import { DEFAULT_TREE_OPTIONS, type TreeOptions } from '../tree/build.js';
import type { TreeStageOptions } from '../tree/stage.js';
import { inShard, shardTag, type Shard } from '../read/sharding.js';
import { LanePool } from './lanes.js';
import { InstructifyError } from '../errors.js';
import { resolveImageRoot } from '../records/images.js';
import { DEFAULT_PARTITIONS, FragmentJoin, type JoinStats, type SpilledJoin } from '../join/join.js';
import { PREPARED_SCHEMA_VERSION, preparedSchema } from '../write/schema.js';
import type { ShardFormat, ShardInfo } from '../write/shards.js';
import { SOURCE_KINDS } from '../sources/index.js';
import { createIngestState, type HandlerContext, type PlannedFile } from '../sources/types.js';
import { StageStats } from './stage-stats.js';
import { planInputs, type InputInfo, type InputPlan, type PlannedSource } from './plan.js';
import type { Fragment, Reject } from '../types.js';
import { VERSION } from '../version.js';

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
  /**
   * Folder output: parquet (default), jsonl, arrow (IPC file shards).
   * `out: '-'`: ndjson (default) or arrow (one IPC stream) on stdout.
   */
  format?: ShardFormat | 'ndjson';
  /** Where set-aside records go: default `<out>/rejects.jsonl`; none when out is '-' unless given. */
  rejects?: string | null;
  rowsPerShard?: number;
  /** Parquet row group size in rows. */
  rowGroupRows?: number;
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
  /**
   * Worker threads beside the main thread: a number, or 'auto' (one per
   * other core, up to 3, when the input is large enough to repay starting
   * them). While reading, they parse and join the bulk arrays of files whose
   * loader allows it (COCO and LVIS annotations, Visual Genome per-image files) while
   * the main thread cuts them out of the file; afterwards they build records
   * and write shards (each is a "lane"; lane w writes `part-<w>-<n>`, the main
   * thread is lane 0).
   */
  workers?: number | 'auto';
  /** The tree stage: ASCII tree (default), flat box list (`--no-tree`), or none; thresholds; depth maps. */
  tree?: Partial<Omit<TreeStageOptions, 'tree'>> & { tree?: Partial<TreeOptions> };
  /** Keep only this shard's images (see sharding.ts). */
  shard?: Shard | null;
  /** With out '-': send records to this object-mode stream instead of stdout (used by `run`). */
  recordStream?: import('node:stream').Writable;
  /** Read size per chunk; tests set it tiny to prove chunk boundaries change nothing. */
  readChunkBytes?: number;
  /** Bytes of elements per batch handed to a read worker (tests set it small to make many). */
  readBatchBytes?: number;
  onProgress?: (p: PrepareProgress) => void;
  /**
   * When aborted (the CLI wires SIGINT and SIGTERM to it): stop reading and
   * writing, remove partial shards and the join's spill folder, mark the
   * manifest "interrupted" and fail with E_INTERRUPTED. Rerunning the same
   * command starts the folder over and gives the same output.
   */
  signal?: AbortSignal;
  /** Said to the user about the output folder (a stale lock taken over, leftovers removed); default: stderr. */
  warn?: (message: string) => void;
}

export interface PrepareProgress {
  phase: 'read' | 'write';
  bytesRead: number;
  bytesTotal: number;
  records: number;
  /** Write phase: partitions of the join done, of how many. */
  partsDone: number;
  partsTotal: number;
}

/** Totals over the written records. */
export type PrepareCounts = RecordCounts;

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
  /** What the read workers took: batches, elements in them, fragments they added (all zero without workers). */
  read: ReadWorkStats;
  /** How the input was read, where the user should know (e.g. the image layout used for COCO 2014 names). */
  notes: string[];
}

export type { ReadWorkStats };

export const DEFAULT_MEMORY_BUDGET = 32 * 1024 * 1024;
export const DEFAULT_ROWS_PER_SHARD = 10_000;
/** Below this much input, starting worker threads costs more than it saves. */
export const AUTO_WORKERS_MIN_BYTES = 16 * 1024 * 1024;

export function manifestPath(out: string): string {
  return path.join(out, 'manifest.json');
}

interface ResolvedOptions extends Required<Omit<PrepareOptions, 'onProgress' | 'tmpDir' | 'images' | 'sources' | 'tree' | 'recordStream' | 'shard' | 'signal' | 'warn'>> {
  shard: Shard | null;
  tree: TreeStageOptions;
  images: string | null;
  tmpDir: string | undefined;
  onProgress: PrepareOptions['onProgress'];
  sources: (SourceSpec & PlannedSource)[];
}

export function resolveTreeOptions(t: PrepareOptions['tree'] = {}): TreeStageOptions {
  const bad = (msg: string) => new InstructifyError('E_OPTION', msg);
  const mode = t.mode ?? 'tree';
  if (!['tree', 'flat', 'none'].includes(mode)) throw bad(`tree mode must be tree, flat or none, got "${String(mode)}"`);
  const tree = { ...DEFAULT_TREE_OPTIONS, ...(t.tree ?? {}) };
  for (const k of ['boxMergeIou', 'maskMergeIou', 'containment', 'labelEditRatio'] as const) {
    if (!(tree[k] >= 0 && tree[k] <= 1)) throw bad(`tree option ${k} must be between 0 and 1, got ${tree[k]}`);
  }
  for (const k of ['groupDistance', 'depthGrace', 'manyAbove'] as const) if (!(tree[k] >= 0)) throw bad(`tree option ${k} must be 0 or more, got ${tree[k]}`);
  if (!(tree.round > 0 && tree.round <= 1)) throw bad(`tree option round must be above 0 and at most 1, got ${tree.round}`);
  return { mode, tree, depthDir: t.depthDir ?? null, depthLargerIsFarther: t.depthLargerIsFarther ?? false };
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new InstructifyError('E_OPTION', `${name} must be a positive integer, got ${v}`);
  return v;
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
  const toStdout = o.out === '-';
  let format = o.format ?? (toStdout ? 'ndjson' : 'parquet');
  if (toStdout) {
    if (format === 'jsonl') format = 'ndjson';
    if (format !== 'ndjson' && format !== 'arrow') throw bad(`--out - streams ndjson or arrow, not "${String(format)}" (write Parquet to a folder)`);
  } else {
    if (format === 'ndjson') format = 'jsonl';
    if (format !== 'parquet' && format !== 'jsonl' && format !== 'arrow') throw bad(`--format must be parquet, jsonl or arrow, got "${String(format)}"`);
  }
  const stdinUsers = o.sources.flatMap((s) => s.paths).filter((p) => p === '-').length;
  if (stdinUsers > 1) throw bad('only one input can be read from stdin (-)');
  const cocoNaming = o.cocoNaming ?? '2017';
  if (cocoNaming !== '2017' && cocoNaming !== '2014') throw bad(`--coco-naming must be 2017 or 2014, got "${String(cocoNaming)}"`);
  const memoryBudget = o.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
  if (!(memoryBudget > 0)) throw bad(`--memory-budget must be positive, got ${memoryBudget}`);
  const rowsPerShard = o.rowsPerShard ?? DEFAULT_ROWS_PER_SHARD;
  if (!Number.isInteger(rowsPerShard) || rowsPerShard < 1) throw bad(`--rows-per-shard must be a positive integer, got ${rowsPerShard}`);
  const imageConcurrency = o.imageConcurrency ?? 16;
  if (o.workers !== undefined && o.workers !== 'auto' && (!Number.isInteger(o.workers) || o.workers < 0 || o.workers > 64)) {
    throw bad(`--workers must be a whole number from 0 to 64 or auto, got ${String(o.workers)}`);
  }
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
    format: format as ShardFormat | 'ndjson',
    rejects: o.rejects !== undefined ? o.rejects : toStdout ? null : path.join(o.out, 'rejects.jsonl'),
    rowsPerShard,
    rowGroupRows: positiveInt(o.rowGroupRows ?? 1000, '--row-group-rows'),
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
    readBatchBytes: positiveInt(o.readBatchBytes ?? 1 << 20, 'readBatchBytes'),
    workers: o.workers ?? 'auto',
    tree: resolveTreeOptions(o.tree),
    shard: o.shard ?? null,
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
    names.filter((n) => /^part-[\w-]+\.(parquet|jsonl|arrow)(\.tmp)?$/.test(n) || n === 'manifest.json' || n === 'rejects.jsonl').map((n) => rm(path.join(out, n), { force: true })),
  );
}

async function writeManifestFile(out: string, manifest: object): Promise<void> {
  const file = manifestPath(out);
  await writeFile(`${file}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
}

/**
 * Partitions for the join, about one per megabyte of input (at least 256, at
 * most 4096, a power of two): a partition is what one lane holds decoded at
 * once, so memory stays flat as inputs grow instead of growing with them.
 */
export function partitionsFor(bytesTotal: number): number {
  let p = DEFAULT_PARTITIONS;
  while (p < 4096 && p * 1024 * 1024 < bytesTotal) p *= 2;
  return p;
}

export type { InputInfo };

/**
 * One prepare run's state between its phases: the join, the read workers and
 * lanes it started, what each stage counted, and the rejects file.
 */
class PrepareRun {
  readonly stages = {
    parse: new StageStats('parse'),
    join: new StageStats('join'),
    images: new StageStats('images'),
    assemble: new StageStats('assemble'),
    tree: new StageStats('tree'),
    write: new StageStats('write'),
  };
  readonly rejectCounts: Record<string, number> = {};
  /** What the user should know about how the input was read (see HandlerContext.note). */
  readonly notes: string[] = [];
  private readonly noteKeys = new Set<string>();
  readonly perSource: Record<string, { fragments: number; images: number }> = {};
  readonly counts: PrepareCounts = emptyCounts();
  readonly state = createIngestState();
  readonly join: FragmentJoin;
  readonly rejectsOut: WriteStream | null;
  readWorkers: ReadWorkers | null = null;
  lanes: LanePool | null = null;
  shards: ShardInfo[] = [];
  private readSpilled: SpilledJoin[] = [];
  private readJoinStats: JoinStats[] = [];
  private bytesRead = 0;
  private records = 0;
  private partsDone = 0;
  private partsTotal = 0;

  constructor(
    readonly o: ResolvedOptions,
    readonly options: PrepareOptions,
    readonly plan: InputPlan,
    readonly workerCount: number,
  ) {
    this.join = new FragmentJoin({ memoryBudget: o.memoryBudget, tmpDir: o.tmpDir, partitions: partitionsFor(plan.bytesTotal) });
    // Codecs in read workers must number sources and files as this one does: enter them all now, in reading order.
    this.join.codec.register(
      o.sources.map((s) => ({ name: s.name, family: s.loader.family })),
      plan.planned.map((p) => p.file.path),
    );
    for (const s of o.sources) this.perSource[s.name] = { fragments: 0, images: 0 };
    this.rejectsOut = o.rejects ? createWriteStream(o.rejects) : null;
  }

  private progress(phase: PrepareProgress['phase']): void {
    const { bytesRead, records, partsDone, partsTotal } = this;
    this.o.onProgress?.({ phase, bytesRead, bytesTotal: this.plan.bytesTotal, records, partsDone, partsTotal });
  }

  readonly recordReject = (r: Reject): void => {
    this.rejectCounts[r.reason] = (this.rejectCounts[r.reason] ?? 0) + 1;
    if (this.o.strict) {
      throw new InstructifyError('E_BAD_RECORD', `${r.reason}: ${r.detail} (strict mode stops at the first bad record)`, {
        file: r.file ?? undefined,
        offset: r.offset ?? undefined,
        imageId: r.image ?? undefined,
        source: r.source ?? undefined,
      });
    }
    this.rejectsOut?.write(JSON.stringify(r) + '\n');
  };

  /** A batch a read worker finished: its fragments counted as the main thread counts its own. */
  private readonly onReadBatch = (source: string, d: BatchDone): void => {
    this.perSource[source]!.fragments += d.fragments;
    this.stages.join.seen += d.fragments;
    for (const r of d.rejects) this.recordReject(r);
  };

  /** Phase 2: every file into the join, in the planned order. */
  async readInputs(): Promise<void> {
    for (const { file, source } of this.plan.planned) {
      const t = performance.now();
      await this.readFile(file, source);
      this.stages.parse.busyMs += performance.now() - t;
      this.stages.parse.seen++;
      this.stages.parse.passed++;
    }
    if (this.readWorkers !== null) ({ spilled: this.readSpilled, stats: this.readJoinStats } = await this.readWorkers.finish());
  }

  private async readFile(file: PlannedFile, source: PlannedSource): Promise<void> {
    const { o, join } = this;
    // A signal (Ctrl-C) stops the reading where it is.
    const pipeOptions = this.options.signal ? { signal: this.options.signal } : {};
    let pendingSpill: Promise<void> | undefined;
    const fileNumber = join.codec.fileNumber(file.path);
    // Reading order of this file's fragments: arrival, or for files read by several threads the element's offset.
    let arrival = 0;
    let byOffset = false;
    const ctx: HandlerContext = {
      source: source.name,
      family: source.loader.family,
      state: this.state,
      cocoNaming: o.cocoNaming,
      images: o.images,
      imageDirs: o.imageDirs,
      note: (m) => {
        // Said once per kind of message: the first file name stands for the rest.
        const key = m.replace(/\([^)]*\)/, '');
        if (this.noteKeys.has(key)) return;
        this.noteKeys.add(key);
        this.notes.push(m);
        (this.options.warn ?? ((s: string) => process.stderr.write(`instructify: ${s}\n`)))(m);
      },
      sink: {
        emit: (f: Fragment) => {
          // Another shard's image: not ours to join (every process reads all input, keeps its part).
          if (!inShard(f.ref, o.shard)) return;
          this.perSource[source.name]!.fragments++;
          this.stages.join.seen++;
          const wait = join.add(f, readOrder(fileNumber, byOffset ? (f.prov.offset ?? 0) : arrival++));
          if (wait) pendingSpill = pendingSpill ? pendingSpill.then(() => wait) : wait;
        },
        reject: this.recordReject,
      },
    };
    const handler = source.loader.handler(file, ctx);
    const format = handler.format ?? 'json';
    const sink = ingestSink(handler, () => {
      const w = pendingSpill;
      pendingSpill = undefined;
      return w;
    });
    if (format === 'parquet') {
      if (file.path === '-') throw new InstructifyError('E_OPTION', `source ${source.name}: Parquet cannot be read from stdin (it needs to seek); give the file`);
      await pipeline(parquetValues(file.path, handler.columns), sink, pipeOptions);
      this.bytesRead += this.plan.inputs.find((i) => i.file === file.path)?.size ?? 0;
      this.progress('read');
      return;
    }
    // Bulk arrays of this file may be parsed by read workers; its fragments are ordered by offset either way.
    byOffset = format === 'json' && handler.parallelKeys !== undefined;
    if (byOffset && this.workerCount > 0 && this.readWorkers === null) {
      this.readWorkers = await ReadWorkers.start(this.workerCount, { tmpParent: o.tmpDir ?? os.tmpdir(), memoryBudget: o.memoryBudget, join, shard: o.shard, onBatch: this.onReadBatch });
    }
    const values =
      byOffset && this.readWorkers !== null
        ? [this.readWorkers.values({ file: fileNumber, kind: source.kind, planned: file, source: source.name, family: source.loader.family, state: this.state, cocoNaming: o.cocoNaming, images: o.images, imageDirs: o.imageDirs }, handler, o.readBatchBytes)]
        : valueStages(format, file.path, handler);
    // The 'data' listener starts the flow: nothing may be awaited between here and the pipeline.
    const input = file.path === '-' ? process.stdin : createReadStream(file.path, { highWaterMark: o.readChunkBytes });
    input.on('data', (chunk: Buffer | string) => {
      this.bytesRead += chunk.length;
      this.progress('read');
    });
    await pipeline([input, ...values, sink], pipeOptions).catch((err: unknown) => {
      throw wrapCsvError(err, file.path);
    });
    await this.readWorkers?.idle();
  }

  /**
   * Phase 3: per partition (in worker threads when there are several), group
   * per image, check images, build records and trees; shards are cut in order.
   */
  async emitAndWrite(realRoot: string): Promise<void> {
    const { o, join } = this;
    const config: EmitConfig = {
      assemble: { imageDirs: o.imageDirs, cocoNaming: o.cocoNaming, edgeTolerance: o.edgeTolerance },
      sourceOrder: o.sources.map((s) => s.name),
      categories: [...this.state.categories].map(([source, table]) => [source, [...table]]),
      images: o.images,
      realRoot,
      checkImages: o.checkImages,
      keepMissing: o.keepMissing,
      imageConcurrency: o.imageConcurrency,
      tree: o.tree,
      codec: join.codec.tables(),
    };
    const toStdout = o.out === '-';
    this.lanes = new LanePool(toStdout ? 0 : this.workerCount, {
      config,
      out: o.out,
      format: o.format === 'ndjson' ? 'jsonl' : o.format,
      streamFormat: o.format === 'arrow' ? 'arrow' : 'ndjson',
      recordStream: this.options.recordStream,
      rowsPerShard: o.rowsPerShard,
      rowGroupRows: o.rowGroupRows,
      metadata: [...preparedSchema.metadata],
      tag: shardTag(o.shard),
    });
    await join.settled();
    this.partsTotal = join.nonEmptyPartitions(this.readSpilled);
    for await (const r of this.lanes.run(join.partitionsInOrder(this.readSpilled))) {
      if (this.options.signal?.aborted) throw new InstructifyError('E_INTERRUPTED', 'stopped by a signal');
      this.countPartition(r);
      this.progress('write');
    }
    const tClose = performance.now();
    this.shards = await this.lanes.finish();
    this.stages.write.busyMs += performance.now() - tClose;
    this.progress('write');
    const rejectsOut = this.rejectsOut;
    if (rejectsOut) await new Promise<void>((resolve, reject) => rejectsOut.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }

  private countPartition(r: PartitionSummary): void {
    const { stages } = this;
    this.partsDone++;
    for (const rej of r.rejects) this.recordReject(rej);
    for (const [k, v] of Object.entries(r.counts)) this.counts[k as keyof PrepareCounts] += v;
    for (const [s, n] of Object.entries(r.perSourceImages)) this.perSource[s]!.images += n;
    stages.join.seen++;
    stages.join.passed++;
    stages.join.busyMs += r.ms.group;
    stages.images.seen += r.images.seen;
    stages.images.passed += r.images.passed;
    for (const [reason, n] of Object.entries(r.images.dropped)) stages.images.drop(reason, n);
    stages.images.busyMs += r.ms.images;
    stages.assemble.busyMs += r.ms.assemble;
    stages.tree.busyMs += r.ms.tree;
    stages.tree.seen += r.rows;
    stages.tree.passed += r.rows;
    stages.assemble.passed += r.rows;
    stages.write.busyMs += r.ms.write;
    stages.write.passed += r.rows;
    this.records += r.rows;
  }

  private joinStats(): JoinStats {
    const all = [this.join.stats, ...this.readJoinStats];
    return {
      fragments: all.reduce((n, s) => n + s.fragments, 0),
      spills: all.reduce((n, s) => n + s.spills, 0),
      spilledBytes: all.reduce((n, s) => n + s.spilledBytes, 0),
      peakHeldBytes: all.reduce((n, s) => n + s.peakHeldBytes, 0),
    };
  }

  result(t0: number): PrepareResult {
    return {
      out: this.o.out,
      counts: this.counts,
      perSource: this.perSource,
      rejects: this.rejectCounts,
      shards: this.shards,
      stages: Object.fromEntries(Object.entries(this.stages).map(([k, v]) => [k, v.toJSON()])),
      inputs: this.plan.inputs,
      seconds: Math.round(performance.now() - t0) / 1000,
      join: this.joinStats(),
      read: this.readWorkers?.stats ?? { workers: 0, batches: 0, elements: 0, fragments: 0 },
      notes: this.notes,
    };
  }

  /** After a failure: no lane writes on, and no partial shard looks complete (.tmp files go). */
  async abort(): Promise<void> {
    await this.lanes?.abort();
    this.rejectsOut?.destroy();
    if (this.o.out === '-') return;
    const names = await readdir(this.o.out).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => n.endsWith('.tmp') && n.startsWith('part-')).map((n) => rm(path.join(this.o.out, n), { force: true })));
  }

  async cleanup(): Promise<void> {
    await this.readWorkers?.cleanup();
    await this.lanes?.close();
    // A failed cleanup must not hide the run's own error; say it and move on.
    await this.join.cleanup().catch((err: Error) => process.stderr.write(`instructify: could not remove the join's spill folder: ${err.message}\n`));
  }
}

/**
 * prepare, phase by phase: plan the inputs, claim the output folder, read
 * every file into the join, build and write the records, write the manifest.
 */
export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  const o = resolvePrepareOptions(options);
  const started = new Date();
  const t0 = performance.now();
  // 1. Plan every input file before reading any, so a bad path fails at once.
  const plan = await planInputs(o.sources);
  // The main thread is a lane too: 'auto' adds one worker per other core.
  // Streaming to stdout needs one writer, in order: the main thread alone then writes.
  const toStdout = o.out === '-';
  const workerCount = o.workers === 'auto' ? (plan.bytesTotal >= AUTO_WORKERS_MIN_BYTES ? Math.min(3, os.availableParallelism() - 1) : 0) : o.workers;

  // Before the output folder is touched: a wrong image root is a usage mistake, not a failed run
  // (and must not clear what an earlier run wrote there).
  const realRoot = o.images !== null ? await resolveImageRoot(o.images) : '';
  // The folder must be prepare's to write (missing, empty, or an earlier prepare's): decided before anything is written.
  const claim = toStdout
    ? null
    : await claimOutput({ out: o.out, command: 'prepare', inputs: plan.planned.map((p) => p.file.path), roots: o.images !== null ? [o.images] : [], warn: options.warn });
  const disposeHardStop = claim ? onHardStop(claim.stopNow) : () => {};
  if (!toStdout) await clearOutput(o.out);
  // The image root, absolute: report and export find the images from it.
  const baseManifest = { tool: 'instructify', version: VERSION, command: 'prepare', schema: PREPARED_SCHEMA_VERSION, format: o.format, shard: o.shard, started: started.toISOString(), images: o.images !== null ? path.resolve(o.images) : null, inputs: plan.inputs };
  // With stdout as the output there is no folder: the manifest is not written.
  const writeManifest = (fields: object) => (toStdout ? Promise.resolve() : writeManifestFile(o.out, { ...baseManifest, ...fields }));
  // Until the run finishes, the manifest says so: nothing here looks complete.
  await writeManifest({ status: 'running' });

  const run = new PrepareRun(o, options, plan, workerCount);
  try {
    // 2. Read and join; 3. build records and write them.
    await run.readInputs();
    await run.emitAndWrite(realRoot);
    // 4. Finish: the manifest says complete only now.
    const result = run.result(t0);
    await writeManifest({
      status: 'complete',
      finished: new Date().toISOString(),
      seconds: result.seconds,
      counts: result.counts,
      per_source: result.perSource,
      rejects: result.rejects,
      shards: result.shards,
      stages: result.stages,
      join: result.join,
      read_workers: result.read,
      notes: result.notes,
    });
    return result;
  } catch (caught) {
    // A signal stops the read pipeline with an AbortError: report it as the interruption it is.
    const interrupted = options.signal?.aborted === true;
    const err = interrupted ? new InstructifyError('E_INTERRUPTED', `prepare was stopped by a signal; ${o.out} is incomplete (rerun the same command to start it over)`, { cause: caught }) : caught;
    await run.abort();
    await writeManifest({
      status: interrupted ? 'interrupted' : 'failed',
      finished: new Date().toISOString(),
      error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message },
    }).catch(() => {});
    throw err;
  } finally {
    disposeHardStop();
    claim?.release();
    await run.cleanup();
  }
}
