import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { llmCall, type CallStats } from '../src/generate/caller.js';
import { runLoop, sentences, type LoopOptions } from '../src/generate/loop.js';
import { loadDistribution, loadPrompts, parseAnswer, sentenceCode } from '../src/generate/prompts.js';
import { ResponseCache } from '../src/llm/cache.js';
import { LlmClient } from '../src/llm/client.js';
import { fakeAnswer, type FakeOptions } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

const prompts = loadPrompts();
let record: ImageRecord;
beforeAll(async () => {
  const { result, out } = await runPrepare({
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
    ],
    format: 'jsonl',
  });
  record = (await readJsonlShards<ImageRecord>(out, result)).find((r) => r.image === '000000397133.jpg')!;
});

const open: { close(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function setup(fake: FakeOptions = {}, cacheFile: string | null = null) {
  const server = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content, fake) });
  await server.start();
  const client = new LlmClient({ endpoints: [server.url], model: 'fake' });
  const cache = cacheFile ? new ResponseCache(cacheFile) : null;
  open.push({ close: () => client.close() }, { close: () => server.stop() });
  if (cache) open.push({ close: () => cache.close() });
  const stats: CallStats = { requests: {}, cacheHits: 0, promptTokens: 0, completionTokens: 0 };
  return { server, call: llmCall(client, cache, stats), stats, cache };
}

const run = (call: ReturnType<typeof llmCall>, dist = 'instructify-mix', options: Partial<LoopOptions> = {}, rec = record) =>
  runLoop(rec, { prompts, distribution: loadDistribution(dist, prompts), call, options });

