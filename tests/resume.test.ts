import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { readShards, type Conversation } from '../src/generate/generate.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { verify } from '../src/inspect/verify.js';
import { COCO_CAPTIONS, COCO_INSTANCES, ROOT, runPrepare, tmpDir } from './helpers.js';

function generateCli(args: string[]) {
  return spawn(path.join(ROOT, 'bin', 'instructify'), ['generate', ...args, '-q'], { stdio: 'ignore' });
}

async function conversations(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const c of readShards<Conversation>(dir)) out.push(JSON.stringify([c.id, c.conversations]));
  return out.sort();
}

describe('resume after kill -9', () => {
  it('rerunning the same command finishes with the same conversations, none twice, without asking again what was answered', async () => {
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }] });
    const server = new LoopbackLlmServer({ latencyMs: 15, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    try {
      const common = ['--in', prepared, '--llm-url', server.url, '--model', 'fake', '--max-concurrency', '4', '--seed', '5'];
      // The uninterrupted run, for comparison.
      const whole = await tmpDir();
      await new Promise((r) => generateCli([...common, '--out', whole]).on('close', r));
      const total = server.seen.requests;
      expect(total).toBeGreaterThan(200);

      // Killed part way, with no chance to clean up.
      const out = await tmpDir();
      const first = generateCli([...common, '--out', out]);
      const before = server.seen.requests;
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (server.seen.requests - before > total / 3) {
            clearInterval(t);
            first.kill('SIGKILL');
            resolve();
          }
        }, 10);
      });
      await new Promise((r) => first.on('close', r));
      const asked = server.seen.requests - before;
      expect(asked).toBeLessThan(total);

      // The same command again.
      const again = server.seen.requests;
      const code = await new Promise<number | null>((r) => generateCli([...common, '--out', out]).on('close', r));
      expect(code).toBe(0);
      const rerun = server.seen.requests - again;
      // What the killed run had asked is answered from the cache (a few in flight at the kill are asked again).
      expect(rerun).toBeLessThan(total - asked + 10);
      expect(await conversations(out)).toEqual(await conversations(whole));
      expect((await verify([out])).ok).toBe(true);
    } finally {
      await server.stop();
    }
  });
});

describe('SIGINT', () => {
  it('stops taking images, finishes those in flight, writes consistent shards and an "interrupted" manifest, exits 130', async () => {
    const { readFile, readdir } = await import('node:fs/promises');
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }] });
    const server = new LoopbackLlmServer({ latencyMs: 20, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    try {
      const out = await tmpDir();
      const child = generateCli(['--in', prepared, '--out', out, '--llm-url', server.url, '--model', 'fake', '--max-concurrency', '4', '--no-cache']);
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (server.seen.requests > 60) {
            clearInterval(t);
            child.kill('SIGINT');
            resolve();
          }
        }, 10);
      });
      const code = await new Promise<number | null>((r) => child.on('close', r));
      expect(code).toBe(130);
      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string; images: number; conversations: number; shards: { file: string; rows: number }[] };
      expect(manifest.status).toBe('interrupted');
      expect(manifest.images).toBeGreaterThan(0);
      expect(manifest.images).toBeLessThan(79);
      const names = await readdir(out);
      expect(names.filter((n) => n.endsWith('.tmp'))).toEqual([]);
      expect(await conversations(out)).toHaveLength(manifest.conversations);
      expect(manifest.shards.reduce((s, x) => s + x.rows, 0)).toBe(manifest.conversations);
      // verify reports the folder as not complete, and nothing else wrong with it.
      const v = await verify([out]);
      expect(v.folders[0]!.problems).toEqual(['manifest status is "interrupted", not complete']);
    } finally {
      await server.stop();
    }
  });
});

