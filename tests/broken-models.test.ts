import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { englishWordShare, isEcho, isInLanguage, isRefusal, unusable, withoutThinking } from '../src/generate/answer-text.js';
import { boxFacts } from '../src/generate/box-facts.js';
import { generate, readShards, type Conversation, type GenerateOptions, type GenerateResult } from '../src/generate/generate.js';
import { loadPrompts, parseCodes, parseVerdict, readAnswer } from '../src/generate/prompts.js';
import { folderStats, formatStats } from '../src/inspect/inspect.js';
import { brokenAnswer, fakeAnswer, noise, type BrokenModel } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer, type ChatRequest, type LoopbackAnswer } from '../src/llm/loopback-server.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, VQA_QUESTIONS, runPrepare, tmpDir } from './helpers.js';

/**
 * Broken and weak models are bad input: whatever they say, nothing of it
 * may become training data, and the run must say so. These tests play the
 * models over real HTTP against the 79 real COCO images.
 */

describe('check verdicts: the last word, or alone on the last line', () => {
  it.each([
    ['True', true],
    ['false', false],
    ['FALSE.', false],
    ['**True**', true],
    ['Verdict: False', false],
    ['The answer matches the information.\nTrue', true],
    ['It is not true that there are two dogs, so: False', false],
    ['Everything it says is in the information, so the verdict is True.', true],
  ])('%j reads as %s', (text, value) => {
    expect(parseVerdict(text)).toBe(value);
  });

  it.each([
    'xx TRUEβcurr yy',
    'The answer is not true.',
    'True, but the count could be wrong, it is hard to say',
    'It depends',
    'TRUEβ',
    '',
    'True or False?\nmaybe',
  ])('%j is no verdict', (text) => {
    expect(parseVerdict(text)).toBeNull();
  });
});

describe('reduce codes: only offered codes, in the declared list form', () => {
  const offered = new Set(['A', 'B', 'C', 'AB']);
  it('reads a list of offered codes and "none"', () => {
    expect(parseCodes('A, C, AB', offered)).toEqual(['A', 'C', 'AB']);
    expect(parseCodes('B C', offered)).toEqual(['B', 'C']);
    expect(parseCodes('Codes: A, B.', offered)).toEqual(['A', 'B']);
    expect(parseCodes('none', offered)).toEqual([]);
  });
  it('prose, lone capitals in sentences and codes never offered remove nothing', () => {
    for (const t of ['I cannot tell.', 'I cannot tell. B. A fire hydrant is used.', 'A, Z', 'Facts A and C were used because the questions mention them', 'AAAA', '']) {
      expect(parseCodes(t, offered), t).toBeNull();
    }
  });
});

