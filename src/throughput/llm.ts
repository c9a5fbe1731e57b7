import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import { readPrepared } from '../generate/generate.js';
import { runLoop } from '../generate/loop.js';
import { loadDistribution, loadPrompts } from '../generate/prompts.js';
import { LlmClient, type Sampling } from '../llm/client.js';
import { fakeAnswer } from '../llm/fake-answers.js';
import { prepare } from '../prepare/prepare.js';
import { writeSyntheticCoco } from '../sources/synthetic.js';
import type { ImageRecord } from '../types.js';
import { describeMachine, type Machine } from './machine.js';

/**
 * `instructify bench --llm-url URL --model M`: how much the user's own
 * server sustains. The requests are the ones `generate` would send (the
 * real prompts filled from a sample of prepared records), replayed by a
 * fixed number of clients at rising concurrency. Each level runs for a
 * bounded time and request count; the sweep stops at the knee (the server
 * refuses or fails requests, or throughput stops growing), then narrows
 * the knee down, and recommends a `--max-concurrency`.
 */
export interface LlmBenchOptions {
  endpoints: string[];
  model: string;
  apiKeyEnv?: string;
  sampling?: Partial<Sampling>;
  /** Concurrency levels to try, rising. */
  levels: number[];
  /** Seconds per level. */
  secondsPerLevel: number;
  /** Requests over the whole bench, at most. */
  maxRequests: number;
  /** Prepared folder to draw records from; null: a seeded sample made here. */
  input: string | null;
  /** Records drawn for the request mix. */
  sample: number;
  /** Extra steps narrowing the knee between two tried levels. */
  refineSteps: number;
  log?: (line: string) => void;
}

export interface LevelResult {
  concurrency: number;
  requests: number;
  ok: number;
  throttled: number;
  errors: number;
  seconds: number;
  requestsPerSecond: number;
  completionTokensPerSecond: number;
  promptTokensPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number };
  /** At most 1% of requests throttled or failed. */
  clean: boolean;
}

export interface LlmBenchResult {
  machine: Machine;
  endpoints: string[];
  model: string;
  prompts: { distinct: number; meanChars: number; types: Record<string, number> };
  levels: LevelResult[];
  knee: 'refused' | 'plateau' | 'not reached' | 'request budget';
  recommendedMaxConcurrency: number;
  bestRequestsPerSecond: number;
}

const CLEAN_FAILURE_SHARE = 0.01;
/** How long a client waits after being refused before its next request. */
const THROTTLE_PAUSE_MS = 100;
/** A level that adds less than this over the best so far has reached the plateau. */
const PLATEAU_GAIN = 1.1;
/** The recommendation: the lowest clean level within this share of the best throughput. */
const NEAR_BEST = 0.9;

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** The prompts generate would send for these records, captured by running the loop offline. */
export async function capturePrompts(records: ImageRecord[], seed = 0): Promise<{ type: string; text: string }[]> {
  const prompts = loadPrompts();
  const distribution = loadDistribution('instructify-mix', prompts);
  const captured: { type: string; text: string }[] = [];
  for (const rec of records) {
    await runLoop(rec, {
      prompts,
      distribution,
      options: { seed },
      call: async (spec, text) => {
        captured.push({ type: spec.name, text });
        return fakeAnswer(text);
      },
    });
  }
  return captured;
}

