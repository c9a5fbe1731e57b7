import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { boxesTo1000, exportConversations, validateConversation } from '../src/export/export.js';
import { generate, readShards, type Conversation } from '../src/generate/generate.js';
import { folderStats, preview } from '../src/inspect/inspect.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, duckdb, runPrepare, tmpDir } from './helpers.js';

let prepared: string;
let conversations: string;
let source: Conversation[];
beforeAll(async () => {
  ({ out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }], images: COCO_IMAGES }));
  conversations = await tmpDir();
  await generate({ input: prepared, out: conversations, distribution: 'instructify-mix' });
  source = [];
  for await (const c of readShards<Conversation>(conversations, /^part-[\d-]+\.(parquet|jsonl)$/)) source.push(c);
});

const servers: LoopbackLlmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

const strip = (c: Conversation) => ({ id: c.id, image: c.image, conversations: c.conversations });

describe('export round trips, turn by turn', () => {
  it('LLaVA JSON and JSONL', async () => {
    const out = await tmpDir();
    const r = await exportConversations({ input: conversations, out, format: 'llava' });
    expect(r.exported).toBe(source.length);
    expect(JSON.parse(await readFile(path.join(out, 'llava.json'), 'utf8'))).toEqual(source.map(strip));
    const out2 = await tmpDir();
    await exportConversations({ input: conversations, out: out2, format: 'llava-jsonl' });
    const lines = (await readFile(path.join(out2, 'llava.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual(source.map(strip));
  });

  it('ShareGPT for LLaMA-Factory, with its dataset_info.json entry', async () => {
    const out = await tmpDir();
    await exportConversations({ input: conversations, out, format: 'sharegpt', name: 'coco-demo' });
    const items = JSON.parse(await readFile(path.join(out, 'sharegpt.json'), 'utf8')) as { messages: { role: string; content: string }[]; images: string[] }[];
    expect(items.map((it) => ({ image: it.images[0], turns: it.messages.map((m) => ({ from: m.role === 'user' ? 'human' : 'gpt', value: m.content })) }))).toEqual(
      source.map((c) => ({ image: c.image, turns: c.conversations })),
    );
    const info = JSON.parse(await readFile(path.join(out, 'dataset_info.json'), 'utf8'));
    expect(info['coco-demo']).toMatchObject({ file_name: 'sharegpt.json', formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' } });
  });

  it('Hugging Face Parquet with messages, images and the features datasets needs', async () => {
    const out = await tmpDir();
    await exportConversations({ input: conversations, out, format: 'hf-parquet' });
    const rows = await duckdb<{ messages: { role: string; content: { type: string; text: string | null }[] }[]; images: { bytes: string | null; path: string }[] }>(`select messages, images from '${out}/data/train-*.parquet'`);
    expect(rows).toHaveLength(source.length);
    rows.forEach((row, i) => {
      const turns = row.messages.map((m) => ({
        from: m.role === 'user' ? 'human' : 'gpt',
        value: m.content.map((p) => (p.type === 'image' ? '<image>\n' : p.text)).join(''),
      }));
      expect(turns).toEqual(source[i]!.conversations);
      expect(row.images).toEqual([{ bytes: null, path: source[i]!.image }]);
    });
    const [meta] = await duckdb<{ value: string }>(`select decode(value) as value from parquet_kv_metadata('${out}/data/train-00000.parquet') where decode(key) = 'huggingface'`);
    expect(JSON.parse(meta!.value).info.features.images).toEqual([{ _type: 'Image' }]);
    // The schema `datasets` derives from those features: nothing required (it only uses declared
    // features whose Arrow schema matches exactly), list items named "item".
    const elements = await duckdb<{ name: string; repetition_type: string | null }>(`select name, repetition_type from parquet_schema('${out}/data/train-00000.parquet')`);
    expect(elements.filter((e) => e.repetition_type === 'REQUIRED').map((e) => e.name)).toEqual([]);
    expect(elements.filter((e) => e.repetition_type === 'OPTIONAL').map((e) => e.name)).toEqual(['messages', 'item', 'role', 'content', 'item', 'type', 'text', 'images', 'item', 'bytes', 'path']);
    expect(elements.filter((e) => e.name === 'item').length).toBeGreaterThanOrEqual(3);
    // With --embed-images the bytes are the image file's.
    const out2 = await tmpDir();
    await exportConversations({ input: conversations, out: out2, format: 'hf-parquet', images: COCO_IMAGES, embedImages: true });
    const [one] = await duckdb<{ len: string; path: string | null; image: string }>(`select octet_length(images[1].bytes)::varchar as len, images[1].path as path from '${out2}/data/train-*.parquet' limit 1`);
    const file = await readFile(path.join(COCO_IMAGES, source[0]!.image));
    expect(one).toMatchObject({ len: String(file.length), path: null });
  });

  it('InternVL JSONL with image sizes, and its meta file', async () => {
    const out = await tmpDir();
    const r = await exportConversations({ input: conversations, out, format: 'internvl', images: COCO_IMAGES, name: 'coco-demo' });
    const lines = (await readFile(path.join(out, 'internvl.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; image: string; width: number; height: number; conversations: unknown });
    expect(lines.map((l) => ({ id: l.id, image: l.image, conversations: l.conversations }))).toEqual(source.map(strip));
    const meta = await sharp(path.join(COCO_IMAGES, lines[0]!.image)).metadata();
    expect([lines[0]!.width, lines[0]!.height]).toEqual([meta.width, meta.height]);
    expect(JSON.parse(await readFile(path.join(out, 'internvl_meta.json'), 'utf8'))['coco-demo']).toEqual({ root: COCO_IMAGES, annotation: 'internvl.jsonl', data_augment: false, repeat_time: 1, length: lines.length });
    expect(r.boxes).toContain('0..1000');
  });
});

describe('the wrong folder as input', () => {
  it('generate, preview and export each say which command\'s folder they read (or that it is missing), and write nothing', async () => {
    const { readdir } = await import('node:fs/promises');
    const out = path.join(await tmpDir(), 'out');
    await expect(exportConversations({ input: prepared, out, format: 'llava' })).rejects.toMatchObject({
      code: 'E_WRONG_KIND',
      message: expect.stringContaining(`${path.join(prepared, 'manifest.json')}: this folder holds the output of prepare; export reads the folder generate writes`),
    });
    await expect(generate({ input: conversations, out, distribution: 'instructify-mix' })).rejects.toMatchObject({
      code: 'E_WRONG_KIND',
      message: expect.stringContaining(`${path.join(conversations, 'manifest.json')}: this folder holds the output of generate; generate reads the folder prepare writes`),
    });
    await expect(preview({ input: conversations, count: 1, distribution: 'instructify-mix', log: () => undefined })).rejects.toMatchObject({ code: 'E_WRONG_KIND' });
    // A folder that is not there: said before anything is written.
    const missing = path.join(prepared, 'not-here');
    await expect(generate({ input: missing, out, distribution: 'instructify-mix' })).rejects.toMatchObject({ code: 'E_OPTION', message: `${missing}: no such folder: is the path right?` });
    await expect(exportConversations({ input: missing, out, format: 'llava' })).rejects.toMatchObject({ code: 'E_OPTION' });
    await expect(exportConversations({ input: conversations, out, format: 'internvl', images: missing })).rejects.toMatchObject({
      code: 'E_OPTION',
      message: `${missing}: --images: no such folder (ENOENT): is the path right?`,
    });
    await expect(readdir(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('export sets aside rows of a folder without a manifest that are not conversations', async () => {
    const input = await tmpDir();
    const good = source[0]!;
    await writeFile(path.join(input, 'part-0-00000.jsonl'), [good, { id: 'x', image: 'a.jpg' }, { id: 'y', image: 'b.jpg', conversations: [{ from: 'human' }] }].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await exportConversations({ input, out: await tmpDir(), format: 'llava-jsonl' });
    expect(r.exported).toBe(1);
    expect(r.rejected).toEqual({ 'not-a-conversation': 2 });
  });
});

describe('export validation', () => {
  async function planted(): Promise<string> {
    const dir = await tmpDir();
    const conv = (id: string, turns: [string, string][]): Conversation => ({
      id, image: '000000397133.jpg', promptType: 't', generator: 'llm', information: [], removed: [], model: 'm', temperature: 0.2, maxTokens: 10, seed: null,
      conversations: turns.flatMap(([q, a]) => [{ from: 'human' as const, value: q }, { from: 'gpt' as const, value: a }]),
    });
    const rows = [
      conv('ok', [['<image>\nWhat is here?', 'A man in a kitchen.']]),
      conv('boxed', [['<image>\nWhere is the oven?', 'At [0.10, 0.25, 0.5, 1.0].']]),
      conv('answer-marker', [['<image>\nWhat is here?', 'Look: <image> a man.']]),
      conv('no-marker', [['What is here?', 'A man.']]),
      conv('two-markers', [['<image>\nWhat?', 'A man.'], ['<image>\nAnd?', 'A pizza.']]),
      conv('leak', [['<image>\nWhat is here?', 'According to the facts, a man.\nQuestion: more?']]),
    ];
    await writeFile(path.join(dir, 'part-0-00000.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify({ command: 'generate', status: 'complete', perPromptType: {} }));
    return dir;
  }

  it('sets aside a planted <image> in an answer, a marker count mismatch and prompt text, and exports the rest', async () => {
    const input = await planted();
    const out = await tmpDir();
    const r = await exportConversations({ input, out, format: 'llava' });
    expect(r.exported).toBe(2);
    expect(r.rejected).toEqual({ 'image-in-answer': 1, 'image-marker-count': 2, 'prompt-leak': 1 });
    const rejects = (await readFile(path.join(out, 'export-rejects.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; reason: string });
    expect(rejects.map((x) => [x.id, x.reason])).toEqual([
      ['answer-marker', 'image-in-answer'],
      ['no-marker', 'image-marker-count'],
      ['two-markers', 'image-marker-count'],
      ['leak', 'prompt-leak'],
    ]);
    expect((JSON.parse(await readFile(path.join(out, 'llava.json'), 'utf8')) as { id: string }[]).map((x) => x.id)).toEqual(['ok', 'boxed']);
    expect(validateConversation({ conversations: [{ from: 'gpt', value: 'x' }, { from: 'human', value: 'y' }] })?.reason).toBe('turn-order');
  });

  /** Real conversations of two images, with one of them pointed at a file that is not there and one at a file that is not an image. */
  async function withBadImages(): Promise<{ input: string; images: string; missing: string; broken: string; good: string }> {
    const images = await tmpDir();
    const [good, other] = [...new Set(source.map((c) => c.image))] as [string, string];
    await copyFile(path.join(COCO_IMAGES, good), path.join(images, good));
    await writeFile(path.join(images, 'broken.jpg'), 'not a jpeg');
    const rows = source
      .filter((c) => c.image === good || c.image === other)
      .map((c, i) => (c.image === good ? c : { ...c, image: i % 2 ? 'broken.jpg' : other }));
    const input = await tmpDir();
    await writeFile(path.join(input, 'part-0-00000.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    await writeFile(path.join(input, 'manifest.json'), JSON.stringify({ command: 'generate', status: 'complete', perPromptType: {} }));
    return { input, images, missing: other, broken: 'broken.jpg', good };
  }

  it('InternVL and --embed-images set aside a conversation whose image is missing or unreadable, and export the rest', async () => {
    const { input, images, missing, good } = await withBadImages();
    const rows = (await readFile(path.join(input, 'part-0-00000.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Conversation);
    const count = (image: string) => rows.filter((c) => c.image === image).length;
    expect(count(good) * count(missing) * count('broken.jpg')).toBeGreaterThan(0);
    for (const format of ['internvl', 'hf-parquet'] as const) {
      const out = await tmpDir();
      const r = await exportConversations({ input, out, format, images, embedImages: format === 'hf-parquet' });
      expect(r.exported).toBe(count(good));
      expect(r.rejected).toEqual({ 'missing-image': count(missing), 'unreadable-image': count('broken.jpg') });
      const rejects = (await readFile(path.join(out, 'export-rejects.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { image: string; reason: string; detail: string });
      expect(rejects.find((x) => x.reason === 'missing-image')).toMatchObject({ image: missing, detail: `no file ${missing} under the image root` });
      expect(rejects.find((x) => x.reason === 'unreadable-image')!.detail).toContain('broken.jpg');
      if (format === 'internvl') {
        const lines = (await readFile(path.join(out, 'internvl.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { image: string; width: number });
        expect(new Set(lines.map((l) => l.image))).toEqual(new Set([good]));
        expect(lines[0]!.width).toBe((await sharp(path.join(images, good)).metadata()).width);
      } else {
        const [n] = await duckdb<{ n: number }>(`SELECT count(*)::INT AS n FROM '${path.join(out, 'data', '*.parquet')}' WHERE octet_length(images[1].bytes) > 1000`);
        expect(n!.n).toBe(count(good));
      }
    }
  });

  it('--strict stops at the first conversation it would set aside, and leaves no export file behind', async () => {
    const { input, images } = await withBadImages();
    const out = await tmpDir();
    await expect(exportConversations({ input, out, format: 'internvl', images, strict: true })).rejects.toMatchObject({ code: 'E_BAD_RECORD', message: expect.stringMatching(/(missing|unreadable)-image: .*strict mode/) });
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(out)).filter((n) => n.startsWith('internvl'))).toEqual([]);
    // Without --strict the same input exports.
    expect((await exportConversations({ input, out, format: 'internvl', images })).exported).toBeGreaterThan(0);
    expect((await readdir(out)).sort()).toEqual(['export-manifest.json', 'export-rejects.jsonl', 'internvl.jsonl', 'internvl_meta.json']);
    // hf-parquet, 2 conversations a file: files finished before the bad image are removed too.
    const hf = await tmpDir();
    await expect(exportConversations({ input, out: hf, format: 'hf-parquet', images, embedImages: true, strict: true, rowsPerShard: 2 })).rejects.toMatchObject({ code: 'E_BAD_RECORD' });
    expect(await readdir(path.join(hf, 'data'))).toEqual([]);
    const whole = await exportConversations({ input, out: hf, format: 'hf-parquet', images, embedImages: true, rowsPerShard: 2 });
    expect(whole.files).toEqual(Array.from({ length: Math.ceil(whole.exported / 2) }, (_, i) => `data/train-${String(i).padStart(5, '0')}.parquet`));
  });

  it("InternVL box numbers come from the image's stored boxes, not from the text's two decimals", async () => {
    // A prepared folder whose one box has corners the text can only round: 67/640 = 0.1047 ...
    const dir = await tmpDir();
    const instances = path.join(dir, 'instances.json');
    await writeFile(instances, JSON.stringify({
      images: [{ id: 397133, file_name: '000000397133.jpg', width: 640, height: 427 }],
      annotations: [{ id: 1, image_id: 397133, category_id: 1, bbox: [67, 107, 250, 320], area: 80000, iscrowd: 0, segmentation: [] }],
      categories: [{ id: 1, name: 'oven' }],
    }));
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [instances] }] });
    const input = await tmpDir();
    const row = {
      id: 'boxed', image: '000000397133.jpg', prompt_type: 't', generator: 'llm', information: [], removed: [], tree_description: 'none', model: 'm', temperature: 0.2, max_tokens: 10, seed: null,
      conversations: [{ from: 'human', value: '<image>\nWhere is the oven?' }, { from: 'gpt', value: 'At [0.10, 0.25, 0.50, 1.00] (0 to 1 from the top left).' }],
    };
    await writeFile(path.join(input, 'part-0-00000.jsonl'), JSON.stringify(row) + '\n');
    await writeFile(path.join(input, 'manifest.json'), JSON.stringify({ tool: 'instructify', command: 'generate', status: 'complete', input: prepared }));
    const root = await tmpDir();
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(root, '000000397133.jpg'));
    const out = await tmpDir();
    await exportConversations({ input, out, format: 'internvl', images: root });
    const [line] = (await readFile(path.join(out, 'internvl.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { conversations: { value: string }[] });
    // 67/640, 107/427, 317/640, 427/427: 105, 251, 495, 1000 (the text's rounding would give 100, 250, 500, 1000).
    expect(line!.conversations[1]!.value).toBe('At [105, 251, 495, 1000] (0 to 1000 from the top left).');
  });

  it('writes boxes as 0..1000 for InternVL and keeps 0..1 elsewhere, saying so in the manifest', async () => {
    const input = await planted();
    const root = await tmpDir();
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(root, '000000397133.jpg'));
    const out = await tmpDir();
    await exportConversations({ input, out, format: 'internvl', images: root });
    const boxed = (await readFile(path.join(out, 'internvl.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; conversations: { value: string }[] }).find((x) => x.id === 'boxed')!;
    expect(boxed.conversations[1]!.value).toBe('At [100, 250, 500, 1000].');
    expect(JSON.parse(await readFile(path.join(out, 'export-manifest.json'), 'utf8')).boxes).toContain('0..1000');
    expect(boxesTo1000('no box [1, 2] here')).toBe('no box [1, 2] here');
    // The wording states the scale the numbers use.
    expect(boxesTo1000('Describe the region [0.10, 0.25, 0.50, 1.00] of the image (x1, y1, x2, y2, 0 to 1 from the top left).')).toBe(
      'Describe the region [100, 250, 500, 1000] of the image (x1, y1, x2, y2, 0 to 1000 from the top left).',
    );
    expect(boxesTo1000('From 0 to 1 people were there.')).toBe('From 0 to 1 people were there.');
  });
});

describe('stats, preview, demo with an LLM', () => {
  it('stats counts conversations and turns per prompt type and generator', async () => {
    const s = await folderStats(conversations);
    expect(s.kind).toBe('generate');
    expect(s.conversations).toBe(source.length);
    expect(s.byGenerator).toEqual({ facts: source.length });
    const turns = source.filter((c) => c.promptType === 'facts-count').reduce((n, c) => n + c.conversations.length / 2, 0);
    expect(s.byPromptType!['facts-count']!.turns).toBe(turns);
    const p = await folderStats(prepared);
    expect(p).toMatchObject({ kind: 'prepare', images: 79 });
    const cli = spawnSync(path.join(ROOT, 'bin', 'instructify'), ['stats', conversations, '--json'], { encoding: 'utf8' });
    expect(JSON.parse(cli.stdout).conversations).toBe(source.length);
  });

  it('preview shows the tree and the exact prompts, and with --llm-url the answers', async () => {
    const bin = path.join(ROOT, 'bin', 'instructify');
    const dry = spawnSync(bin, ['preview', '--in', prepared, '-n', '1'], { encoding: 'utf8' });
    expect(dry.status).toBe(0);
    expect(dry.stdout).toContain('Object Counts:');
    expect(dry.stdout).toContain('── prompt: tree-to-description');
    expect(dry.stdout).toContain('You will read a structured list of the objects');
    const server = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    servers.push(server);
    const live = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(bin, ['preview', '--in', prepared, '-n', '1', '--llm-url', server.url, '--model', 'fake']);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code: number | null) => resolve({ code, out }));
    });
    expect(live.code).toBe(0);
    expect(live.out).toContain('── answer: tree-to-description');
    expect(live.out).toMatch(/── kept: \d+ conversations/);
  });

  it('demo --llm-url runs the LLM loop instead of the facts', async () => {
    const server = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
    await server.start();
    servers.push(server);
    const dir = await tmpDir();
    await mkdir(dir, { recursive: true });
    const out = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(path.join(ROOT, 'bin', 'instructify'), ['demo', '--out', path.join(dir, 'd'), '--images', '6', '--llm-url', server.url, '--model', 'fake']);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', (code: number | null) => resolve({ code, out: text }));
    });
    expect(out.code).toBe(0);
    expect(out.out).toMatch(/generated \d+ conversations for 6 images \(LLM fake\)/);
    expect(server.seen.requests).toBeGreaterThan(6);
  });
});
