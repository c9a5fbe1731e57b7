import { cacheKey, type ResponseCache } from '../llm/cache.js';
import type { LlmClient } from '../llm/client.js';
import type { Call } from './loop.js';

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
 * cached.
 */
export function llmCall(client: LlmClient, cache: ResponseCache | null, stats: CallStats): Call {
  return async (spec, text) => {
    const messages = [{ role: 'user' as const, content: text }];
    const key = cacheKey(client.model, messages, client.sampling);
    const hit = cache?.get(key);
    if (hit) {
      stats.cacheHits++;
      return hit.content;
    }
    const r = await client.chat(messages);
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
