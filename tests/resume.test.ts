import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { readShards, type Conversation } from '../src/generate/generate.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { verify } from '../src/verify.js';
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
