import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, rename, rm, writeFile } from 'node:fs/promises';
import { claimOutput, type ClaimedOutput } from '../write/output-folder.js';
import { onHardStop } from '../write/hard-stop.js';
import path from 'node:path';
import { createInterface } from 'node:readline';
import PQueue from 'p-queue';
import { InstructifyError } from '../errors.js';
import { camelKeys, expectOutputOf, readShards, SHARD_FILE } from '../write/shard-reader.js';
import { checkCacheBinding, ResponseCache } from '../llm/cache.js';
import { LlmClient, type LlmClientOptions } from '../llm/client.js';
import { CONVERSATION_SCHEMA_VERSION, conversationSchema } from '../write/schema.js';
import { ShardWriter, type ShardFormat, type ShardInfo } from '../write/shards.js';
import type { ImageRecord } from '../types.js';
import { VERSION } from '../version.js';
import { llmCall, type CallStats } from './caller.js';
import { factConversations } from './facts.js';
import { inShard, shardTag, type Shard } from '../read/sharding.js';
import { preloadLanguageData, UNUSABLE_REASONS, type UnusableReason } from './answer-text.js';
import { runLoop, type LoopOptions, type LoopStats, type TreeDescription } from './loop.js';
import { loadDistribution, loadPrompts, type Distribution, type PromptSpec } from './prompts.js';

/**
 * `generate`: prepared records in, conversation shards out. Each image runs
 * the loop on its own; images run side by side, as many as there are
 * request slots, so the LLM servers stay busy while memory stays bounded
 * (the input is read only as fast as images finish).
 */
export interface GenerateOptions {
  /** A `prepare` output folder, or the records themselves (as `run` streams them). */
  input: string | AsyncIterable<ImageRecord>;
  out: string;
  /** The LLM servers; without them, conversations are built from the facts alone (no LLM). */
  llm?: LlmClientOptions;
  distribution: string;
  promptDirs?: string[];
  loop?: Partial<LoopOptions>;
  /** SQLite file for answers; null: no cache. Default `<out>/cache.sqlite`. */
  cache?: string | null;
  format?: Exclude<ShardFormat, 'arrow'>;
  rowsPerShard?: number;
  /** Keep only this shard's images (see sharding.ts). */
  shard?: Shard | null;
  /**
   * When aborted (the CLI wires SIGINT and SIGTERM to it): take no new
   * images, finish those in flight, write their shards, and mark the
   * manifest "interrupted".
   */
  signal?: AbortSignal;
  /**
   * When request slots are free at the end of a run, ask a round's checks
   * and reduce at once (default true); see loop.ts `checkAndReduce`.
   */
  speculate?: boolean;
  /** Images worked on at once (default: twice `maxConcurrency`). */
  imagesInFlight?: number;
  /** Above this share of failed images the run exits non-zero. */
  maxFailureRate?: number;
  /** Write into a folder that holds a run made with other settings. */
  force?: boolean;
  /** Only the first N images of the input (after `shard`): a trial run on a big input. */
  limit?: number;
  /** Said to the user about the output folder (a stale lock taken over, leftovers removed); default: stderr. */
  warn?: (message: string) => void;
  onProgress?: (p: { done: number; total: number; inFlight: number; requests: number; accepted: number; generated: number; tokens: number }) => void;
}

/** One line per turn a check took out: image, prompt_type, reason, question, answer. */
export const TURNS_REJECTED_FILE = 'turns-rejected.jsonl';

export interface Conversation {
  id: string;
  image: string;
  promptType: string;
  /** 'llm', or 'facts' for conversations built from the record alone. */
  generator: 'llm' | 'facts';
  conversations: { from: 'human' | 'gpt'; value: string }[];
  information: string[];
  removed: string[];
  /** Where the tree's part of `information` came from (see loop.ts TreeDescription); 'none' for facts conversations. */
  treeDescription: TreeDescription;
  model: string;
  temperature: number;
  maxTokens: number;
  seed: number | null;
}