describe('free text: thinking, refusals, language, echoes', () => {
  it('sets thinking blocks aside, closed, open-ended or with only their end shown', () => {
    expect(withoutThinking('<think>True? A, B</think>\nThe answer.')).toBe('The answer.');
    expect(withoutThinking('reasoning here</think>The answer.')).toBe('The answer.');
    expect(withoutThinking('<think>still thinking when cut')).toBe('');
  });

  it('knows a refusal from an avoidance answer', () => {
    expect(isRefusal("I'm sorry, but I cannot see images.")).toBe(true);
    expect(isRefusal('As an AI language model, I can only read text.')).toBe(true);
    expect(isRefusal('I am unable to view the image you describe.')).toBe(true);
    expect(isRefusal('I cannot see a dragon in this image.')).toBe(false);
    expect(isRefusal('There is no spaceship in the picture.')).toBe(false);
  });

  it('every real COCO caption and VQA question in ../shared/data is English; every noise answer and foreign sentence is not', async () => {
    const captions = (JSON.parse(await readFile(COCO_CAPTIONS, 'utf8')) as { annotations: { caption: string }[] }).annotations.map((a) => a.caption);
    const questions = (JSON.parse(await readFile(VQA_QUESTIONS, 'utf8')) as { questions: { question: string }[] }).questions.map((q) => q.question);
    expect(captions.length + questions.length).toBeGreaterThan(400);
    const rejected = [...captions, ...questions].filter((t) => !isInLanguage(t));
    expect(rejected).toEqual([]);
    for (let seed = 0; seed < 300; seed++) expect(isInLanguage(noise(String(seed))), noise(String(seed))).toBe(false);
    for (const t of [
      'Auf dem Bild sieht man einen Hund, der im Park spielt.',
      'Sur la photo, on voit un chien qui joue dans le parc.',
      'En la foto se ve un perro que juega en el parque.',
      'На фотографии собака играет в парке с мячом.',
      // Made-up Latin syllables: a trigram detector calls this English (0.94); the word list does not.
      'blorqua ximzet vronak pledru fossor kleplemip tuvgna sorxim blorvro',
    ]) {
      expect(isInLanguage(t), t).toBe(false);
    }
    expect(englishWordShare('blorqua ximzet vronak pledru fossor kleplemip')).toBeLessThan(0.6);
  });

  it('an answer that reads the prompt back is an echo; one that repeats a fact is not', () => {
    const check = loadPrompts().get('llava-detail')!;
    const prompt = check.template.replace('{{information}}', 'A cat sits on a red mat.');
    expect(isEcho(prompt, prompt)).toBe(true);
    expect(isEcho('A cat sits on a red mat.', prompt)).toBe(false);
  });

  it('an answer cut at max_tokens is unusable whatever it says', () => {
    expect(unusable('The man is holding a', { prompt: '', finishReason: 'length', freeText: true })).toBe('truncated');
    expect(unusable('True', { prompt: '', finishReason: 'length', freeText: false })).toBe('truncated');
    expect(unusable('True', { prompt: '', finishReason: 'stop', freeText: false })).toBeNull();
  });

  it('a conversation answer in another language or a refusal inside a turn is not parsed', () => {
    const prompts = loadPrompts();
    const conv = prompts.get('llava-complex')!;
    const pick = () => 0;
    const de = readAnswer(conv, 'Question: What is on the table?\nAnswer: Auf dem Tisch steht eine Schüssel mit frischem Obst und einigen Äpfeln.', pick);
    expect(de).toEqual({ ok: false, reason: 'language' });
    const sorry = readAnswer(conv, "Question: What is on the table?\nAnswer: I'm sorry, I cannot see images.", pick);
    expect(sorry).toEqual({ ok: false, reason: 'refusal' });
    const good = readAnswer(conv, 'Question: What is on the table?\nAnswer: A bowl of fresh fruit.', pick);
    expect(good.ok).toBe(true);
  });
});

let prepared: string;
let records: ImageRecord[];
beforeAll(async () => {
  ({ out: prepared } = await runPrepare({
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
    ],
  }));
  records = [];
  for await (const r of readShards<ImageRecord>(prepared)) records.push(r);
});

const servers: LoopbackLlmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function serve(answer: (req: ChatRequest) => string | LoopbackAnswer): Promise<LoopbackLlmServer> {
  const s = new LoopbackLlmServer({ answer });
  await s.start();
  servers.push(s);
  return s;
}

const options = (server: LoopbackLlmServer, out: string, extra: Partial<GenerateOptions> = {}): GenerateOptions => ({
  input: prepared,
  out,
  llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 32 },
  distribution: 'llava',
  loop: { seed: 3 },
  ...extra,
});

async function conversationsIn(out: string): Promise<Conversation[]> {
  const rows: Conversation[] = [];
  if (!(await readdir(out)).some((n) => n.startsWith('part-'))) return rows;
  for await (const c of readShards<Conversation>(out, /^part-[\w-]+\.(parquet|jsonl)$/)) rows.push(c);
  return rows;
}

