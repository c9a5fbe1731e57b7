import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { WORK_CAP, expectedWork, generate, readPrepared, startPriority, type GenerateOptions } from '../src/generate/generate.js';
import type { ImageRecord } from '../src/types.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { COCO_CAPTIONS, COCO_INSTANCES, ROOT, duckdb, runPrepare, tmpDir } from './helpers.js';

let prepared: string;
beforeAll(async () => {
  ({ out: prepared } = await runPrepare({
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
    ],
    rowsPerShard: 40,
  }));
});

const servers: LoopbackLlmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function fakeServer(): Promise<LoopbackLlmServer> {
  const s = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
  await s.start();
  servers.push(s);
  return s;
}

const opts = (server: LoopbackLlmServer, out: string, extra: Partial<GenerateOptions> = {}): GenerateOptions => ({
  input: prepared,
  out,
  llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 16, sampling: { seed: 1 } },
  distribution: 'instructify-mix',
  loop: { seed: 1 },
  ...extra,
});

describe('generate', () => {
  it('writes conversation shards that DuckDB reads, LLaVA-style turns, unique ids, stats per prompt type', async () => {
    const server = await fakeServer();
    const out = await tmpDir();
    const r = await generate(opts(server, out));
    expect(r.images).toBe(79);
    expect(r.failed).toBe(0);
    expect(r.conversations).toBeGreaterThan(79);
    const [row] = await duckdb<{ n: string; ids: string; first_human: string; image_prefix: string; models: string }>(
      `select count(*)::varchar as n, count(distinct id)::varchar as ids,
              count(*) filter (where conversations[1]."from" = 'human')::varchar as first_human,
              count(*) filter (where starts_with(conversations[1].value, '<image>' || chr(10)))::varchar as image_prefix,
              string_agg(distinct model, ',') as models
       from '${out}/part-*.parquet'`,
    );
    expect(row).toEqual({ n: String(r.conversations), ids: String(r.conversations), first_human: String(r.conversations), image_prefix: String(r.conversations), models: 'fake-model' });
    const types = await duckdb<{ prompt_type: string }>(`select distinct prompt_type from '${out}/part-*.parquet' order by 1`);
    const mix = JSON.parse(await readFile(path.join(ROOT, 'prompts', 'distributions', 'instructify-mix.json'), 'utf8')) as { types: { prompt: string }[] };
    for (const t of types) expect(mix.types.map((x) => x.prompt)).toContain(t.prompt_type);
    // Only the first human turn carries the image marker.
    const [markers] = await duckdb<{ extra: string }>(`select count(*)::varchar as extra from (select unnest(conversations[2:]) as t from '${out}/part-*.parquet') where contains(t.value, '<image>')`);
    expect(markers!.extra).toBe('0');
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ status: 'complete', images: 79, failed: 0, model: 'fake-model' });
    const accepted = Object.values(manifest.perPromptType as Record<string, { accepted: number }>).reduce((s, v) => s + v.accepted, 0);
    expect(accepted).toBe(r.conversations);
  });

  it('starts waiting images biggest first, and still writes them in input order', async () => {
    const all: ImageRecord[] = [];
    for await (const r of readPrepared(prepared)) if (r.tree && r.captions.length) all.push(r);
    all.sort((a, b) => expectedWork(a) - expectedWork(b));
    const small = all[0]!;
    const big = all.at(-1)!;
    expect(expectedWork(big)).toBeGreaterThan(2 * expectedWork(small));
    // Two request slots take four images at once (twice the slots); the small and the big one wait, and the big one goes first.
    const order = [...all.slice(1, 5), small, big];
    async function* input() {
      yield* order;
    }
    const server = await fakeServer();
    const out = await tmpDir();
    const r = await generate({ ...opts(server, out), input: input(), llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 2, sampling: { seed: 1 } } });
    expect(r.images).toBe(6);
    const firstRequest = (rec: ImageRecord) => server.seen.bodies.findIndex((b) => b.messages.some((m) => m.content.includes(rec.tree!.slice(0, 60)) || m.content.includes(rec.captions[0]!.text)));
    expect(firstRequest(big)).toBeGreaterThanOrEqual(0);
    expect(firstRequest(small)).toBeGreaterThan(firstRequest(big));
    const written = await duckdb<{ image: string }>(`select image from '${out}/part-*.parquet'`);
    const seen = [...new Set(written.map((w) => w.image))];
    expect(seen).toEqual(order.map((o) => o.image).filter((i) => seen.includes(i)));
    expect(seen).toContain(big.image);
  });

  it('the LLM loop reads prepared shards without masks and tree nodes, and everything else the same', async () => {
    const full: ImageRecord[] = [];
    const lean: ImageRecord[] = [];
    for await (const r of readPrepared(prepared)) full.push(r);
    for await (const r of readPrepared(prepared, { lean: true })) lean.push(r);
    expect(lean).toHaveLength(79);
    expect(full.some((r) => r.boxes.some((b) => b.mask !== null))).toBe(true);
    expect(full.some((r) => r.treeNodes.length > 0)).toBe(true);
    for (const r of lean) {
      expect(r.treeNodes).toEqual([]);
      for (const b of r.boxes) expect(b.mask).toBeNull();
    }
    const strip = (r: ImageRecord) => ({ ...r, treeNodes: [], boxes: r.boxes.map((b) => ({ ...b, mask: null })) });
    expect(lean).toEqual(full.map(strip));
  });

  it('an image can pass at most a window of images read before it, however big it is', () => {
    const window = 256;
    // A huge image read 300 places later never goes before an empty one; 200 places later it does.
    expect(startPriority(1e9, 300, window)).toBeLessThan(startPriority(0, 0, window));
    expect(startPriority(1e9, 200, window)).toBeGreaterThan(startPriority(0, 0, window));
    // Among images read together, more work goes first.
    expect(startPriority(900, 10, window)).toBeGreaterThan(startPriority(100, 9, window));
    expect(startPriority(WORK_CAP * 10, 5, window)).toBe(startPriority(WORK_CAP, 5, window));
  });

  it('a second run answers everything from the cache and writes identical shards', async () => {
    const first = await fakeServer();
    const out = await tmpDir();
    await generate(opts(first, out));
    const shards = (await readdir(out)).filter((n) => n.startsWith('part-')).sort();
    const before = await Promise.all(shards.map((s) => readFile(path.join(out, s))));
    const second = await fakeServer();
    const r = await generate(opts(second, out));
    expect(second.seen.requests).toBe(0);
    expect(r.requests).toBe(0);
    expect(r.cacheHits).toBeGreaterThan(0);
    const after = await Promise.all(shards.map((s) => readFile(path.join(out, s))));
    expect(after).toEqual(before);
  });

  it('writes the same conversations whatever the images in flight, speculating or not', async () => {
    // A wrong later turn in every conversation: speculative reduces then go unused, and leave a trace.
    const server = async () => {
      const s = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content, { wrongTurn: 1 }) });
      await s.start();
      servers.push(s);
      return s;
    };
    const a = await tmpDir();
    const ra = await generate(opts(await server(), a, { cache: null }));
    const b = await tmpDir();
    const rb = await generate(opts(await server(), b, { cache: null, imagesInFlight: 1, speculate: false }));
    expect(ra.speculativeUnused).toBeGreaterThan(0);
    expect(rb.speculativeUnused).toBe(0);
    expect(ra.requests).toBeGreaterThan(rb.requests);
    const rows = (dir: string) => duckdb<{ id: string; c: string; r: string }>(`select id, to_json(conversations)::varchar as c, to_json(removed)::varchar as r from '${dir}/part-*.parquet' order by id`);
    const [x, y] = await Promise.all([rows(a), rows(b)]);
    expect(x.length).toBe(ra.conversations);
    expect(x).toEqual(y);
    await expect(generate(opts(await server(), await tmpDir(), { imagesInFlight: 0 }))).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining('images in flight') });
  });

  it('sets aside images whose calls keep failing, and fails the run past --max-failure-rate', async () => {
    const server = await fakeServer();
    // 20 failed answers: at most 10 images fail (two attempts each), fewer than the 16 in a row that stop a run early (tested in resume.test.ts).
    server.next(...Array.from({ length: 20 }, () => ({ kind: 'status' as const, status: 500 })));
    const out = await tmpDir();
    const failing = { ...opts(server, out, { cache: null }), llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 4, retries: 1, baseDelayMs: 1, maxDelayMs: 2 } };
    await expect(generate(failing)).rejects.toMatchObject({ code: 'E_LLM', message: expect.stringMatching(/of 79 images, \d+ failed \(requests\).* more than --max-failure-rate 0\.01/) });
    const rejects = (await readFile(path.join(out, 'rejects.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { reason: string; image: string });
    expect(rejects.length).toBeGreaterThan(0);
    expect(rejects.every((x) => x.reason === 'llm-failed' && x.image.endsWith('.jpg'))).toBe(true);
    expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).status).toBe('failed');
    server.next(...Array.from({ length: 20 }, () => ({ kind: 'status' as const, status: 500 })));
    const tolerant = await generate({ ...failing, out: await tmpDir(), maxFailureRate: 1 });
    expect(tolerant.failed).toBeGreaterThan(0);
    expect(tolerant.images - tolerant.failed).toBeGreaterThan(0);
  });

  it('refuses to write into a folder holding a run with other settings, unless forced', async () => {
    const server = await fakeServer();
    const out = await tmpDir();
    await generate(opts(server, out, { cache: null }));
    const first = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { fingerprint: string };
    expect(first.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    // The same settings again: fine (this is how a crashed run is resumed).
    await generate(opts(server, out, { cache: null }));
    const changed = opts(server, out, { cache: null, loop: { seed: 2 } });
    // The refusal names what changed, then how to go on.
    await expect(generate(changed)).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining(`made with other settings (loop.seed: 1 -> 2): use another --out, the same settings, or --force`) });
    const forced = await generate({ ...changed, force: true });
    expect(forced.images).toBe(79);
    const second = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { fingerprint: string };
    expect(second.fingerprint).not.toBe(first.fingerprint);
  });

  it('counts a request that got through on its second attempt as a retry of its prompt type', async () => {
    const server = await fakeServer();
    server.next({ kind: 'status', status: 500 });
    const out = await tmpDir();
    const r = await generate({ ...opts(server, out, { cache: null }), llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 1, baseDelayMs: 1, maxDelayMs: 2 } });
    expect(r.retries).toBe(1);
    // The first request of the first image is its tree description.
    expect(r.perPromptType['tree-to-description']!.retries).toBe(1);
    expect(Object.values(r.perPromptType).reduce((s, t) => s + t.retries, 0)).toBe(1);
  });

  it('runs from the command line', async () => {
    const server = await fakeServer();
    const out = await tmpDir();
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(path.join(ROOT, 'bin', 'instructify'), ['generate', '--in', prepared, '--out', out, '--llm-url', server.url, '--model', 'fake-model', '--distribution', 'llava']);
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (c) => resolve({ code: c, stderr: err }));
    });
    expect(code).toBe(0);
    expect(stderr).toMatch(/generated \d+ conversations for 79 of 79 images worked on/);
    expect(stderr).toMatch(/\d+ requests to servers \(\d+ retried\), \d+ answers replayed from the cache/);
    expect(stderr).toMatch(/\n  llava-conversation +\d+ +\d+ +\d+ +0 +0/);
    expect(stderr).toMatch(/\n  \(check\) +\d+ +- +- +0 +0/);
  });
});