async function sampleRecords(o: LlmBenchOptions): Promise<ImageRecord[]> {
  const out: ImageRecord[] = [];
  if (o.input !== null) {
    for await (const r of readPrepared(o.input)) {
      out.push(r);
      if (out.length >= o.sample) break;
    }
    if (!out.length) throw new InstructifyError('E_OPTION', `no records in ${o.input}`, { file: o.input });
    return out;
  }
  // No prepared folder given: a seeded COCO-like sample (captions, boxes, masks, trees).
  const dir = path.join(os.tmpdir(), `instructify-bench-llm-${process.pid}`);
  await mkdir(dir, { recursive: true });
  try {
    const instancesFile = path.join(dir, 'instances.json');
    const captionsFile = path.join(dir, 'captions.json');
    await writeSyntheticCoco({ instancesFile, captionsFile, count: o.sample, seed: 7 });
    await prepare({ sources: [{ kind: 'coco-captions', paths: [captionsFile] }, { kind: 'coco-instances', paths: [instancesFile] }], images: null, out: path.join(dir, 'prepared'), rejects: null });
    for await (const r of readPrepared(path.join(dir, 'prepared'))) out.push(r);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runLevel(o: LlmBenchOptions, concurrency: number, prompts: { text: string }[], budget: number): Promise<LevelResult> {
  const client = new LlmClient({
    endpoints: o.endpoints,
    model: o.model,
    apiKeyEnv: o.apiKeyEnv,
    sampling: o.sampling,
    maxConcurrency: concurrency,
    initialConcurrency: concurrency,
    adaptive: false,
    retries: 0,
    benchAfter: Number.MAX_SAFE_INTEGER,
  });
  const latencies: number[] = [];
  let issued = 0;
  let next = 0;
  let fatal: Error | null = null;
  let firstFailure: Error | null = null;
  const t0 = performance.now();
  const deadline = t0 + o.secondsPerLevel * 1000;
  // A fixed set of clients, each sending its next request when the last is answered.
  const worker = async () => {
    while (performance.now() < deadline && issued < budget && fatal === null) {
      issued++;
      const prompt = prompts[next++ % prompts.length]!;
      const t = performance.now();
      try {
        await client.chat([{ role: 'user', content: prompt.text }]);
        latencies.push(performance.now() - t);
      } catch (err) {
        firstFailure ??= err as Error;
        // 4xx other than 429 (unknown model, bad key): measuring further is pointless.
        if (err instanceof InstructifyError && /answered HTTP 4/.test(err.message)) fatal = err;
        // Refused (429/503) or timed out: wait as a polite client would, rather than spin on refusals.
        else if ((err as { cause?: { overload?: boolean } }).cause?.overload) await new Promise((r) => setTimeout(r, THROTTLE_PAUSE_MS));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const stats = client.snapshot();
  await client.close();
  if (fatal) throw fatal;
  const throttled = Object.values(stats.endpoints).reduce((s, e) => s + e.throttled, 0);
  const ok = latencies.length;
  const errors = Math.max(0, issued - ok - throttled);
  // Nothing got through and nothing was merely refused: no server to measure (wrong URL, not started).
  const failure = firstFailure as Error | null; // set by the workers
  if (ok === 0 && throttled === 0 && failure !== null) {
    throw new InstructifyError('E_LLM', `not one of ${issued} requests got an answer at concurrency ${concurrency}; the first: ${failure.message}. Is the server up at that address?`, { cause: failure });
  }
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    requests: issued,
    ok,
    throttled,
    errors,
    seconds,
    requestsPerSecond: ok / seconds,
    completionTokensPerSecond: stats.completionTokens / seconds,
    promptTokensPerSecond: stats.promptTokens / seconds,
    latencyMs: { p50: percentile(latencies, 0.5), p90: percentile(latencies, 0.9), p99: percentile(latencies, 0.99) },
    clean: ok > 0 && (throttled + errors) / Math.max(1, issued) <= CLEAN_FAILURE_SHARE,
  };
}

export function validateLlmBenchOptions(o: LlmBenchOptions): void {
  const bad = (m: string) => new InstructifyError('E_OPTION', m);
  if (!o.endpoints.length) throw bad('bench --llm-url needs at least one URL');
  if (!o.model) throw bad('bench --llm-url needs --model');
  if (!o.levels.length || o.levels.some((l) => !Number.isInteger(l) || l < 1)) throw bad(`--levels must be positive whole numbers, got ${o.levels.join(',')}`);
  for (let i = 1; i < o.levels.length; i++) if (o.levels[i]! <= o.levels[i - 1]!) throw bad(`--levels must rise, got ${o.levels.join(',')}`);
  if (!(o.secondsPerLevel > 0 && o.secondsPerLevel <= 600)) throw bad(`--seconds must be above 0 and at most 600, got ${o.secondsPerLevel}`);
  if (!(Number.isInteger(o.maxRequests) && o.maxRequests >= 1)) throw bad(`--max-requests must be a positive whole number, got ${o.maxRequests}`);
}

export async function benchLlm(o: LlmBenchOptions): Promise<LlmBenchResult> {
  validateLlmBenchOptions(o);
  const log = o.log ?? (() => {});
  const records = await sampleRecords(o);
  const prompts = await capturePrompts(records);
  if (!prompts.length) throw new InstructifyError('E_OPTION', 'the sampled records gave no prompts (no captions, boxes or QA?)');
  const types: Record<string, number> = {};
  for (const p of prompts) types[p.type] = (types[p.type] ?? 0) + 1;
  log(`${prompts.length} requests from ${records.length} records (${Object.keys(types).length} prompt types), replayed in a fixed order`);

  let remaining = o.maxRequests;
  const tried = new Map<number, LevelResult>();
  const measure = async (c: number): Promise<LevelResult | null> => {
    if (tried.has(c)) return tried.get(c)!;
    if (remaining <= 0) return null;
    // No level may use the whole budget: the knee still needs narrowing after it.
    const r = await runLevel(o, c, prompts, Math.min(remaining, Math.max(100, Math.ceil(o.maxRequests / 8))));
    remaining -= r.requests;
    tried.set(c, r);
    log(`  concurrency ${String(c).padStart(4)}: ${r.requestsPerSecond.toFixed(1)} req/s, p50 ${r.latencyMs.p50.toFixed(0)} ms, ${r.throttled} throttled, ${r.errors} failed of ${r.requests}`);
    return r;
  };
  const bestClean = () => Math.max(0, ...[...tried.values()].filter((r) => r.clean).map((r) => r.requestsPerSecond));

  // 1. Rising levels until the knee.
  let knee: LlmBenchResult['knee'] = 'not reached';
  let lastClean: number | null = null;
  let firstBad: number | null = null;
  for (const c of o.levels) {
    const before = bestClean();
    const r = await measure(c);
    if (r === null) {
      knee = 'request budget';
      break;
    }
    if (!r.clean) {
      knee = 'refused';
      firstBad = c;
      break;
    }
    lastClean = c;
    if (before > 0 && r.requestsPerSecond < before * PLATEAU_GAIN) {
      knee = 'plateau';
      break;
    }
  }

  // 2. Refused: narrow down the highest clean level between the last clean and the first refused.
  if (knee === 'refused' && lastClean !== null && firstBad !== null) {
    let lo = lastClean;
    let hi = firstBad;
    for (let i = 0; i < o.refineSteps; i++) {
      const mid = Math.round(Math.sqrt(lo * hi));
      if (mid <= lo || mid >= hi) break;
      const r = await measure(mid);
      if (r === null) break;
      if (r.clean) lo = mid;
      else hi = mid;
    }
  }

  // 3. The lowest clean level near the best throughput; between it and the level below, try the middle.
  const pickLevel = () => {
    const best = bestClean();
    const ok = [...tried.values()].filter((r) => r.clean && r.requestsPerSecond >= best * NEAR_BEST).map((r) => r.concurrency);
    return ok.length ? Math.min(...ok) : 1;
  };
  let recommended = pickLevel();
  for (let i = 0; i < o.refineSteps && knee === 'plateau'; i++) {
    const below = Math.max(0, ...[...tried.keys()].filter((c) => c < recommended));
    const mid = Math.round(Math.sqrt(Math.max(1, below) * recommended));
    if (below === 0 || mid <= below || mid >= recommended) break;
    if ((await measure(mid)) === null) break;
    const again = pickLevel();
    if (again === recommended) break;
    recommended = again;
  }

  return {
    machine: describeMachine(),
    endpoints: o.endpoints,
    model: o.model,
    prompts: { distinct: prompts.length, meanChars: prompts.reduce((s, p) => s + p.text.length, 0) / prompts.length, types },
    levels: [...tried.values()].sort((a, b) => a.concurrency - b.concurrency),
    knee,
    recommendedMaxConcurrency: recommended,
    bestRequestsPerSecond: bestClean(),
  };
}

export function formatLlmBench(r: LlmBenchResult): string {
  const m = r.machine;
  const lines = [
    `client machine: ${m.cpus} x ${m.cpuModel}, Node ${m.node}`,
    `server: ${r.endpoints.join(', ')} model ${r.model}`,
    `requests: the real prompts of ${Object.keys(r.prompts.types).length} types (${r.prompts.distinct} distinct, ${r.prompts.meanChars.toFixed(0)} characters on average)`,
    '',
    'concurrency | requests | req/s   | completion tok/s | prompt tok/s | p50 ms | p90 ms | p99 ms | throttled | failed',
    '------------|----------|---------|------------------|--------------|--------|--------|--------|-----------|-------',
  ];
  for (const l of r.levels) {
    lines.push(
      [
        String(l.concurrency).padStart(11),
        String(l.requests).padStart(8),
        l.requestsPerSecond.toFixed(1).padStart(7),
        l.completionTokensPerSecond.toFixed(0).padStart(16),
        l.promptTokensPerSecond.toFixed(0).padStart(12),
        l.latencyMs.p50.toFixed(0).padStart(6),
        l.latencyMs.p90.toFixed(0).padStart(6),
        l.latencyMs.p99.toFixed(0).padStart(6),
        String(l.throttled).padStart(9),
        String(l.errors).padStart(6),
      ].join(' | '),
    );
  }
  const why = { refused: 'the server began refusing or failing requests', plateau: 'throughput stopped growing', 'not reached': 'every level tried was clean and still growing: try higher --levels', 'request budget': 'the request budget ran out' }[r.knee];
  lines.push('', `knee: ${why}`, `recommended: --max-concurrency ${r.recommendedMaxConcurrency} (about ${r.bestRequestsPerSecond.toFixed(1)} requests/s at best)`);
  return lines.join('\n');
}