describe('the generation loop over a real HTTP server', () => {
  it('builds the information from captions and the tree, and every accepted answer is a fact from it', async () => {
    const { call, server } = await setup();
    const { results, information, stats } = await run(call);
    expect(information.slice(0, 5)).toEqual(record.captions.map((c) => c.text));
    // The tree became sentences: one per kind of object.
    expect(information).toContain('There is a person in the picture.');
    expect(information).toContain('There is a dining table in the picture.');
    expect(results.length).toBeGreaterThan(0);
    const all = information.join('\n').toLowerCase();
    for (const r of results) {
      for (const t of r.turns) {
        const core = t.answer.replace(/^(yes|no)[,.]?\s*/i, '').replace(/^[A-Z]\s+/, '').toLowerCase();
        const parts = core.split(/(?<=\.)\s+/).map((s) => s.replace(/\.$/, '').trim());
        expect(core.startsWith('i cannot see') || parts.every((p) => all.includes(p))).toBe(true);
      }
    }
    expect(Object.values(stats.accepted).reduce((a, b) => a + b, 0)).toBe(results.length);
    expect(server.seen.bodies.every((b) => b.messages.length === 1 && b.messages[0]!.role === 'user' && b.temperature === 0.2)).toBe(true);
  });

  it('reduce removes the facts a conversation used from the next rounds', async () => {
    const { call } = await setup();
    const { results } = await run(call, 'llava', { maxRounds: 10 });
    const withRemovals = results.filter((r) => r.removed.length);
    expect(withRemovals.length).toBeGreaterThan(0);
    for (let i = 0; i + 1 < results.length; i++) {
      for (const gone of results[i]!.removed) expect(sentences(results[i + 1]!.input)).not.toContain(gone);
    }
  });

  it('check drops a wrong later turn, and a wrong first turn kills the conversation', async () => {
    const second = await setup({ wrongTurn: 1 });
    const a = await run(second.call, 'instructify-mix');
    expect(Object.values(a.stats.turnsRejected).reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    for (const r of a.results) for (const t of r.turns) expect(t.answer).not.toContain('purple elephant');
    const first = await setup({ wrongTurn: 0 });
    const b = await run(first.call, 'llava');
    expect(Object.values(b.stats.conversationsRejected).reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    // llava's types all fail their first turn (detail has none to plant): only descriptions survive.
    expect(b.results.every((r) => r.promptType === 'llava-detail')).toBe(true);
  });

  it('with spare slots asks checks and reduce at once: same results, fewer round trips, a failed check re-asks reduce', async () => {
    for (const wrongTurn of [null, 1, 0]) {
      const plain = await setup({ wrongTurn });
      const a = await run(plain.call, 'instructify-mix');
      const fast = await setup({ wrongTurn });
      const b = await runLoop(record, { prompts, distribution: loadDistribution('instructify-mix', prompts), call: fast.call, spare: () => true });
      expect(b.results).toEqual(a.results);
      // Speculative asks are asks too: only checks and reduce may have more of them.
      expect({ ...b.stats, speculativeUnused: 0, asks: {} }).toEqual({ ...a.stats, asks: {} });
      for (const [k, n] of Object.entries(a.stats.asks)) {
        if (k === 'check' || k === 'reduce') expect(b.stats.asks[k]).toBeGreaterThanOrEqual(n);
        else expect(b.stats.asks[k]).toBe(n);
      }
      expect(a.stats.speculativeUnused).toBe(0);
      if (wrongTurn === null) expect(b.stats.speculativeUnused).toBe(0);
      else expect(b.stats.speculativeUnused).toBeGreaterThan(0);
      const reduces = (s: LoopbackLlmServer) => s.seen.bodies.filter((x) => x.messages[0]!.content.startsWith(prompts.get('reduce')!.template.slice(0, 60))).length;
      const kept = a.results.filter((r) => r.turns.length > 0).length;
      // Sequential: one reduce per kept conversation. Speculative: one per conversation that got that far,
      // plus a second when a later turn failed its check.
      expect(reduces(plain.server)).toBe(kept);
      if (wrongTurn === null) expect(reduces(fast.server)).toBe(kept);
      else expect(reduces(fast.server)).toBeGreaterThan(kept);
      // Every speculative request is one the sequential run either made too or could not have needed.
      const asked = (s: LoopbackLlmServer) => new Set(s.seen.bodies.map((x) => x.messages[0]!.content));
      for (const text of asked(plain.server)) expect(asked(fast.server).has(text)).toBe(true);
    }
  });

  it('stops on each rule: used up, failures, little information, no prompt left', async () => {
    const ok = await setup();
    const used = await run(ok.call, 'instructify-mix', { stopUsedShare: 0.05 });
    expect(used.stats.stop).toBe('used-up');
    const bad = await setup({ unparseable: true });
    const failing = await run(bad.call, 'llava');
    expect(failing.stats.stop).toBe('failures');
    expect(failing.results).toEqual([]);
    expect(Object.values(failing.stats.parseFailures).reduce((x, y) => x + y, 0)).toBe(4 * 3);
    const tiny: ImageRecord = { ...record, captions: [{ text: 'Cat.', source: 't' }], boxes: [], tree: null, qa: [] };
    expect((await run(ok.call, 'llava', {}, tiny)).stats.stop).toBe('little-information');
    const one = await run(ok.call, 'llava', { filtering: false });
    expect(one.stats.stop).toBe('no-prompt-left');
    expect(one.results).toHaveLength(5);
  });

  it('turns QA pairs into facts with one call', async () => {
    const { call, stats } = await setup();
    const withQa: ImageRecord = { ...record, qa: [{ question: 'What is the man making?', answer: 'pizza', answers: ['pizza'], source: 'vqav2' }] };
    const { information } = await run(call, 'llava', { maxRounds: 0 }, withQa);
    expect(information).toContain('The answer to "What is the man making?" is pizza.');
    expect(stats.requests['qa-to-facts']).toBe(1);
  });

  it('asks for the QA facts and the tree description at once, and keeps their lines in a fixed order', async () => {
    const server = new LoopbackLlmServer({ latencyMs: 150, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    const client = new LlmClient({ endpoints: [server.url], model: 'fake' });
    open.push({ close: () => client.close() }, { close: () => server.stop() });
    const stats: CallStats = { requests: {}, cacheHits: 0, promptTokens: 0, completionTokens: 0 };
    const withQa: ImageRecord = { ...record, qa: [{ question: 'What is the man making?', answer: 'pizza', answers: ['pizza'], source: 'vqav2' }] };
    const { information } = await run(llmCall(client, null, stats), 'llava', { maxRounds: 0 }, withQa);
    // Both were in flight together (asked one after the other, at most one would be); the tree's check follows its description.
    expect(server.seen.maxInFlight).toBe(2);
    expect(server.seen.requests).toBe(3);
    const qaAt = information.indexOf('The answer to "What is the man making?" is pizza.');
    expect(qaAt).toBeGreaterThanOrEqual(record.captions.length);
    // The tree's description lines come after the QA facts.
    expect(information.length).toBeGreaterThan(qaAt + 1);
  });

  it('draws the same prompts for the same seed and image; a second run answers from the cache with no requests', async () => {
    const dir = await tmpDir();
    const cacheFile = path.join(dir, 'cache.sqlite');
    const first = await setup({}, cacheFile);
    const a = await run(first.call, 'instructify-mix', { seed: 3 });
    const sent = first.server.seen.requests;
    expect(sent).toBeGreaterThan(5);
    first.cache!.close();
    open.splice(open.findIndex((o) => o.close === first.cache!.close), 1);
    const again = await setup({}, cacheFile);
    const b = await run(again.call, 'instructify-mix', { seed: 3 });
    expect(again.server.seen.requests).toBe(0);
    // Identical prompts within the first run were already answered from the cache there.
    expect(again.stats.cacheHits).toBe(sent + first.stats.cacheHits);
    expect(b).toEqual(a);
    // Other seeds draw other sequences (two may agree by chance; five cannot all).
    const other = await setup();
    const draws = new Set<string>();
    for (const seed of [4, 5, 6, 7, 8]) draws.add((await run(other.call, 'instructify-mix', { seed })).results.map((r) => r.promptType).join(','));
    expect(draws.size).toBeGreaterThan(1);
  });
});

describe('answer parsers', () => {
  const pick = () => 0;
  it('parse QA blocks, yes/no, choices, codes and verdicts as each prompt declares', () => {
    const conv = prompts.get('llava-conversation')!;
    expect(parseAnswer(conv, '**Question 1:** What is it?\n**Answer 1:** A cat.\nQuestion: Where?\nAnswer: On a mat,\nnear the door.', pick)).toEqual({
      kind: 'turns',
      turns: [
        { question: 'What is it?', answer: 'A cat.' },
        { question: 'Where?', answer: 'On a mat,\nnear the door.' },
      ],
    });
    expect(parseAnswer(conv, 'Question: One?\nAnswer: only one', pick)).toBeNull();
    expect(parseAnswer(prompts.get('yes-no')!, 'Question: A?\nAnswer: Yes.\nQuestion: B?\nAnswer: Maybe.', pick)).toBeNull();
    expect(parseAnswer(prompts.get('multiple-choice')!, 'Question: Which?\nA) cat\nB) dog\nAnswer: B dog', pick)?.kind).toBe('turns');
    expect(parseAnswer(prompts.get('multiple-choice')!, 'Question: Which?\nA) cat\nB) dog\nAnswer: C bird', pick)).toBeNull();
    expect(parseAnswer(prompts.get('short-answer')!, 'Question: A?\nAnswer: far too many words here\nQuestion: B?\nAnswer: two', pick)).toBeNull();
    expect(parseAnswer(prompts.get('reduce')!, 'A, C, AB', pick)).toEqual({ kind: 'codes', codes: ['A', 'C', 'AB'] });
    expect(parseAnswer(prompts.get('reduce')!, 'none', pick)).toEqual({ kind: 'codes', codes: [] });
    expect(parseAnswer(prompts.get('check')!, 'False.', pick)).toEqual({ kind: 'bool', value: false });
    expect(parseAnswer(prompts.get('check')!, 'It depends', pick)).toBeNull();
    expect(parseAnswer(prompts.get('llava-detail')!, 'A kitchen with a man.', pick)).toEqual({ kind: 'turns', turns: [{ question: 'Describe the image in detail.', answer: 'A kitchen with a man.' }] });
    expect([0, 25, 26, 27, 701, 702].map(sentenceCode)).toEqual(['A', 'Z', 'AA', 'AB', 'ZZ', 'AAA']);
  });
});