describe('run', () => {
  it('prepares and generates in one stream, with the same conversations as the two steps and no prepared files', async () => {
    const { run } = await import('../src/commands/run.js');
    const server = await fakeServer();
    const out = await tmpDir();
    const streamed = await run({
      prepare: { sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }], images: null },
      generate: { out, llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 16, sampling: { seed: 1 } }, distribution: 'instructify-mix', loop: { seed: 1 }, cache: null },
      buffer: 8,
    });
    expect(streamed.prepared.counts.images).toBe(79);
    expect(streamed.generated.images).toBe(79);
    expect((await readdir(out)).filter((n) => n.startsWith('part-')).every((n) => n.startsWith('part-0-'))).toBe(true);
    const stepwise = await tmpDir();
    await generate(opts(server, stepwise, { cache: null }));
    const q = (dir: string) => duckdb<{ id: string; c: string }>(`select id, to_json(conversations)::varchar as c from '${dir}/part-*.parquet' order by id`);
    expect(await q(out)).toEqual(await q(stepwise));
  });

  it('--limit: generate stops reading early and the run still ends, prepare having written every record it made', async () => {
    const { run } = await import('../src/commands/run.js');
    const out = await tmpDir();
    // A one-record channel: prepare waits on it as soon as generate stops reading.
    const ran = run({ prepare: { sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }], images: null }, generate: { out, distribution: 'instructify-mix', limit: 3 }, buffer: 1 });
    const late = new Promise((resolve) => setTimeout(() => resolve('still running after 15 s'), 15_000));
    const r = await Promise.race([ran, late]);
    expect(r).not.toBe('still running after 15 s');
    const { prepared, generated } = r as Awaited<typeof ran>;
    expect(generated.images).toBe(3);
    expect(prepared.counts.images).toBe(79);
  });

  it('a failing prepare stops the run with its own error', async () => {
    const { run } = await import('../src/commands/run.js');
    const out = await tmpDir();
    await expect(
      run({ prepare: { sources: [{ kind: 'coco-instances', paths: [COCO_CAPTIONS] }], images: null }, generate: { out, distribution: 'instructify-mix' } }),
    ).rejects.toMatchObject({ code: 'E_WRONG_KIND' });
  });
});
