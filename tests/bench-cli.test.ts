import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { benchLlm, capturePrompts } from '../src/throughput/llm.js';
import type { StageBenchResult } from '../src/throughput/stages.js';
import type { LlmBenchResult } from '../src/throughput/llm.js';
import { readPrepared } from '../src/generate/generate.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, runPrepare, tmpDir } from './helpers.js';

const BIN = path.join(ROOT, 'bin', 'instructify');
const exec = promisify(execFile);

/** The CLI as a real child process, without blocking this process (the loopback server lives here). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(BIN, args, { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

let server: LoopbackLlmServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

describe('instructify bench --stages', () => {
  it('prints every stage with its throughput and peak memory, and the machine', async () => {
    const dir = await tmpDir();
    const r = await cli(['bench', '--stages', '--size', '300KB', '--images', '6', '--dir', dir]);
    expect(r.code).toBe(0);
    for (const stage of ['parse', 'join', 'sizes', 'tree', 'write', 'prepare']) expect(r.stdout).toMatch(new RegExp(`^${stage} +\\| \\d+ \\w+ +\\| +\\d+\\.\\d\\d \\| +\\d+ \\|`, 'm'));
    expect(r.stdout).toMatch(/machine: \d+ x .+, Node 20\./);
    // Progress goes to stderr, the table alone to stdout.
    expect(r.stderr).toContain('tree ...');
    expect(r.stdout).not.toContain('tree ...');
  });

  it('--json gives the same stages as numbers, counting what the generated data holds', async () => {
    const dir = await tmpDir();
    const r = await cli(['bench', '--stages', '--size', '200KB', '--images', '4', '--dir', dir, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { stages: StageBenchResult };
    const s = out.stages;
    expect(s.stages.map((x) => x.stage)).toEqual(['parse', 'join', 'sizes', 'tree', 'write', 'prepare']);
    const by = Object.fromEntries(s.stages.map((x) => [x.stage, x]));
    // ~2 KB of annotations per image: a 200 KB file holds about a hundred images.
    expect(s.input.images).toBeGreaterThan(60);
    expect(s.input.images).toBeLessThan(160);
    expect(by.sizes!.items).toBe(4);
    expect(by.tree!.items).toBe(s.input.images);
    expect(by.write!.items).toBe(s.input.images);
    expect(by.prepare!.items).toBe(s.input.images);
    // One fragment per annotation and per image entry.
    expect(by.join!.items).toBe(s.input.boxes + s.input.images);
    for (const x of s.stages) {
      expect(x.seconds).toBeGreaterThan(0);
      expect(x.itemsPerSecond).toBeCloseTo(x.items / x.seconds, 3);
      expect(x.peakRssMB).toBeGreaterThan(20);
    }
    expect(by.parse!.mbPerSecond).toBeCloseTo(s.input.mb / by.parse!.seconds, 3);
    expect(s.machine.cpus).toBeGreaterThanOrEqual(1);
  });

  it('refuses a size too small to measure', async () => {
    const r = await cli(['bench', '--stages', '--size', '1KB']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/at least 10KB/);
  });

  it('asks for a mode when given none', async () => {
    const r = await cli(['bench']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bench needs --stages, --llm-url/);
  });
});

describe('instructify bench --llm-url', () => {
  const answer = (req: { messages: { content: string }[] }) => fakeAnswer(req.messages.at(-1)!.content);

  it('finds the capacity of a server that answers 429 above it (within 1.5x), as JSON', async () => {
    const capacity = 24;
    server = new LoopbackLlmServer({ capacity, latencyMs: 60, answer });
    const url = await server.start();
    const r = await cli(['bench', '--llm-url', url, '--model', 'test-model', '--levels', '1,8,32,128', '--seconds', '0.8', '--sample', '12', '--json']);
    expect(r.code).toBe(0);
    const res = (JSON.parse(r.stdout) as { llm: LlmBenchResult }).llm;
    expect(res.knee).toBe('refused');
    expect(res.recommendedMaxConcurrency).toBeGreaterThanOrEqual(capacity / 1.5);
    expect(res.recommendedMaxConcurrency).toBeLessThanOrEqual(capacity * 1.5);
    // The server saw no more than its capacity in flight, and the levels above it were throttled.
    const above = res.levels.filter((l) => l.concurrency > capacity);
    expect(above.length).toBeGreaterThan(0);
    for (const l of above) expect(l.throttled).toBeGreaterThan(0);
    for (const l of res.levels.filter((x) => x.concurrency <= capacity)) {
      expect(l.throttled).toBe(0);
      // Fixed 60 ms latency: a clean level serves about concurrency / 0.06 s.
      expect(l.latencyMs.p50).toBeGreaterThanOrEqual(55);
      expect(l.requestsPerSecond).toBeLessThanOrEqual((l.concurrency / 0.06) * 1.05);
      expect(l.requestsPerSecond).toBeGreaterThan((l.concurrency / 0.06) * 0.5);
    }
    // Tokens come from the server's usage fields.
    expect(res.levels[0]!.completionTokensPerSecond).toBeGreaterThan(0);
    // Bounded: every level ran about --seconds.
    for (const l of res.levels) expect(l.seconds).toBeLessThan(3);
    // The requests were the real prompts, as generate sends them (no system prompt, the model named).
    expect(server.seen.bodies[0]!.model).toBe('test-model');
    expect(server.seen.bodies.every((b) => b.messages.length === 1 && b.messages[0]!.role === 'user')).toBe(true);
    expect(Object.keys(res.prompts.types).length).toBeGreaterThan(3);
  }, 60_000);

  it('finds the capacity of a server that queues above it (vLLM-like) at the throughput plateau', async () => {
    const capacity = 16;
    server = new LoopbackLlmServer({ capacity, latencyMs: 100, queue: true, answer });
    const url = await server.start();
    const res = await benchLlm({ endpoints: [url], model: 'm', levels: [1, 4, 16, 64, 256], secondsPerLevel: 0.8, maxRequests: 20_000, input: null, sample: 8, refineSteps: 3 });
    expect(server.seen.throttled).toBe(0);
    expect(res.knee).toBe('plateau');
    expect(res.recommendedMaxConcurrency).toBeGreaterThanOrEqual(capacity / 1.5);
    expect(res.recommendedMaxConcurrency).toBeLessThanOrEqual(capacity * 1.5);
    // Past capacity, latency grows with the queue while throughput does not.
    const at64 = res.levels.find((l) => l.concurrency === 64)!;
    const at16 = res.levels.find((l) => l.concurrency === 16)!;
    expect(at64.latencyMs.p50).toBeGreaterThan(at16.latencyMs.p50 * 2.5);
  }, 60_000);

  it('says there is no server when not one request gets an answer, instead of recommending a level', async () => {
    // A port that was just free: nothing listens there.
    const gone = new LoopbackLlmServer({ answer });
    const url = await gone.start();
    await gone.stop();
    await expect(benchLlm({ endpoints: [url], model: 'm', levels: [1, 8], secondsPerLevel: 0.3, maxRequests: 200, input: null, sample: 2, refineSteps: 0 })).rejects.toMatchObject({
      code: 'E_LLM',
      message: expect.stringMatching(/^not one of \d+ requests got an answer at concurrency 1; the first: the LLM request failed after 1 attempt: .*ECONNREFUSED\. Is the server up/),
    });
  });

  it('stops within its request budget', async () => {
    server = new LoopbackLlmServer({ latencyMs: 5, answer });
    const url = await server.start();
    const res = await benchLlm({ endpoints: [url], model: 'm', levels: [1, 8, 32], secondsPerLevel: 5, maxRequests: 300, input: null, sample: 4, refineSteps: 0 });
    expect(res.levels.reduce((s, l) => s + l.requests, 0)).toBeLessThanOrEqual(300);
    expect(server.seen.requests).toBeLessThanOrEqual(300);
  }, 60_000);

  it('draws its requests from a prepared folder of real COCO records', async () => {
    const { out } = await runPrepare({
      sources: [
        { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
        { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      ],
      images: COCO_IMAGES,
      format: 'parquet',
    });
    const records = [];
    for await (const rec of readPrepared(out)) if (records.push(rec) >= 3) break;
    const prompts = await capturePrompts(records);
    // The tree goes to the tree-to-description prompt, the captions into the families.
    expect(prompts.some((p) => p.type === 'tree-to-description' && p.text.includes('Object Counts:'))).toBe(true);
    expect(prompts.some((p) => p.text.includes(records[0]!.captions[0]!.text.trim()))).toBe(true);
    server = new LoopbackLlmServer({ latencyMs: 5, answer });
    const url = await server.start();
    const res = await benchLlm({ endpoints: [url], model: 'm', levels: [2], secondsPerLevel: 0.3, maxRequests: 1000, input: out, sample: 3, refineSteps: 0 });
    expect(res.prompts.distinct).toBe(prompts.length);
    expect(res.knee).toBe('not reached');
    expect(server.seen.bodies[0]!.messages[0]!.content).toBe(prompts[0]!.text);
  }, 60_000);

  it('stops at once on a server that rejects the model (HTTP 404)', async () => {
    server = new LoopbackLlmServer({ answer });
    const url = await server.start();
    server.next(...Array.from({ length: 50 }, () => ({ kind: 'status' as const, status: 404, body: '{"error":"model not found"}' })));
    const r = await cli(['bench', '--llm-url', url, '--model', 'nope', '--levels', '1,4', '--seconds', '2', '--sample', '3']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 404.*model not found/);
  }, 60_000);
});
