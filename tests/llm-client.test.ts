import { afterEach, describe, expect, it } from 'vitest';
import { LlmClient, parseRetryAfter, type LlmClientOptions } from '../src/llm/client.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';

const servers: LoopbackLlmServer[] = [];
const clients: LlmClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function server(o: ConstructorParameters<typeof LoopbackLlmServer>[0] = {}): Promise<LoopbackLlmServer> {
  const s = new LoopbackLlmServer(o);
  await s.start();
  servers.push(s);
  return s;
}

function client(o: Partial<LlmClientOptions> & Pick<LlmClientOptions, 'endpoints'>): LlmClient {
  const c = new LlmClient({ model: 'test-model', baseDelayMs: 10, maxDelayMs: 100, random: () => 0.5, ...o });
  clients.push(c);
  return c;
}

const ask = [{ role: 'user' as const, content: 'Describe the image.' }];

describe('LLM client', () => {
  it('sends model, messages and sampling, with the API key from the environment, and never shows the key', async () => {
    const s = await server();
    process.env.INSTRUCTIFY_TEST_KEY = 'sk-secret-123';
    const c = client({ endpoints: [s.url], apiKeyEnv: 'INSTRUCTIFY_TEST_KEY', sampling: { seed: 7 } });
    const r = await c.chat(ask);
    expect(r).toMatchObject({ content: 'echo: Describe the image.', attempts: 1, endpoint: s.url });
    expect(r.usage.completionTokens).toBeGreaterThan(0);
    expect(s.seen.authorization).toEqual(['Bearer sk-secret-123']);
    expect(s.seen.bodies[0]).toEqual({ model: 'test-model', messages: ask, temperature: 0.2, max_tokens: 1000, seed: 7 });
    s.next({ kind: 'status', status: 500 }, { kind: 'status', status: 500 });
    const failing = client({ endpoints: [s.url], apiKeyEnv: 'INSTRUCTIFY_TEST_KEY', retries: 1 });
    const err = (await failing.chat(ask).catch((e: unknown) => e)) as Error;
    expect(err.message).toContain('HTTP 500');
    expect(JSON.stringify([err.message, String(err.cause), failing.snapshot(), c.snapshot()])).not.toContain('sk-secret-123');
  });

  it('retries 500s with backoff and counts the retries', async () => {
    const s = await server();
    s.next({ kind: 'status', status: 500 }, { kind: 'status', status: 502 });
    const c = client({ endpoints: [s.url] });
    const r = await c.chat(ask);
    expect(r.attempts).toBe(3);
    expect(c.snapshot().retries).toBe(2);
    expect(s.seen.requests).toBe(3);
  });

  it('honours Retry-After on 429', async () => {
    const s = await server();
    s.next({ kind: 'status', status: 429, retryAfter: '1' });
    const c = client({ endpoints: [s.url] });
    const t = Date.now();
    const r = await c.chat(ask);
    expect(Date.now() - t).toBeGreaterThanOrEqual(950);
    expect(r.attempts).toBe(2);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:05 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(5000);
  });

  it('retries a request that hangs past the header timeout, a reset connection, and a non-JSON answer', async () => {
    const s = await server();
    s.next({ kind: 'hang' }, { kind: 'reset' }, { kind: 'malformed' });
    const c = client({ endpoints: [s.url], headersTimeoutMs: 300 });
    const r = await c.chat(ask);
    expect(r.attempts).toBe(4);
    expect(r.content).toBe('echo: Describe the image.');
  });

  it('gives up after its retries with an error that names the endpoint and the last fault', async () => {
    const s = await server();
    s.next(...Array.from({ length: 5 }, () => ({ kind: 'status' as const, status: 503 })));
    const c = client({ endpoints: [s.url], retries: 2 });
    await expect(c.chat(ask)).rejects.toMatchObject({ code: 'E_LLM', message: expect.stringMatching(/failed after 3 attempts: .*127\.0\.0\.1.*HTTP 503/) });
    expect(s.seen.requests).toBe(3);
  });

  it('does not retry a 4xx other than 429', async () => {
    const s = await server();
    s.next({ kind: 'status', status: 404, body: 'model not found' });
    const c = client({ endpoints: [s.url] });
    await expect(c.chat(ask)).rejects.toMatchObject({ code: 'E_LLM', message: expect.stringContaining('HTTP 404: model not found') });
    expect(s.seen.requests).toBe(1);
  });

  it('routes around an endpoint that dies, benching it', async () => {
    const a = await server({ latencyMs: 5 });
    const b = await server({ latencyMs: 5 });
    const c = client({ endpoints: [a.url, b.url], benchAfter: 2, benchMs: 60_000 });
    const first = await Promise.all(Array.from({ length: 10 }, () => c.chat(ask)));
    expect(new Set(first.map((r) => r.endpoint))).toEqual(new Set([a.url, b.url]));
    await a.stop();
    const rest = await Promise.all(Array.from({ length: 30 }, () => c.chat(ask)));
    expect(rest.every((r) => r.content.startsWith('echo:'))).toBe(true);
    const stats = c.snapshot();
    expect(stats.endpoints[a.url]!.benched).toBeGreaterThanOrEqual(1);
    expect(stats.endpoints[b.url]!.ok).toBeGreaterThanOrEqual(30);
  });

  it('keeps retrying while its only server is down, and finishes when it comes back', async () => {
    const s = await server();
    const port = Number(new URL(s.url).port);
    await s.stop();
    const c = client({ endpoints: [s.url], retries: 10, baseDelayMs: 50, maxDelayMs: 200, benchAfter: 2 });
    setTimeout(() => void s.start(port), 400);
    const r = await c.chat(ask);
    expect(r.content).toBe('echo: Describe the image.');
    expect(r.attempts).toBeGreaterThan(1);
  });

  it('sends each request to the endpoint with the fewest in flight', async () => {
    const a = await server({ latencyMs: 40 });
    const b = await server({ latencyMs: 40 });
    const c = client({ endpoints: [a.url, b.url] });
    await Promise.all(Array.from({ length: 40 }, () => c.chat(ask)));
    expect(a.seen.requests).toBe(20);
    expect(b.seen.requests).toBe(20);
  });

  it('cuts its concurrency when the server throttles, and still finishes every request', async () => {
    const s = await server({ capacity: 4, latencyMs: 20 });
    const c = client({ endpoints: [s.url], initialConcurrency: 32, maxConcurrency: 64, retries: 20 });
    const results = await Promise.all(Array.from({ length: 100 }, () => c.chat(ask)));
    expect(results).toHaveLength(100);
    expect(s.seen.throttled).toBeGreaterThan(0);
    expect(c.snapshot().endpoints[s.url]!.limit).toBeLessThan(16);
  });

  it('a burst of 429s answering one window halves the limit once, not once per refusal', async () => {
    // 64 requests at once against room for 16: 48 refusals come back from the same window.
    const s = await server({ capacity: 16, latencyMs: 50 });
    const c = client({ endpoints: [s.url], initialConcurrency: 64, maxConcurrency: 64, retries: 20 });
    const results = await Promise.all(Array.from({ length: 64 }, () => c.chat(ask)));
    expect(results).toHaveLength(64);
    expect(s.seen.throttled).toBeGreaterThanOrEqual(40);
    // Halving once per refusal would cut 40+ times (64 / 2^40: 1 slot); one cut per window of requests cuts a few times.
    const ep = c.snapshot().endpoints[s.url]!;
    expect(ep.cuts).toBeGreaterThanOrEqual(1);
    expect(ep.cuts).toBeLessThanOrEqual(4);
    expect(ep.limit).toBeGreaterThanOrEqual(8);
  });

  it('never has more than maxConcurrency requests in flight', async () => {
    const s = await server({ latencyMs: 30 });
    const c = client({ endpoints: [s.url], maxConcurrency: 3 });
    await Promise.all(Array.from({ length: 20 }, () => c.chat(ask)));
    expect(s.seen.maxInFlight).toBe(3);
  });

  it('hands free slots to waiting requests by priority, then in the order they asked', async () => {
    const s = await server({ latencyMs: 40 });
    const c = client({ endpoints: [s.url], maxConcurrency: 1 });
    const say = (text: string, priority: number) => c.chat([{ role: 'user', content: text }], {}, priority);
    // The first takes the only slot; the rest wait and go out one at a time.
    await Promise.all([say('first', 0), say('low a', -1), say('normal a', 0), say('low b', -1), say('normal b', 0), say('high', 5)]);
    expect(s.seen.bodies.map((b) => b.messages[0]!.content)).toEqual(['first', 'high', 'normal a', 'normal b', 'low a', 'low b']);
    expect(s.seen.maxInFlight).toBe(1);
  });

  it('says slots are spare only when none is waiting and one is free', async () => {
    const s = await server({ latencyMs: 40 });
    const c = client({ endpoints: [s.url], maxConcurrency: 2 });
    expect(c.spare).toBe(true);
    const a = c.chat(ask);
    expect(c.spare).toBe(true);
    const b = c.chat(ask);
    // Slots are taken (or waited for) as soon as chat is called: both are full and one request waits.
    const d = c.chat(ask);
    expect(c.spare).toBe(false);
    await Promise.all([a, b, d]);
    expect(c.spare).toBe(true);
  });

  it('checks its options when built', () => {
    expect(() => new LlmClient({ endpoints: ['not a url'], model: 'm' })).toThrowError(expect.objectContaining({ code: 'E_OPTION', message: expect.stringContaining('is not a URL') }));
    expect(() => new LlmClient({ endpoints: [], model: 'm' })).toThrowError(expect.objectContaining({ code: 'E_OPTION' }));
    expect(() => new LlmClient({ endpoints: ['http://127.0.0.1:1/v1'], model: 'm', sampling: { temperature: 5 } })).toThrowError(/temperature/);
    expect(() => new LlmClient({ endpoints: ['ftp://127.0.0.1/v1'], model: 'm' })).toThrowError(/http or https/);
  });
});