export interface PromptTypeStats {
  /**
   * 'generate': a prompt type of the distribution (its answers become
   * conversations); 'internal': the loop's own prompts (QA to facts, tree
   * description and its check, turn checks, reduce), counted as asks and
   * failures only.
   */
  role: 'generate' | 'internal' | 'facts';
  /** Answers asked for (from the servers or the cache). */
  asks: number;
  /** Answers that parsed into a conversation (generation prompts). */
  generated: number;
  /** Conversations kept after the checks. */
  accepted: number;
  turnsRejected: number;
  conversationsRejected: number;
  /** Answers that could not be used, for any reason (`unusable` has them by reason). */
  parseFailures: number;
  /** Of those, the model declined the task. */
  refusals: number;
  unusable: Partial<Record<UnusableReason, number>>;
  /** Requests sent to the servers (not answered from the cache). */
  requests: number;
  retries: number;
}

export interface GenerateResult {
  /** Images worked on. */
  images: number;
  /** Images with at least one conversation kept. */
  imagesWithConversations: number;
  /** Images set aside because their requests failed (after retries). */
  failed: number;
  /** Images where no answer to a generation prompt could be used (noise, refusals, cut short ...). */
  unusableImages: number;
  conversations: number;
  perPromptType: Record<string, PromptTypeStats>;
  stops: Record<string, number>;
  /** What became of each image's tree description. */
  treeDescriptions: Partial<Record<TreeDescription, number>>;
  /** Requests sent to the servers. */
  requests: number;
  retries: number;
  /** Answers replayed from the cache: asked in an earlier run, not sent again. */
  cacheHits: number;
  /** Set-aside images by reason (as in rejects.jsonl). */
  rejects: Record<string, number>;
  /** Prompts asked ahead at the end of the run (`speculate`) whose answers were not needed. */
  speculativeUnused: number;
  promptTokens: number;
  completionTokens: number;
  shards: ShardInfo[];
  seconds: number;
  /** Stopped early by the signal: what is written is complete, but not everything was done. */
  interrupted: boolean;
}

// Shard reading lives in shard-reader.ts; re-exported for the callers that know it from here.
export { readShards } from '../write/shard-reader.js';

/** Every record of a prepared folder, or of NDJSON on stdin when `dir` is '-' (what `prepare --out -` writes). */
/** Columns the LLM loop does not read. */
const LEAN_SKIP = ['boxes.list.item.mask', 'tree_nodes'];

/**
 * Prepared records from a folder of shards, or NDJSON on stdin ('-').
 * `lean`: the LLM loop's reading, without what it never looks at (box masks
 * and tree nodes, most of a shard's bytes): masks come back null and tree
 * nodes empty. Reading a row group that way measured 3-4x faster.
 */
export async function* readPrepared(dir: string, opts: { lean?: boolean } = {}): AsyncGenerator<ImageRecord> {
  if (dir !== '-') {
    if (!opts.lean) {
      yield* readShards<ImageRecord>(dir);
      return;
    }
    for await (const rec of readShards<ImageRecord>(dir, undefined, LEAN_SKIP)) {
      for (const b of rec.boxes) b.mask ??= null;
      rec.treeNodes ??= [];
      yield rec;
    }
    return;
  }
  let line = 0;
  for await (const text of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    line++;
    if (!text.trim()) continue;
    let rec: Partial<ImageRecord>;
    try {
      // NDJSON rows have the shards' column names (tree_nodes, source_id): fields are camelCase.
      rec = camelKeys(JSON.parse(text)) as Partial<ImageRecord>;
    } catch (err) {
      throw new InstructifyError('E_JSON_SYNTAX', `line ${line} of stdin is not a JSON record (generate --in - reads the NDJSON that prepare --out - writes)`, { file: '-', cause: err });
    }
    if (typeof rec.image !== 'string') throw new InstructifyError('E_BAD_RECORD', `line ${line} of stdin has no "image"`, { file: '-' });
    // Lists a hand-made record leaves out are empty, not missing.
    yield { width: null, height: null, ref: rec.image, sources: [], absent: [], tree: null, ...rec, captions: rec.captions ?? [], facts: rec.facts ?? [], boxes: rec.boxes ?? [], qa: rec.qa ?? [], regions: rec.regions ?? [], treeNodes: rec.treeNodes ?? [] } as ImageRecord;
  }
}

