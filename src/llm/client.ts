import pluralize from 'pluralize';
import { Pool } from 'undici';
import { InstructifyError } from '../errors.js';

/**
 * A client for OpenAI-compatible `/v1/chat/completions` servers (vLLM,
 * SGLang, llama.cpp server, Ollama, TGI), built for throughput:
 *
 * - one keep-alive undici Pool per endpoint, with connect, header and body
 *   timeouts;
 * - retries on network errors, 429 and 5xx, with exponential backoff and
 *   jitter, honouring `Retry-After`;
 * - several endpoints: each request goes to the one with the fewest
 *   requests in flight; an endpoint that keeps failing is benched for a
 *   while and tried again later;
 * - adaptive concurrency per endpoint, as TCP does it: from 64 slots (or the
 *   cap), slow start (one more slot per success) until the first 429, 503
 *   or timeout, then halve (once per window of requests, however many of
 *   them are refused) and grow by about one slot per round trip, under a
 *   total `maxConcurrency`;
 * - the API key comes from an environment variable and appears in no
 *   message, log or stat.
 */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface Sampling {
  temperature: number;
  maxTokens: number;
  seed: number | null;
}

export interface LlmClientOptions {
  /** Base URLs, e.g. http://127.0.0.1:8000/v1 (the path before /chat/completions). */
  endpoints: string[];
  model: string;
  /** Name of the environment variable holding the API key (none if unset or empty). */
  apiKeyEnv?: string;
  sampling?: Partial<Sampling>;
  /** Requests in flight over all endpoints, at most. */
  maxConcurrency?: number;
  /** Where each endpoint's concurrency limit starts (default 64, at most maxConcurrency). */
  initialConcurrency?: number;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** Attempts after the first. */
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Consecutive failures that bench an endpoint, and for how long. */
  benchAfter?: number;
  benchMs?: number;
  /** Random source for jitter (tests make it fixed). */
  random?: () => number;
  /** Adapt each endpoint's concurrency to its answers (default). Off: always `initialConcurrency`, as `bench` needs. */
  adaptive?: boolean;
}

export interface ChatResult {
  /**
   * The answer's text. Reasoning that servers return beside it
   * (`reasoning_content`) is never read: it is not the answer.
   */
  content: string;
  /** Why the server stopped: 'stop', 'length' (cut at max_tokens), 'content_filter', or null if it did not say. */
  finishReason: string | null;
  usage: { promptTokens: number; completionTokens: number };
  endpoint: string;
  attempts: number;
}

export const DEFAULT_SAMPLING: Sampling = { temperature: 0.2, maxTokens: 1000, seed: null };

interface Endpoint {
  url: URL;
  base: string;
  pool: Pool;
  path: string;
  inFlight: number;
  /** Adaptive concurrency limit (fractional; floor is what is allowed). */
  limit: number;
  failures: number;
  benchedUntil: number;
  /** Until the first sign of overload the limit grows by one per success (doubling each round trip). */
  slowStart: boolean;
  /**
   * Counts the cuts. A request remembers it when sent, and only a request
   * sent since the last cut may cut again: a burst of 429s answering one
   * window of requests halves the limit once, as TCP does, instead of
   * halving it once per refused request down to 1.
   */
  cutEpoch: number;
  stats: { requests: number; ok: number; errors: number; throttled: number; benched: number; cuts: number };
}

export interface LlmStats {
  requests: number;
  retries: number;
  failures: number;
  promptTokens: number;
  completionTokens: number;
  endpoints: Record<string, Endpoint['stats'] & { limit: number }>;
}

interface Waiter {
  priority: number;
  seq: number;
  wake: () => void;
}

class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | null,
    /** The server said it is overloaded (429/503) or timed out: cut its concurrency. */
    readonly overload: boolean,
    /** The endpoint itself failed (connection refused, reset, timeout): count towards benching. */
    readonly endpointFault: boolean,
  ) {
    super(message);
  }
}