/** What a well-behaved model kept per prompt type on this input and seed before the trust checks: the 5% band of the issue. */
const KEPT_BEFORE: Record<string, number> = { 'llava-conversation': 110, 'llava-complex': 93, 'llava-detail': 33 };

describe('a run against a broken model keeps nothing and says why', () => {
  const broken: BrokenModel[] = ['noise', 'refusal', 'foreign', 'empty', 'truncated-json', 'echo', 'buried-verdict', 'cut-short', 'capitals'];
  it.each(broken)('%s: no conversation, every image counted as unusable, exit past --max-failure-rate, no cache replays', async (model) => {
    const server = await serve((req) => brokenAnswer(req, model));
    const out = await tmpDir();
    const err = await generate(options(server, out)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_LLM' });
    expect((err as Error).message).toMatch(/79 had no usable answer/);
    expect(await conversationsIn(out)).toEqual([]);
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as GenerateResult & { status: string };
    expect(manifest.status).toBe('failed');
    expect(manifest).toMatchObject({ images: 79, imagesWithConversations: 0, unusableImages: 79, conversations: 0, cacheHits: 0 });
    expect(manifest.rejects).toEqual({ 'unusable-answers': 79 });
    // A first run into an empty folder asks the server every time: the cache replays nothing.
    expect(manifest.requests).toBe(server.seen.requests);
    const stats = await folderStats(out);
    expect(stats).toMatchObject({ images: 79, imagesWithConversations: 0, conversations: 0, unusableImages: 79, cacheReplays: 0 });
    for (const t of ['llava-conversation', 'llava-complex', 'llava-detail']) expect(stats.byPromptType![t]).toMatchObject({ kept: 0 });
    const failures = Object.values(stats.byPromptType!).reduce((s, t) => s + t.parseFailures, 0);
    expect(failures).toBeGreaterThan(79);
    expect(formatStats(stats)).toContain('79 images worked on, 0 with conversations, 0 conversations kept');
  });

  it('noise: its parse failures are by prompt type and reason, and every retry was a new request', async () => {
    const server = await serve((req) => brokenAnswer(req, 'noise'));
    const out = await tmpDir();
    await generate(options(server, out)).catch(() => {});
    const stats = await folderStats(out);
    const gen = ['llava-conversation', 'llava-complex', 'llava-detail'].map((t) => stats.byPromptType![t]!);
    expect(gen.every((t) => t.parseFailures === t.asks && t.asks > 0)).toBe(true);
    expect(stats.byPromptType!['tree-to-description']!.parseFailures).toBeGreaterThan(0);
    // Mixed-script salad is caught by the language test, the rest by the formats.
    const reasons = Object.values(stats.byPromptType!).reduce((s, t) => ({ ...s, ...Object.fromEntries(Object.keys(t.unusable).map((k) => [k, 1])) }), {} as Record<string, number>);
    expect(Object.keys(reasons).sort()).toEqual(['format', 'language']);
    const bodies = server.seen.bodies.map((b) => JSON.stringify(b));
    expect(new Set(bodies).size).toBe(bodies.length);
    expect(server.seen.bodies.some((b) => b.seed !== undefined)).toBe(true);
  });
});

describe('a model that shows its reasoning, and one that answers well', () => {
  it('thinking in the content or beside it never reaches a conversation, and the same conversations are kept', async () => {
    const good = await generate(options(await serve((req) => fakeAnswer(req.messages.at(-1)!.content)), await tmpDir(), { cache: null }));
    for (const model of ['thinking', 'reasoning-field'] as const) {
      const out = await tmpDir();
      const r = await generate(options(await serve((req) => brokenAnswer(req, model)), out, { cache: null }));
      expect(r.conversations).toBe(good.conversations);
      const rows = await conversationsIn(out);
      for (const c of rows) {
        for (const text of [...c.conversations.map((t) => t.value), ...c.information]) {
          expect(text).not.toMatch(/<\/?think>|Codes: A, B, C|Considering codes/);
        }
      }
    }
    // Within 5% of what each prompt type kept before the checks were added.
    for (const [t, n] of Object.entries(KEPT_BEFORE)) {
      expect(Math.abs(good.perPromptType[t]!.accepted - n), t).toBeLessThanOrEqual(Math.ceil(0.05 * n));
    }
    expect(good.unusableImages).toBe(0);
    expect(good.imagesWithConversations).toBe(79);
    expect(good.treeDescriptions).toEqual({ checked: 79 });
    // Every prompt type has a row, internal prompts as asks.
    for (const t of ['qa-to-facts', 'tree-to-description', 'tree-check', 'check', 'reduce']) expect(good.perPromptType[t]?.role).toBe('internal');
    expect(good.perPromptType['tree-check']!.asks).toBe(79);
  });

  it('a retry after an unusable answer is a new request, and a rerun replays it from the cache', async () => {
    // A model that answers noise unless the request carries a seed: only the retries can succeed.
    const answer = (req: ChatRequest) => (req.seed === undefined ? brokenAnswer(req, 'noise') : fakeAnswer(req.messages.at(-1)!.content));
    const server = await serve(answer);
    const out = await tmpDir();
    // No asking ahead: then every request of the first run is one the rerun needs too.
    const first = await generate(options(server, out, { limit: 10, speculate: false }));
    expect(first.conversations).toBeGreaterThan(0);
    expect(first.cacheHits, 'replays in the first run').toBe(0);
    expect(first.images).toBe(10);
    const bodies = server.seen.bodies.map((b) => JSON.stringify(b));
    expect(new Set(bodies).size).toBe(bodies.length);
    const again = await generate(options(server, out, { limit: 10, speculate: false }));
    expect(again.requests).toBe(0);
    expect(again.cacheHits).toBe(first.requests);
    expect(again.conversations).toBe(first.conversations);
  });
});

describe('the tree description joins the information only once checked', () => {
  it('a description that fails its check is replaced by the counts and positions of the boxes, and the row says so', async () => {
    const server = await serve((req) => {
      const prompt = req.messages.at(-1)!.content;
      // A model that invents a unicorn in every description, and a checker that catches it.
      if (prompt.includes('Write a dense, factual description')) return `${fakeAnswer(prompt)}\nThere is a unicorn in the picture.`;
      return fakeAnswer(prompt);
    });
    const out = await tmpDir();
    const r = await generate(options(server, out, { limit: 12 }));
    expect(r.treeDescriptions).toEqual({ 'tree-facts': 12 });
    const rows = await conversationsIn(out);
    expect(rows.length).toBeGreaterThan(0);
    const byImage = new Map(records.map((rec) => [rec.image, rec]));
    for (const c of rows) {
      expect(c.treeDescription).toBe('tree-facts');
      expect(c.information.join('\n')).not.toContain('unicorn');
      for (const t of c.conversations) expect(t.value).not.toContain('unicorn');
    }
    // An image's first conversation was given all its information: the box facts of its image among it.
    const firstOfImage = new Map<string, Conversation>();
    for (const c of rows) if (!firstOfImage.has(c.image)) firstOfImage.set(c.image, c);
    for (const [image, c] of firstOfImage) for (const f of boxFacts(byImage.get(image)!)) if (!f.startsWith('The ')) expect(c.information.concat(c.removed)).toContain(f);
  });

  it('a faithful description is kept and marked checked', async () => {
    const server = await serve((req) => fakeAnswer(req.messages.at(-1)!.content));
    const out = await tmpDir();
    await generate(options(server, out, { limit: 5 }));
    const rows = await conversationsIn(out);
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((c) => c.treeDescription))).toEqual(new Set(['checked']));
    expect(rows.some((c) => c.information.some((l) => /^There is an? .+ in the picture\.$/.test(l)))).toBe(true);
  });
});
