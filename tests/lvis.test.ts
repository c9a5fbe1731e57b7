import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { factConversations } from '../src/generate/facts.js';
import { runLoop } from '../src/generate/loop.js';
import { loadPrompts } from '../src/generate/prompts.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

// Hand-written from the LVIS v1 format description: no real LVIS slice is at hand.
const LVIS = path.join(ROOT, 'tests', 'fixtures', 'lvis_v1_from_format_docs.json');

async function record(lvisFile = LVIS, workers = 0): Promise<{ rec: ImageRecord; rejects: Record<string, number> }> {
  const { result, out } = await runPrepare({
    workers,
    // One element per batch: with a worker, every annotation after the first may be parsed there.
    readBatchBytes: 1,
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      { kind: 'lvis', paths: [lvisFile] },
    ],
    format: 'jsonl',
  });
  return { rec: (await readJsonlShards<ImageRecord>(out, result)).find((r) => r.image === '000000397133.jpg')!, rejects: result.rejects };
}

describe('LVIS and what is known to be absent', () => {
  it("names the image as coco_url does (COCO 2017's file), a v0.5 file_name being the fallback only", async () => {
    const j = JSON.parse(readFileSync(LVIS, 'utf8')) as { images: Record<string, unknown>[] };
    j.images[0]!.file_name = 'COCO_val2014_000000397133.jpg';
    const file = path.join(await tmpDir(), 'lvis_v0.5_from_format_docs.json');
    await writeFile(file, JSON.stringify(j));
    const { rec } = await record(file);
    expect(rec.sources).toContain('lvis');
    expect(rec.image).toBe('000000397133.jpg');
  });

  it('LVIS alone finds its images in a COCO 2017 folder (train2017/, val2017/) by coco_url, or in the split folder itself', async () => {
    const root = await tmpDir();
    await mkdir(path.join(root, 'val2017'));
    await mkdir(path.join(root, 'train2017'));
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(root, 'val2017', '000000397133.jpg'));
    const alone = async (images: string) => {
      const { result, out } = await runPrepare({ sources: [{ kind: 'lvis', paths: [LVIS] }], images, format: 'jsonl' });
      return { rows: await readJsonlShards<ImageRecord>(out, result), rejects: result.rejects };
    };
    const inCoco = await alone(root);
    expect(inCoco.rows.map((r) => r.image)).toEqual(['val2017/000000397133.jpg']);
    expect(inCoco.rejects['missing-image']).toBeUndefined();
    const inSplit = await alone(COCO_IMAGES);
    expect(inSplit.rows.map((r) => r.image)).toEqual(['000000397133.jpg']);
    expect(inSplit.rejects['missing-image']).toBeUndefined();
  });

  it('a polygon that lies outside its own box (LVIS v0.5) is set aside with a reason, and the box is used', async () => {
    const j = JSON.parse(readFileSync(LVIS, 'utf8')) as { annotations: { id: number; segmentation: number[][] }[] };
    j.annotations.find((a) => a.id === 1)!.segmentation = [[500, 10, 560, 10, 560, 40, 500, 40]];
    const file = path.join(await tmpDir(), 'lvis_v0.5_polygons_from_format_docs.json');
    await writeFile(file, JSON.stringify(j));
    const { rec, rejects } = await record(file);
    expect(rejects).toEqual({ 'unknown-image': 1, 'mask-outside-box': 1 });
    const pizza = rec.boxes.find((b) => b.source === 'lvis' && b.label === 'pizza')!;
    expect(pizza.mask).toBeNull();
    expect(pizza).toMatchObject({ x1: 100 / 640, y1: 200 / 427 });
    // The knife's polygon is inside its box: kept.
    expect(rec.boxes.find((b) => b.source === 'lvis' && b.label === 'knife')!.mask?.format).toBe('polygon');
  });

  it('a category LVIS did not annotate exhaustively is never counted (footer, facts) nor said absent; its boxes stay', async () => {
    const { rec } = await record();
    expect(rec.uncounted).toEqual(['knife']);
    expect(rec.boxes.some((b) => b.label === 'knife')).toBe(true);
    expect(rec.absent).not.toContain('knife');
    expect(rec.tree).not.toMatch(/^knives?: /m);
    expect(rec.tree).toMatch(/^pizzas?: \d+$/m);
    const text = factConversations(rec, { seed: 1, maxTurns: 50 }).flatMap((c) => c.turns.map((t) => `${t.question} ${t.answer}`));
    expect(text.filter((t) => /kni(fe|ves)/.test(t))).toEqual([]);
    expect(text.some((t) => /How many pizzas|Count the pizzas/.test(t))).toBe(true);
  });


  it('joins LVIS onto the COCO image: its boxes with masks, and its negative categories as absent labels', async () => {
    const { rec, rejects } = await record();
    expect(rec.sources).toEqual(['coco-captions', 'coco-instances', 'lvis']);
    const lvisBoxes = rec.boxes.filter((b) => b.source === 'lvis');
    expect(lvisBoxes.map((b) => b.label).sort()).toEqual(['knife', 'pizza']);
    expect(lvisBoxes.find((b) => b.label === 'pizza')).toMatchObject({ x1: 100 / 640, y1: 200 / 427, mask: { format: 'polygon' } });
    expect(rec.absent).toEqual(['baseball bat', 'zebra']);
    // What LVIS boxed, stated (METHOD.md section 1); names resolved from categories that come last in the file.
    expect(rec.facts).toEqual([{ text: 'This image contains a pizza and a knife.', source: 'lvis' }]);
    // The annotation for an image LVIS does not list is set aside.
    expect(rejects).toEqual({ 'unknown-image': 1 });
  });

  it('gives the same record when read workers parse the annotations', async () => {
    const single = await record(LVIS, 0);
    const withWorkers = await record(LVIS, 2);
    expect(withWorkers).toEqual(single);
    expect(withWorkers.rec.boxes.filter((b) => b.source === 'coco-instances').length).toBeGreaterThan(10);
  });

  it('never lists as absent a label some dataset boxed', async () => {
    const data = JSON.parse(readFileSync(LVIS, 'utf8'));
    data.images[0].neg_category_ids = [3, 4]; // pizza is boxed by LVIS itself
    const file = path.join(await tmpDir(), 'lvis_v1_from_format_docs.json');
    await writeFile(file, JSON.stringify(data));
    expect((await record(file)).rec.absent).toEqual(['zebra']);
  });

  it('the facts generator says "no" exactly for the absent labels', async () => {
    const { rec } = await record();
    const no = factConversations(rec, { seed: 1, maxTurns: 20 }).find((c) => c.promptType === 'facts-is-not-there')!;
    expect(no.turns.map((t) => t.answer)).toEqual(['No, there is no baseball bat in the image.', 'No, there is no zebra in the image.']);
    const yes = factConversations(rec, { seed: 1, maxTurns: 50 }).find((c) => c.promptType === 'facts-is-there')!;
    for (const t of yes.turns) expect(t.answer.startsWith('Yes')).toBe(true);
  });

  it('the LLM is told what is not there (METHOD.md section 1)', async () => {
    const { rec } = await record();
    const { information } = await runLoop(rec, { prompts: loadPrompts(), distribution: { name: 'none', types: [] }, call: async () => '', options: { useTree: false, maxRounds: 0 } });
    expect(information).toContain('This image does not contain any baseball bat or any zebra.');
  });

  it('plain COCO instances given as LVIS say what was expected', async () => {
    await expect(runPrepare({ sources: [{ kind: 'lvis', paths: [COCO_INSTANCES] }] })).rejects.toMatchObject({ code: 'E_WRONG_KIND', message: expect.stringContaining('neg_category_ids') });
  });
});