export function conversationId(image: string, index: number, promptType: string): string {
  return createHash('sha256').update(`${image}\u0000${index}\u0000${promptType}`).digest('hex').slice(0, 20);
}

/**
 * How much LLM work an image will take, roughly: its rounds run until most
 * of its information is used, so the characters of information it starts
 * with (captions, facts, QA pairs, tree). Only the order of waiting images
 * depends on it, never what is generated.
 */
export function expectedWork(rec: ImageRecord): number {
  let chars = (rec.tree?.length ?? 0) / 4;
  for (const c of rec.captions) chars += c.text.length;
  for (const f of rec.facts ?? []) chars += f.text.length;
  for (const q of rec.qa) chars += q.question.length + (q.answer?.length ?? 0);
  return Math.round(chars);
}

/** Work beyond this counts as this much: it bounds how far an image can jump the line. */
export const WORK_CAP = 2000;

/**
 * The start priority of the image read `index`-th: bigger work first, but
 * an image loses WORK_CAP / window for each image read before it, so it can
 * pass at most `window` images that arrived earlier. Without that bound a
 * small image could wait until the input ends while every image after it
 * sat finished in memory (shards are written in input order).
 */
export function startPriority(work: number, index: number, window: number): number {
  return Math.min(work, WORK_CAP) - (index * WORK_CAP) / Math.max(1, window);
}

function checkGenerateOptions(o: GenerateOptions): void {
  const maxFailureRate = o.maxFailureRate ?? 0.01;
  if (!(maxFailureRate >= 0 && maxFailureRate <= 1)) throw new InstructifyError('E_OPTION', `--max-failure-rate must be from 0 to 1, got ${maxFailureRate}`);
  if (o.imagesInFlight !== undefined && !(Number.isInteger(o.imagesInFlight) && o.imagesInFlight >= 1)) {
    throw new InstructifyError('E_OPTION', `images in flight must be a positive whole number, got ${o.imagesInFlight}`);
  }
  if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit >= 1)) throw new InstructifyError('E_OPTION', `--limit must be a positive whole number, got ${o.limit}`);
}

/** What generate settled before it wrote anything: input, prompts, servers, the claimed output folder. */
interface OpenedGenerate {
  inputManifest: { status?: string; counts?: { images?: number } };
  prompts: Map<string, PromptSpec>;
  distribution: Distribution;
  client: LlmClient | null;
  settings: Record<string, unknown>;
  fingerprint: string;
  claim: ClaimedOutput;
}

/**
 * Phase 1: the input is checked, the settings fingerprinted and the output
 * folder claimed; every refusal comes before anything is written.
 */
async function openGenerate(o: GenerateOptions): Promise<OpenedGenerate> {
  // The input first: a wrong folder is said before anything is built or written.
  const inputManifest = ((typeof o.input === 'string' && o.input !== '-' ? await expectOutputOf(o.input, 'prepare', 'generate') : null) ?? {}) as OpenedGenerate['inputManifest'];
  const prompts = loadPrompts(o.promptDirs ?? []);
  const distribution = loadDistribution(o.distribution, prompts);
  const client = o.llm ? new LlmClient(o.llm) : null;
  if (typeof o.input === 'string' && inputManifest.status !== undefined && inputManifest.status !== 'complete') {
    throw new InstructifyError('E_OPTION', `the prepared folder ${o.input} is not complete (its manifest says "${inputManifest.status}")`, { file: o.input });
  }
  // What decides the output: a rerun (say after a crash) must use the same, or it would mix two runs.
  const settings = {
    input: typeof o.input === 'string' ? path.resolve(o.input) : 'stream',
    model: client?.model ?? null,
    sampling: client?.sampling ?? null,
    distribution: client ? distribution : null,
    // Each prompt by a hash of its template: a changed prompt file is a changed setting, named in the refusal.
    prompts: client ? Object.fromEntries([...prompts.values()].map((p) => [p.name, `${p.parser} ${createHash('sha256').update(p.template).digest('hex').slice(0, 12)}`])) : null,
    loop: o.loop ?? {},
    shard: o.shard ?? null,
  };
  const fingerprint = createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
  let claim: ClaimedOutput;
  try {
    await expectShards(o.input, inputManifest);
    if (client && o.cache !== null) checkCacheBinding();
    claim = await claimOutput({ out: o.out, command: 'generate', inputs: typeof o.input === 'string' ? [o.input] : [], warn: o.warn });
  } catch (err) {
    await client?.close();
    throw err;
  }
  const previous = (claim.previous ?? {}) as { fingerprint?: string; status?: string; settings?: Record<string, unknown> };
  if (previous.fingerprint && previous.fingerprint !== fingerprint && !o.force) {
    claim.release();
    await client?.close();
    const changes = previous.settings ? settingsDiff(previous.settings, settings) : [];
    throw new InstructifyError(
      'E_OPTION',
      `holds a ${previous.status ?? ''} run made with other settings (${changes.length ? changes.join('; ') : `fingerprint ${previous.fingerprint}, now ${fingerprint}`}): use another --out, the same settings, or --force to replace it`,
      { file: o.out },
    );
  }
  return { inputManifest, prompts, distribution, client, settings, fingerprint, claim };
}