describe('prepare: stopped and rerun', () => {
  const BIN = path.join(ROOT, 'bin', 'instructify');

  async function syntheticInput(): Promise<string> {
    const { writeSyntheticCoco } = await import('../src/sources/synthetic.js');
    const dir = await tmpDir();
    const file = path.join(dir, 'instances.json');
    // ~16 MB of seeded COCO-like annotations: a few seconds of work, long enough to stop in the middle.
    await writeSyntheticCoco({ instancesFile: file, count: 8000, seed: 11 });
    return file;
  }

  // One worker: a read worker (with its own spill folder) and a lane are in play when the signal comes.
  function prepareCli(input: string, out: string, tmp: string) {
    return spawn(BIN, ['prepare', '--source', `coco-instances=${input}`, '--out', out, '--format', 'jsonl', '--memory-budget', '2MB', '--tmp-dir', tmp, '--workers', '1', '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  async function images(out: string): Promise<string[]> {
    const { readFile, readdir } = await import('node:fs/promises');
    const rows: string[] = [];
    for (const n of (await readdir(out)).filter((x) => x.endsWith('.jsonl') && x.startsWith('part-'))) {
      for (const line of (await readFile(path.join(out, n), 'utf8')).split('\n')) if (line) rows.push((JSON.parse(line) as { image: string }).image);
    }
    return rows.sort();
  }

  /** Wait until `ready()` holds (polled), then send the signal. */
  async function stopWhen(child: ReturnType<typeof spawn>, ready: () => Promise<boolean>, signal: NodeJS.Signals): Promise<number | null> {
    const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    for (;;) {
      if (await ready()) break;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill(signal);
    return closed;
  }

  it('SIGINT while reading: exit 130, manifest "interrupted", no partial shard, spill folder removed; a rerun completes', async () => {
    const { readFile, readdir } = await import('node:fs/promises');
    const input = await syntheticInput();
    const out = await tmpDir();
    const tmp = await tmpDir();
    const child = prepareCli(input, out, tmp);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // Once the join has spilled, the run is well into reading.
    const code = await stopWhen(child, async () => (await readdir(tmp)).length > 0 && (await readdir(path.join(tmp, (await readdir(tmp))[0]!)).catch(() => [])).length > 0, 'SIGINT');
    expect(code).toBe(130);
    expect(stderr).toMatch(/E_INTERRUPTED: prepare was stopped by a signal/);
    expect(stderr).not.toMatch(/\n\s+at /);
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string };
    expect(manifest.status).toBe('interrupted');
    expect((await readdir(out)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect(await readdir(tmp)).toEqual([]);
    // The same command again: a complete folder.
    const again = await new Promise<number | null>((r) => prepareCli(input, out, tmp).on('close', r));
    expect(again).toBe(0);
    expect((JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string }).status).toBe('complete');
    expect(await images(out)).toHaveLength(8000);
  }, 120_000);

  it('kill -9 while writing shards: the rerun gives exactly the uninterrupted run\'s records', async () => {
    const { readdir } = await import('node:fs/promises');
    const input = await syntheticInput();
    const whole = await tmpDir();
    const tmp = await tmpDir();
    expect(await new Promise<number | null>((r) => prepareCli(input, whole, tmp).on('close', r))).toBe(0);
    const expected = await images(whole);
    expect(expected).toHaveLength(8000);

    const out = await tmpDir();
    const child = prepareCli(input, out, tmp);
    await stopWhen(child, async () => (await readdir(out)).some((n) => /^part-.*\.jsonl(\.tmp)?$/.test(n)), 'SIGKILL');
    // Whatever was left, the manifest does not say complete.
    const { readFile } = await import('node:fs/promises');
    const left = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string };
    expect(left.status).toBe('running');
    expect(await new Promise<number | null>((r) => prepareCli(input, out, tmp).on('close', r))).toBe(0);
    const got = await images(out);
    expect(got).toEqual(expected);
    // The killed run's spill folder is gone too: the rerun removed it.
    expect(await readdir(tmp)).toEqual([]);
    expect(new Set(got).size).toBe(got.length);
    expect((await verify([out])).ok).toBe(true);
  }, 120_000);
});

describe('generate: the LLM server goes away for a while', () => {
  it('the run waits, retries and completes with every image, as if nothing happened', async () => {
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }] });
    const { generate } = await import('../src/generate/generate.js');
    const answer = (req: { messages: { content: string }[] }) => fakeAnswer(req.messages.at(-1)!.content);
    const llm = (url: string) => ({ endpoints: [url], model: 'fake', maxConcurrency: 8, baseDelayMs: 100, maxDelayMs: 800, retries: 12, benchMs: 300 });

    const steady = new LoopbackLlmServer({ latencyMs: 5, answer });
    const steadyUrl = await steady.start();
    const whole = await tmpDir();
    const expected = await generate({ input: prepared, out: whole, llm: llm(steadyUrl), distribution: 'instructify-mix', loop: { seed: 3 }, cache: null });
    await steady.stop();

    let server = new LoopbackLlmServer({ latencyMs: 5, answer });
    const url = await server.start();
    const port = Number(new URL(url).port);
    const out = await tmpDir();
    const outage = { downAt: 0, upAt: 0 };
    // After a third of the requests the server dies (connections dropped, port closed) for 1.5 s, then comes back on the same port.
    const chaos = (async () => {
      while (server.seen.requests < expected.requests / 3) await new Promise((r) => setTimeout(r, 5));
      outage.downAt = Date.now();
      await server.stop();
      await new Promise((r) => setTimeout(r, 1500));
      server = new LoopbackLlmServer({ latencyMs: 5, answer });
      await server.start(port);
      outage.upAt = Date.now();
    })();
    const r = await generate({ input: prepared, out, llm: llm(url), distribution: 'instructify-mix', loop: { seed: 3 }, cache: null });
    await chaos;
    await server.stop();
    expect(outage.upAt - outage.downAt).toBeGreaterThanOrEqual(1500);
    expect(r.failed).toBe(0);
    expect(r.images).toBe(79);
    expect(r.retries).toBeGreaterThan(0);
    expect(await conversations(out)).toEqual(await conversations(whole));
    expect((await verify([out])).ok).toBe(true);
  }, 120_000);
});

