import { cacheKey, type ResponseCache } from '../llm/cache.js';
import type { LlmClient, Sampling } from '../llm/client.js';
import type { LlmAnswer } from './loop.js';
import type { PromptSpec } from './prompts.js';

export interface CallStats {
  /** Requests sent to the servers, by prompt type. */
  requests: Record<string, number>;
  /** HTTP retries (server errors, throttling, timeouts), by prompt type. */
  retries?: Record<string, number>;
  /** Answers replayed from the cache instead of asked (a rerun of an earlier run). */
  cacheHits: number;
  promptTokens: number;
  completionTokens: number;
}

/** A `Call` that can also tell its caller when an answer did not come from the cache. */
export type CachedCall = (spec: PromptSpec, text: string, priority?: number, attempt?: number, onRequest?: () => void) => Promise<LlmAnswer>;

/**
 * The sampling of an ask: the run's, except that a repeated ask (attempt 1
 * and on) carries another seed, so the server samples anew and the cache
 * keys it apart. The first ask is left as the run says, so well-behaved
 * runs and their caches are as before.
 */
export function attemptSampling(base: Sampling, attempt: number): Sampling {
  return attempt > 0 ? { ...base, seed: (base.seed ?? 0) + attempt } : base;
}

/**
 * The loop's `call`: one user turn, no system prompt (the method's
 * default), answered from the cache when it can, else by the LLM and then
 * cached. `onRequest` hears of each answer that was not in the cache.
 */
export function llmCall(client: LlmClient, cache: ResponseCache | null, stats: CallStats): CachedCall {
  return async (spec, text, priority = 0, attempt = 0, onRequest) => {
    const messages = [{ role: 'user' as const, content: text }];
    const sampling = attemptSampling(client.sampling, attempt);
    // Hashing the messages is a real share of a request's CPU: only done when there is a cache.
    const key = cache ? cacheKey(client.model, messages, sampling) : '';
    const hit = cache?.get(key);
    if (hit) {
      stats.cacheHits++;
      return { content: hit.content, finishReason: hit.finishReason };
    }
    onRequest?.();
    const r = await client.chat(messages, attempt > 0 ? { seed: sampling.seed } : {}, priority);
    stats.requests[spec.name] = (stats.requests[spec.name] ?? 0) + 1;
    if (r.attempts > 1) {
      stats.retries ??= {};
      stats.retries[spec.name] = (stats.retries[spec.name] ?? 0) + r.attempts - 1;
    }
    stats.promptTokens += r.usage.promptTokens;
    stats.completionTokens += r.usage.completionTokens;
    cache?.put(key, client.model, r);
    return { content: r.content, finishReason: r.finishReason };
  };
}