/** A prepared folder with no shard, or one whose manifest counts no image: said before the output folder is made. */
async function expectShards(input: GenerateOptions['input'], inputManifest: OpenedGenerate['inputManifest']): Promise<void> {
  if (typeof input !== 'string' || input === '-') return;
  const shardFiles = (await readdir(input)).filter((n) => SHARD_FILE.test(n));
  if (inputManifest.counts?.images === 0) {
    throw new InstructifyError('E_EMPTY', `the prepared folder holds no record (its manifest counts 0 images): nothing to generate from; see its rejects.jsonl for what prepare set aside`, { file: input });
  }
  if (!shardFiles.length) throw new InstructifyError('E_OPTION', `no shards (part-*.parquet, .jsonl or .arrow) in this folder: is it prepare's output?`, { file: input });
}

/**
 * One generate run's state: counters by prompt type and reason, the shard
 * writer and the rejects file. Finished images are written in input order,
 * whatever order they finish in.
 */
class GenerateRun {
  readonly perType: Record<string, PromptTypeStats> = {};
  readonly stops: Record<string, number> = {};
  readonly treeDescriptions: Partial<Record<TreeDescription, number>> = {};
  readonly rejectCounts: Record<string, number> = {};
  readonly callStats: CallStats = { requests: {}, cacheHits: 0, promptTokens: 0, completionTokens: 0 };
  readonly writer: ShardWriter;
  readonly rejects: WriteStream;
  /** Turns the checks took out, with why: what the report shows beside the kept conversations. */
  readonly turnsRejected: WriteStream | null;
  readonly cache: ResponseCache | null;
  readonly call: ReturnType<typeof llmCall> | null;
  readonly model: string;
  readonly sampling: { temperature: number; maxTokens: number; seed: number | null };
  images = 0;
  imagesWithConversations = 0;
  unusableImages = 0;
  done = 0;
  failed = 0;
  conversations = 0;
  speculativeUnused = 0;
  private readonly finished = new Map<number, Conversation[]>();
  private nextToWrite = 0;
  private writing = Promise.resolve();

  constructor(
    readonly o: GenerateOptions,
    readonly opened: OpenedGenerate,
  ) {
    const { client, distribution } = opened;
    const cacheFile = client === null ? null : o.cache === undefined ? path.join(o.out, 'cache.sqlite') : o.cache;
    this.cache = cacheFile ? new ResponseCache(cacheFile) : null;
    this.call = client ? llmCall(client, this.cache, this.callStats) : null;
    this.model = client?.model ?? 'none';
    this.sampling = client?.sampling ?? { temperature: 0, maxTokens: 0, seed: null };
    this.writer = new ShardWriter({ dir: o.out, prefix: `part-${shardTag(o.shard ?? null)}0`, format: o.format ?? 'parquet', rowsPerShard: o.rowsPerShard ?? 10_000, metadata: [...conversationSchema.metadata], schema: conversationSchema });
    this.rejects = createWriteStream(path.join(o.out, 'rejects.jsonl'));
    this.turnsRejected = client ? createWriteStream(path.join(o.out, TURNS_REJECTED_FILE)) : null;
    // Every prompt the run may use has a row, zeros included: a type that kept nothing is news, not noise.
    if (client) for (const k of [...distribution.types.map((t) => t.prompt), ...LOOP_PROMPTS]) this.typeStats(k);
  }