describe('generate: no LLM server at the address', () => {
  it('stops starting images after a streak of failures, says why, and a rerun with the server up completes', async () => {
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }] });
    const { generate } = await import('../src/generate/generate.js');
    const { readFile } = await import('node:fs/promises');
    const answer = (req: { messages: { content: string }[] }) => fakeAnswer(req.messages.at(-1)!.content);
    // A port that was just free: nothing listens there.
    const probe = new LoopbackLlmServer({ answer });
    const url = await probe.start();
    const port = Number(new URL(url).port);
    await probe.stop();
    // 2 request slots: 4 images in flight, so the run gives up after 16 failed images in a row.
    const llm = { endpoints: [url], model: 'fake', maxConcurrency: 2, baseDelayMs: 5, maxDelayMs: 20, retries: 2, benchMs: 0 };
    const out = await tmpDir();
    const err = await generate({ input: prepared, out, llm, distribution: 'instructify-mix', loop: { seed: 3 } }).then(
      () => null,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('E_LLM');
    expect(err?.message).toMatch(/^the last 16 images all failed \(the last: .*ECONNREFUSED\); no more images were started\./);
    expect(err?.message).toContain('run the same command again to go on');
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string; images: number; failed: number };
    expect(manifest.status).toBe('failed');
    // The 16 of the streak and those already started or queued with them (4 running, up to 4 waiting): not all 79.
    expect(manifest.failed).toBeGreaterThanOrEqual(16);
    expect(manifest.images).toBeLessThanOrEqual(24);
    expect((await readFile(path.join(out, 'rejects.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(manifest.failed);

    // The server comes up on that address; the same command completes every image.
    const server = new LoopbackLlmServer({ latencyMs: 2, answer });
    await server.start(port);
    try {
      const r = await generate({ input: prepared, out, llm, distribution: 'instructify-mix', loop: { seed: 3 } });
      expect(r).toMatchObject({ images: 79, failed: 0 });
      expect((await verify([out])).ok).toBe(true);
    } finally {
      await server.stop();
    }
  }, 120_000);
});
