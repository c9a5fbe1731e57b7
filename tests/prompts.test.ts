import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { llmCall } from '../src/generate/caller.js';
import { runLoop } from '../src/generate/loop.js';
import { BUILTIN_PROMPTS, loadDistribution, loadPrompts, parseAnswer, render } from '../src/generate/prompts.js';
import { LlmClient } from '../src/llm/client.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

const stop: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stop.splice(0)) await s();
});

describe('prompt files', () => {
  const prompts = loadPrompts();

  it('cover every family of METHOD.md section 6 and render with what the loop provides', () => {
    expect([...prompts.keys()].sort()).toEqual([
      'avoidance', 'caption', 'check', 'docowl', 'fill-blank', 'instruction', 'llava-complex', 'llava-conversation', 'llava-detail', 'llavar',
      'lvis-conversation', 'lvis-detail', 'multiple-choice', 'polite-flamingo', 'qa-to-facts', 'reduce', 'shikra-grounded', 'shikra-text',
      'short-answer', 'tree-check', 'tree-to-description', 'true-false', 'yes-no',
    ]);
    const vars = { information: 'i', qa: 'q', tree: 't', description: 'd', question: 'q', answer: 'a', sentences: 's', questions: 'q', boxes: 'b', task: 't', option_count: '3', label_style: 'A', answer_instruction: 'x' };
    for (const p of prompts.values()) expect(render(p, vars)).not.toMatch(/\{\{\w+\}\}/);
    expect(() => render(prompts.get('check')!, { information: 'i' })).toThrowError(/uses \{\{question\}\}/);
    expect(prompts.get('instruction')!.tasks!.length).toBeGreaterThan(20);
    for (const d of ['llava', 'lvis', 'instructify-mix']) expect(loadDistribution(d, prompts).types.length).toBeGreaterThan(1);
  });

  it('parse true/false and fill-in-the-blank answers, and nothing else for them', () => {
    const pick = () => 0;
    expect(parseAnswer(prompts.get('true-false')!, 'Question: True or false: a cat.\nAnswer: False, a dog.\nQuestion: True or false: b.\nAnswer: True.', pick)?.kind).toBe('turns');
    expect(parseAnswer(prompts.get('true-false')!, 'Question: a?\nAnswer: Yes.\nQuestion: b?\nAnswer: True.', pick)).toBeNull();
    expect(parseAnswer(prompts.get('fill-blank')!, 'Question: Fill in the blank: The ___ is red.\nAnswer: bus', pick)?.kind).toBe('turns');
    expect(parseAnswer(prompts.get('fill-blank')!, 'Question: What is red?\nAnswer: bus', pick)).toBeNull();
  });

  it('a user folder replaces a built-in prompt and adds new ones that a user distribution can use', async () => {
    const dir = await tmpDir();
    await writeFile(path.join(dir, 'caption.md'), '{ "name": "caption", "role": "generate", "parser": "description", "questions": ["Caption?"] }\n---\nMY OWN CAPTION PROMPT\n{{information}}');
    await writeFile(path.join(dir, 'haiku.md'), '{ "name": "haiku", "role": "generate", "parser": "qa", "exactTurns": 1 }\n---\nA haiku please.\nFacts:\n{{information}}');
    const mine = loadPrompts([dir]);
    expect(mine.get('caption')!.template).toContain('MY OWN CAPTION PROMPT');
    expect(mine.get('llava-detail')!.file.startsWith(BUILTIN_PROMPTS)).toBe(true);
    const distFile = path.join(dir, 'mix.json');
    await writeFile(distFile, JSON.stringify({ name: 'mine', types: [{ prompt: 'haiku', weight: 1, maxSamples: 1 }] }));
    expect(loadDistribution(distFile, mine).types[0]!.prompt).toBe('haiku');
    await writeFile(distFile, JSON.stringify({ name: 'bad', types: [{ prompt: 'nope', weight: 1, maxSamples: 1 }] }));
    expect(() => loadDistribution(distFile, mine)).toThrowError(expect.objectContaining({ code: 'E_OPTION', message: expect.stringContaining('"nope"') }));
    await mkdir(path.join(dir, 'broken'));
    await writeFile(path.join(dir, 'broken', 'x.md'), 'no header here');
    expect(() => loadPrompts([path.join(dir, 'broken')])).toThrowError(/JSON header/);
  });

  it('the full mix runs over HTTP, and grounded prompts get the boxes in top-left 0..1 coordinates', async () => {
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }], format: 'jsonl' });
    const rec = (await readJsonlShards<ImageRecord>(out, result)).find((r) => r.image === '000000397133.jpg')!;
    const server = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    const client = new LlmClient({ endpoints: [server.url], model: 'fake' });
    stop.push(() => client.close(), () => server.stop());
    const distribution = { name: 'all', types: [...prompts.values()].filter((p) => p.role === 'generate').map((p) => ({ prompt: p.name, weight: 1, maxSamples: 1 })) };
    const call = llmCall(client, null, { requests: {}, cacheHits: 0, promptTokens: 0, completionTokens: 0 });
    const seenTypes = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const r = await runLoop(rec, { prompts, distribution, call, options: { seed, stopUsedShare: 1, maxRounds: 30 } });
      for (const x of r.results) seenTypes.add(x.promptType);
    }
    expect(seenTypes.size).toBeGreaterThanOrEqual(12);
    const grounded = server.seen.bodies.map((b) => b.messages[0]!.content).find((c) => c.includes('Objects:\n'));
    expect(grounded).toBeDefined();
    const first = rec.boxes[0]!;
    expect(grounded).toContain(`${first.label} [${first.x1.toFixed(2)}, ${first.y1.toFixed(2)}, ${first.x2.toFixed(2)}, ${first.y2.toFixed(2)}]`);
  });
});