  readonly typeStats = (k: string): PromptTypeStats => {
    const { prompts } = this.opened;
    const role: PromptTypeStats['role'] = prompts.get(k)?.role === 'generate' ? 'generate' : prompts.has(k) ? 'internal' : 'facts';
    return (this.perType[k] ??= { role, asks: 0, generated: 0, accepted: 0, turnsRejected: 0, conversationsRejected: 0, parseFailures: 0, refusals: 0, unusable: {}, requests: 0, retries: 0 });
  };

  setAside(reason: string, image: string, detail: string): void {
    this.rejectCounts[reason] = (this.rejectCounts[reason] ?? 0) + 1;
    this.rejects.write(JSON.stringify({ reason, detail, image }) + '\n');
  }

  /** The conversations of one image: from the LLM loop when there are servers, else from the facts. */
  async conversationsOf(rec: ImageRecord, spare: (() => boolean) | undefined): Promise<Conversation[]> {
    const { prompts, distribution, client } = this.opened;
    let results;
    let treeDescription: TreeDescription = 'none';
    if (this.call) {
      const call = this.call;
      // An image replayed from the cache (a rerun after a crash) never
      // speculates: a speculative prompt the first run did not send would
      // be a request the rerun did not need.
      let asked = false;
      const onRequest = () => void (asked = true);
      const loop = await runLoop(rec, {
        prompts,
        distribution,
        call: (spec, text, priority, attempt) => call(spec, text, priority, attempt, onRequest),
        options: this.o.loop,
        spare: spare && (() => asked && spare()),
      });
      mergeStats(loop.stats, this.typeStats);
      this.speculativeUnused += loop.stats.speculativeUnused;
      this.stops[loop.stats.stop] = (this.stops[loop.stats.stop] ?? 0) + 1;
      this.treeDescriptions[loop.stats.treeDescription] = (this.treeDescriptions[loop.stats.treeDescription] ?? 0) + 1;
      results = loop.results;
      treeDescription = loop.stats.treeDescription;
      for (const c of loop.checkedOut) {
        for (const t of c.turns) this.turnsRejected?.write(JSON.stringify({ image: rec.image, prompt_type: c.promptType, reason: c.reason, question: t.question, answer: t.answer }) + '\n');
      }
      const why = unusableGeneration(loop.stats, distribution.types.map((t) => t.prompt));
      if (why) {
        this.unusableImages++;
        this.setAside('unusable-answers', rec.image, why);
      }
    } else {
      results = factConversations(rec, { seed: this.o.loop?.seed ?? 0, maxTurns: 8 });
      for (const r of results) {
        this.typeStats(r.promptType).generated++;
        this.typeStats(r.promptType).accepted++;
      }
    }
    return results.map((r, i) => ({
      id: conversationId(rec.image, i, r.promptType),
      image: rec.image,
      promptType: r.promptType,
      generator: client ? 'llm' : 'facts',
      conversations: r.turns.flatMap((t, k) => [
        { from: 'human' as const, value: k === 0 ? `<image>\n${t.question}` : t.question },
        { from: 'gpt' as const, value: t.answer },
      ]),
      information: r.input,
      removed: r.removed,
      treeDescription,
      model: this.model,
      temperature: this.sampling.temperature,
      maxTokens: this.sampling.maxTokens,
      seed: this.sampling.seed,
    }));
  }

  /** The image read `index`-th is done: its rows are written once every image before it is. */
  finish(index: number, rows: Conversation[]): Promise<void> {
    this.done++;
    this.finished.set(index, rows);
    this.writing = this.writing.then(async () => {
      while (this.finished.has(this.nextToWrite)) {
        const ready = this.finished.get(this.nextToWrite)!;
        this.finished.delete(this.nextToWrite++);
        if (ready.length) await this.writer.add(ready);
      }
    });
    return this.writing;
  }