/** Retry-After: seconds, or an HTTP date. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | null {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return null;
  const secs = Number(s);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(s);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

export class LlmClient {
  private readonly endpoints: Endpoint[];
  private readonly o: Required<Omit<LlmClientOptions, 'sampling' | 'apiKeyEnv'>> & { sampling: Sampling };
  private readonly authorization: string | null;
  /** Requests waiting for a slot: higher priority first, then in the order they asked. */
  private waiters: Waiter[] = [];
  private waiterSeq = 0;
  private totalInFlight = 0;
  readonly stats: LlmStats = { requests: 0, retries: 0, failures: 0, promptTokens: 0, completionTokens: 0, endpoints: {} };

  constructor(options: LlmClientOptions) {
    const bad = (msg: string) => new InstructifyError('E_OPTION', msg);
    if (!options.endpoints.length) throw bad('no LLM endpoint: give --llm-url');
    if (!options.model) throw bad('no model name: give --model');
    this.o = {
      endpoints: options.endpoints,
      model: options.model,
      sampling: { ...DEFAULT_SAMPLING, ...options.sampling },
      maxConcurrency: options.maxConcurrency ?? 256,
      // A start that fills a small server at once; slow start doubles it each round trip from there.
      initialConcurrency: options.initialConcurrency ?? 64,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      headersTimeoutMs: options.headersTimeoutMs ?? 300_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 300_000,
      retries: options.retries ?? 6,
      baseDelayMs: options.baseDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      benchAfter: options.benchAfter ?? 3,
      benchMs: options.benchMs ?? 30_000,
      random: options.random ?? Math.random,
      adaptive: options.adaptive ?? true,
    };
    for (const k of ['maxConcurrency', 'initialConcurrency', 'connectTimeoutMs', 'headersTimeoutMs', 'bodyTimeoutMs', 'benchAfter'] as const) {
      if (!(Number.isFinite(this.o[k]) && this.o[k] >= 1)) throw bad(`${k} must be a number of at least 1, got ${this.o[k]}`);
    }
    if (!(Number.isInteger(this.o.retries) && this.o.retries >= 0)) throw bad(`retries must be a whole number, got ${this.o.retries}`);
    const t = this.o.sampling.temperature;
    if (!(t >= 0 && t <= 2)) throw bad(`temperature must be from 0 to 2, got ${t}`);
    if (!(Number.isInteger(this.o.sampling.maxTokens) && this.o.sampling.maxTokens >= 1)) throw bad(`max tokens must be a positive whole number, got ${this.o.sampling.maxTokens}`);
    const key = options.apiKeyEnv ? process.env[options.apiKeyEnv] : undefined;
    this.authorization = key ? `Bearer ${key}` : null;
    this.endpoints = options.endpoints.map((raw) => {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw bad(`--llm-url "${raw}" is not a URL (e.g. http://127.0.0.1:8000/v1)`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`--llm-url "${raw}" must be http or https`);
      const base = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
      const pool = new Pool(url.origin, {
        connections: this.o.maxConcurrency,
        connectTimeout: this.o.connectTimeoutMs,
        headersTimeout: this.o.headersTimeoutMs,
        bodyTimeout: this.o.bodyTimeoutMs,
        keepAliveTimeout: 30_000,
      });
      const stats = { requests: 0, ok: 0, errors: 0, throttled: 0, benched: 0, cuts: 0 };
      const ep: Endpoint = { url, base, pool, path: `${url.pathname.replace(/\/+$/, '')}/chat/completions`, inFlight: 0, limit: Math.min(this.o.initialConcurrency, this.o.maxConcurrency), failures: 0, benchedUntil: 0, slowStart: true, cutEpoch: 0, stats };
      return ep;
    });
  }

  get sampling(): Sampling {
    return this.o.sampling;
  }

  get model(): string {
    return this.o.model;
  }

  /** Requests in flight now, over all endpoints. */
  get inFlight(): number {
    return this.totalInFlight;
  }

  /**
   * Endpoints a request may go to. Benching steers traffic to healthy
   * endpoints; when all are benched, those coming back soonest are tried
   * (the retry backoff sets the pace).
   */
  private candidates(): Endpoint[] {
    const now = Date.now();
    const live = this.endpoints.filter((e) => e.benchedUntil <= now);
    if (live.length) return live;
    const soonest = Math.min(...this.endpoints.map((e) => e.benchedUntil));
    return this.endpoints.filter((e) => e.benchedUntil === soonest);
  }

  /** The endpoint with the fewest requests in flight that has room; null when all are full or benched. */
  private pick(avoid: Endpoint | null): Endpoint | null {
    if (this.totalInFlight >= this.o.maxConcurrency) return null;
    const candidates = this.candidates();
    let best: Endpoint | null = null;
    for (const e of candidates) {
      if (e.inFlight >= Math.max(1, Math.floor(e.limit))) continue;
      if (e === avoid && candidates.length > 1) continue;
      if (best === null || e.inFlight < best.inFlight) best = e;
    }
    return best;
  }

  private async acquire(avoid: Endpoint | null, priority: number): Promise<Endpoint> {
    const seq = this.waiterSeq++;
    for (let first = true; ; first = false) {
      // A newcomer does not pass requests already waiting.
      const e = first && this.waiters.length ? null : this.pick(avoid);
      if (e) {
        e.inFlight++;
        this.totalInFlight++;
        return e;
      }
      // Every slot taken: wait until a request finishes. One that was woken
      // and still found no room keeps its place (its sequence number).
      await new Promise<void>((wake) => this.enqueue({ priority, seq, wake }));
    }
  }

  private enqueue(w: Waiter): void {
    const q = this.waiters;
    // Binary search for the first waiter that goes after w; the queue is at most a few hundred long.
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = q[mid]!;
      if (m.priority > w.priority || (m.priority === w.priority && m.seq < w.seq)) lo = mid + 1;
      else hi = mid;
    }
    q.splice(lo, 0, w);
  }

  /** Slots are free and no request waits for one: work sent now delays nothing else. */
  get spare(): boolean {
    return this.waiters.length === 0 && this.freeSlots() > 0;
  }

  /** Slots a waiting request could take now (a success may have raised a limit too). */
  private freeSlots(): number {
    let free = 0;
    for (const e of this.candidates()) free += Math.max(0, Math.max(1, Math.floor(e.limit)) - e.inFlight);
    return Math.min(free, this.o.maxConcurrency - this.totalInFlight);
  }

  private release(e: Endpoint): void {
    e.inFlight--;
    this.totalInFlight--;
    // Wake as many waiters as there are free slots, not all of them: with
    // hundreds waiting, waking every one on each answer cost CPU in
    // proportion to the square of the queue.
    for (let n = Math.max(1, this.freeSlots()); n > 0 && this.waiters.length; n--) this.waiters.shift()!.wake();
  }

  private delay(attempt: number, retryAfter: number | null): number {
    // A server that says how long to wait is believed, up to two minutes.
    if (retryAfter !== null) return Math.min(retryAfter, 120_000);
    const exp = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** attempt);
    return exp * (0.5 + this.o.random());
  }

  private async once(e: Endpoint, body: string): Promise<ChatResult> {
    e.stats.requests++;
    this.stats.requests++;
    let res;
    try {
      res = await e.pool.request({
        path: e.path,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.authorization ? { authorization: this.authorization } : {}) },
        body,
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (NETWORK_CODES.has(code)) throw new RetryableError(`${e.base}: ${code}`, null, TIMEOUT_CODES.has(code), true);
      throw err;
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'body error';
      throw new RetryableError(`${e.base}: ${code} while reading the answer`, null, TIMEOUT_CODES.has(code), true);
    }
    if (res.statusCode === 429 || res.statusCode >= 500) {
      const overload = res.statusCode === 429 || res.statusCode === 503;
      if (overload) e.stats.throttled++;
      throw new RetryableError(`${e.base}: HTTP ${res.statusCode}`, parseRetryAfter(res.headers['retry-after']), overload, res.statusCode >= 500 && !overload);
    }
    if (res.statusCode !== 200) {
      // 4xx other than 429: the request itself is wrong (unknown model, bad key); retrying will not help.
      throw new InstructifyError('E_LLM', `${e.base} answered HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
    }
    let parsed: { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[]; usage?: { prompt_tokens?: number; completion_tokens?: number } };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new RetryableError(`${e.base}: the answer is not JSON`, null, false, true);
    }
    const choice = parsed.choices?.[0];
    const finishReason = typeof choice?.finish_reason === 'string' ? choice.finish_reason : null;
    let content = choice?.message?.content;
    // A reasoning model cut short while thinking answers content null beside its reasoning: an empty answer, not a broken one.
    if (content === null && finishReason !== null) content = '';
    if (typeof content !== 'string') throw new RetryableError(`${e.base}: the answer has no choices[0].message.content`, null, false, true);
    const usage = { promptTokens: parsed.usage?.prompt_tokens ?? 0, completionTokens: parsed.usage?.completion_tokens ?? 0 };
    return { content, finishReason, usage, endpoint: e.base, attempts: 1 };
  }

  /**
   * One chat completion, with retries over the endpoints. `priority`: when
   * requests wait for a slot, higher goes first (equal: in the order they
   * asked).
   */
  async chat(messages: ChatMessage[], sampling: Partial<Sampling> = {}, priority = 0): Promise<ChatResult> {
    const s = { ...this.o.sampling, ...sampling };
    const body = JSON.stringify({
      model: this.o.model,
      messages,
      temperature: s.temperature,
      max_tokens: s.maxTokens,
      ...(s.seed !== null ? { seed: s.seed } : {}),
    });
    let last: Endpoint | null = null;
    let lastError: Error | null = null;
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (attempt > 0) this.stats.retries++;
      // A retry prefers another endpoint than the one that just failed.
      const e = await this.acquire(last, priority);
      last = e;
      const epoch = e.cutEpoch;
      let wait: number | null = null;
      try {
        const r = await this.once(e, body);
        e.failures = 0;
        e.stats.ok++;
        // Slow start, then additive increase (about one more slot per `limit` successes).
        if (this.o.adaptive) e.limit = Math.min(this.o.maxConcurrency, e.limit + (e.slowStart ? 1 : 1 / Math.max(1, e.limit)));
        this.stats.promptTokens += r.usage.promptTokens;
        this.stats.completionTokens += r.usage.completionTokens;
        return { ...r, attempts: attempt + 1 };
      } catch (err) {
        e.stats.errors++;
        if (!(err instanceof RetryableError)) {
          this.stats.failures++;
          throw err;
        }
        lastError = err;
        // Multiplicative decrease when the server says it is overloaded.
        if (err.overload && this.o.adaptive && epoch === e.cutEpoch) {
          e.limit = Math.max(1, e.limit / 2);
          e.slowStart = false;
          e.cutEpoch++;
          e.stats.cuts++;
        }
        if (err.endpointFault && ++e.failures >= this.o.benchAfter) {
          e.benchedUntil = Date.now() + this.o.benchMs;
          e.failures = 0;
          e.stats.benched++;
        }
        if (attempt < this.o.retries) wait = this.delay(attempt, err.retryAfterMs);
      } finally {
        this.release(e);
      }
      // The wait holds no slot: other requests use the endpoint meanwhile.
      if (wait !== null) await new Promise((r) => setTimeout(r, wait));
    }
    this.stats.failures++;
    throw new InstructifyError('E_LLM', `the LLM request failed after ${pluralize('attempt', this.o.retries + 1, true)}: ${lastError?.message ?? 'unknown error'}`, { cause: lastError ?? undefined });
  }

  snapshot(): LlmStats {
    for (const e of this.endpoints) this.stats.endpoints[e.base] = { ...e.stats, limit: Math.round(e.limit * 10) / 10 };
    return this.stats;
  }

  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.pool.close().catch(() => {})));
  }
}
