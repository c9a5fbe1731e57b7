import { cacheKey, type ResponseCache } from '../llm/cache.js';
import type { LlmClient } from '../llm/client.js';
import type { PromptSpec } from './prompts.js';

export interface CallStats {
  requests: Record<string, number>;
  /** HTTP retries (server errors, throttling, timeouts), by prompt type. */
  retries?: Record<string, number>;
  cacheHits: number;
  promptTokens: number;
  completionTokens: number;
}

/**
 * The loop's `call`: one user turn, no system prompt (the method's
 * default), answered from the cache when it can, else by the LLM and then
 * cached. `onRequest` hears of each answer that was not in the cache.
 */
/** A `Call` that can also tell its caller when an answer did not come from the cache. */
export type CachedCall = (spec: PromptSpec, text: string, priority?: number, onRequest?: () => void) => Promise<string>;

export function llmCall(client: LlmClient, cache: ResponseCache | null, stats: CallStats): CachedCall {
  return async (spec, text, priority = 0, onRequest) => {
    const messages = [{ role: 'user' as const, content: text }];
    // Hashing the messages is a real share of a request's CPU: only done when there is a cache.
    const key = cache ? cacheKey(client.model, messages, client.sampling) : '';
    const hit = cache?.get(key);
    if (hit) {
      stats.cacheHits++;
      return hit.content;
    }
    onRequest?.();
    const r = await client.chat(messages, {}, priority);
    stats.requests[spec.name] = (stats.requests[spec.name] ?? 0) + 1;
    if (r.attempts > 1) {
      stats.retries ??= {};
      stats.retries[spec.name] = (stats.retries[spec.name] ?? 0) + r.attempts - 1;
    }
    stats.promptTokens += r.usage.promptTokens;
    stats.completionTokens += r.usage.completionTokens;
    cache?.put(key, client.model, r);
    return r.content;
  };
}