  async close(): Promise<ShardInfo[]> {
    await this.writing;
    const shards = await this.writer.close();
    await new Promise<void>((resolve) => this.rejects.end(() => resolve()));
    const turnsRejected = this.turnsRejected;
    if (turnsRejected) await new Promise<void>((resolve) => turnsRejected.end(() => resolve()));
    for (const [k, n] of Object.entries(this.callStats.requests)) this.typeStats(k).requests = n;
    for (const [k, n] of Object.entries(this.callStats.retries ?? {})) this.typeStats(k).retries = n;
    return shards;
  }

  result(shards: ShardInfo[], seconds: number, interrupted: boolean, llm: { requests: number; retries: number }): GenerateResult {
    return {
      images: this.images,
      imagesWithConversations: this.imagesWithConversations,
      failed: this.failed,
      unusableImages: this.unusableImages,
      conversations: this.conversations,
      perPromptType: this.perType,
      stops: this.stops,
      treeDescriptions: this.treeDescriptions,
      requests: llm.requests,
      retries: llm.retries,
      cacheHits: this.callStats.cacheHits,
      rejects: this.rejectCounts,
      speculativeUnused: this.speculativeUnused,
      promptTokens: this.callStats.promptTokens,
      completionTokens: this.callStats.completionTokens,
      shards,
      seconds,
      interrupted,
    };
  }

  manifestBase(): Record<string, unknown> {
    const { o } = this;
    const { client, distribution, fingerprint, settings } = this.opened;
    return {
      tool: 'instructify',
      version: VERSION,
      command: 'generate',
      schema: CONVERSATION_SCHEMA_VERSION,
      input: typeof o.input === 'string' ? o.input : '(streamed from prepare)',
      generator: client ? 'llm' : 'facts',
      fingerprint,
      settings,
      shard: o.shard ?? null,
      limit: o.limit ?? null,
      model: this.model,
      sampling: this.sampling,
      distribution: client ? distribution.name : null,
    };
  }
}

/**
 * generate, phase by phase: open (input, settings, output folder), then
 * images through the loop side by side with the input read only as fast as
 * they finish, then the manifest and the failure rate.
 */
export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const t0 = performance.now();
  checkGenerateOptions(o);
  const maxFailureRate = o.maxFailureRate ?? 0.01;
  const opened = await openGenerate(o);
  const { client, claim } = opened;
  const disposeHardStop = onHardStop(claim.stopNow);
  if (client) preloadLanguageData();
  for (const n of await readdir(o.out)) if (/^part-[\w-]+\.(parquet|jsonl)(\.tmp)?$/.test(n) || n === 'manifest.json' || n === 'rejects.jsonl' || n === TURNS_REJECTED_FILE) await rm(path.join(o.out, n), { force: true });
  const run = new GenerateRun(o, opened);
  const manifestBase = run.manifestBase();
  const writeManifest = async (m: object) => {
    const file = path.join(o.out, 'manifest.json');
    await writeFile(`${file}.tmp`, JSON.stringify({ ...manifestBase, ...m }, null, 2) + '\n');
    await rename(`${file}.tmp`, file);
  };
  await writeManifest({ status: 'running' });

  const slots = client ? Math.max(1, o.llm!.maxConcurrency ?? 256) : 1;
  // Twice as many images as request slots: while the input lasts, requests
  // wait for slots (so none stands empty while an image works between its
  // calls), and free slots mean the run is ending, which is when the loop
  // may spend them on speculative checks (`spare`).
  const concurrency = client ? o.imagesInFlight ?? 2 * slots : 1;
  const queue = new PQueue({ concurrency });
  /**
   * Images that failed (after their retries) since the last one that did
   * not. Past `giveUpAfter` (every image in flight, at least 16) the servers
   * are taken to be down or misconfigured and no more images are started:
   * otherwise a dead server would have every remaining image of a large
   * input tried and set aside, one retry budget at a time.
   */
  let failStreak = 0;
  const giveUpAfter = Math.max(16, concurrency);
  let gaveUp: string | null = null;
  const spare = client && (o.speculate ?? true) ? () => client.spare : undefined;
  const total = opened.inputManifest.counts?.images ?? 0;
  const progress = () =>
    o.onProgress?.({
      done: run.done,
      total,
      inFlight: queue.pending,
      requests: client?.stats.requests ?? 0,
      accepted: run.conversations,
      generated: Object.values(run.perType).reduce((s, t) => s + t.generated, 0),
      tokens: run.callStats.promptTokens + run.callStats.completionTokens,
    });
  try {
    // The LLM loop reads neither masks nor tree nodes; the facts generator reads the tree nodes.
    for await (const rec of typeof o.input === 'string' ? readPrepared(o.input, { lean: client !== null }) : o.input) {
      if (o.signal?.aborted || gaveUp !== null) break;
      if (!inShard(rec.ref, o.shard ?? null)) continue;
      if (o.limit !== undefined && run.images >= o.limit) break;
      // Backpressure: read the next record only when a slot is about to free up.
      await queue.onSizeLessThan(concurrency);
      // Let the event loop run between images: while the first slots fill, the
      // requests already made go out (and connections open) instead of
      // waiting until every slot has its image (measured: the first answers
      // came back ~600 ms after their request at 256 slots, 200 ms without the wait).
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (gaveUp !== null) break;
      const index = run.images++;
      // Images waiting for a slot start biggest first (p-queue runs higher
      // priorities first), within a bounded window: the last images of a run
      // are then the short ones, so the server stays full longer at the end.
      void queue.add(async () => {
        let rows: Conversation[] = [];
        try {
          rows = await run.conversationsOf(rec, spare);
          run.conversations += rows.length;
          if (rows.length) run.imagesWithConversations++;
          failStreak = 0;
        } catch (err) {
          // An image whose calls still fail after retries is set aside; the run goes on, unless they all do.
          run.failed++;
          if (++failStreak >= giveUpAfter) gaveUp ??= `the last ${failStreak} images all failed (the last: ${(err as Error).message})`;
          run.setAside('llm-failed', rec.image, (err as Error).message);
        }
        await run.finish(index, rows);
        progress();
      }, { priority: startPriority(expectedWork(rec), index, Math.max(16, slots)) });
    }
    await queue.onIdle();
    if (run.images === 0 && !o.signal?.aborted) throw new InstructifyError('E_EMPTY', 'no input record: nothing was generated (did prepare set every record aside?)', { file: typeof o.input === 'string' ? o.input : undefined });
    const shards = await run.close();
    const llm = client?.snapshot() ?? { requests: 0, retries: 0, endpoints: {} };
    const result = run.result(shards, Math.round(performance.now() - t0) / 1000, o.signal?.aborted ?? false, llm);
    // An image whose model answers were all unusable failed as surely as one whose requests did.
    const failureRate = result.images ? (result.failed + result.unusableImages) / result.images : 0;
    if (gaveUp !== null) {
      await writeManifest({ status: 'failed', finished: new Date().toISOString(), ...result, endpoints: llm.endpoints, failureRate, error: { message: gaveUp } });
      throw new InstructifyError(
        'E_LLM',
        `${gaveUp}; no more images were started. Is the server up and serving --model ${run.model}? The images that finished are in ${o.out}; run the same command again to go on (answers already given come from the cache).`,
      );
    }
    const tooMany = failureRate > maxFailureRate;
    await writeManifest({ status: tooMany ? 'failed' : result.interrupted ? 'interrupted' : 'complete', finished: new Date().toISOString(), ...result, endpoints: llm.endpoints, failureRate });
    if (tooMany) throw tooManyFailures(result, failureRate, maxFailureRate, o.out);
    return result;
  } catch (err) {
    // Images still being worked on must finish before their streams close.
    queue.clear();
    await queue.onIdle();
    await run.writer.abort();
    run.rejects.destroy();
    run.turnsRejected?.destroy();
    if (err instanceof InstructifyError && err.code === 'E_EMPTY') await writeManifest({ status: 'empty', finished: new Date().toISOString(), images: 0 }).catch(() => {});
    else if (!(err instanceof InstructifyError && err.code === 'E_LLM')) {
      await writeManifest({ status: 'failed', error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message } }).catch(() => {});
    }
    throw err;
  } finally {
    run.cache?.close();
    await client?.close();
    disposeHardStop();
    claim.release();
  }
}

function tooManyFailures(result: GenerateResult, failureRate: number, maxFailureRate: number, out: string): InstructifyError {
  const { failed, unusableImages, images } = result;
  const what = [failed ? `${failed} failed (requests)` : '', unusableImages ? `${unusableImages} had no usable answer (${unusableSummary(result.perPromptType)})` : ''].filter(Boolean).join(' and ');
  return new InstructifyError(
    'E_LLM',
    `of ${images} images, ${what}: ${(100 * failureRate).toFixed(1)}%, more than --max-failure-rate ${maxFailureRate}. Nothing unusable was kept; see ${path.join(out, 'rejects.jsonl')}, and try the model on a few images with preview`,
  );
}

/** The settings that differ, as "loop.seed: 1 -> 2", dotted paths in order. */
export function settingsDiff(before: unknown, after: unknown, at = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => settingsDiff(before[k], after[k], at ? `${at}.${k}` : k));
  }
  const show = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [`${at}: ${show(before)} -> ${show(after)}`];
}

/** The loop's own prompts, beside the distribution's. */
export const LOOP_PROMPTS = ['qa-to-facts', 'tree-to-description', 'tree-check', 'check', 'reduce'];

/**
 * Why no conversation of an image could come from the model: generation
 * prompts were asked and no answer parsed, or answers parsed but not one
 * verdict of their checks could be read. Null otherwise: a conversation
 * kept, or parsed and judged False (the filter working, not a failure).
 */
export function unusableGeneration(s: LoopStats, generationPrompts: string[]): string | null {
  let asks = 0;
  let parsed = 0;
  let kept = 0;
  const reasons: Partial<Record<UnusableReason, number>> = {};
  const count = (k: string) => {
    for (const [r, n] of Object.entries(s.unusable[k] ?? {}) as [UnusableReason, number][]) reasons[r] = (reasons[r] ?? 0) + n;
  };
  for (const k of generationPrompts) {
    asks += s.asks[k] ?? 0;
    parsed += s.generated[k] ?? 0;
    kept += s.accepted[k] ?? 0;
    count(k);
  }
  const list = () => UNUSABLE_REASONS.filter((r) => reasons[r]).map((r) => `${r} ${reasons[r]}`).join(', ');
  if (asks === 0 || kept > 0) return null;
  if (parsed === 0) return `${asks} answers to generation prompts, none usable: ${list()}`;
  const checks = s.asks.check ?? 0;
  if (checks > 0 && (s.parseFailures.check ?? 0) === checks) {
    count('check');
    return `${parsed} conversations parsed, but none of the ${checks} answers to their checks was a verdict: ${list()}`;
  }
  return null;
}

/** Unusable answers over every prompt, by reason: "format 120, refusal 3". */
export function unusableSummary(perType: Record<string, PromptTypeStats>): string {
  const by: Partial<Record<UnusableReason, number>> = {};
  for (const t of Object.values(perType)) for (const [r, n] of Object.entries(t.unusable) as [UnusableReason, number][]) by[r] = (by[r] ?? 0) + n;
  return UNUSABLE_REASONS.filter((r) => by[r]).map((r) => `${r} ${by[r]}`).join(', ') || 'none';
}

function mergeStats(s: LoopStats, typeStats: (k: string) => PromptTypeStats): void {
  for (const [k, n] of Object.entries(s.asks)) typeStats(k).asks += n;
  for (const [k, by] of Object.entries(s.unusable)) {
    const t = typeStats(k);
    for (const [r, n] of Object.entries(by) as [UnusableReason, number][]) t.unusable[r] = (t.unusable[r] ?? 0) + n;
    t.refusals += by.refusal ?? 0;
  }
  for (const [k, n] of Object.entries(s.generated)) typeStats(k).generated += n;
  for (const [k, n] of Object.entries(s.accepted)) typeStats(k).accepted += n;
  for (const [k, n] of Object.entries(s.turnsRejected)) typeStats(k).turnsRejected += n;
  for (const [k, n] of Object.entries(s.conversationsRejected)) typeStats(k).conversationsRejected += n;
  for (const [k, n] of Object.entries(s.parseFailures)) typeStats(k).parseFailures += n;
}
