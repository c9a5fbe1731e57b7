import { describe, expect, it } from 'vitest';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { containsSentence } from '../src/records/assemble.js';
import { factConversations, positionPhrase } from '../src/generate/facts.js';
import { boxCentre } from '../src/generate/box-facts.js';
import { buildTree } from '../src/tree/build.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_INSTANCES, ROOT, VG_DIR, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

const fx = (name: string) => path.join(ROOT, 'tests', 'fixtures', 'sources', name);

describe('every spelling of the datasets, read as the data means', () => {
  it("Visual Genome v1.0's attributes.json names objects with object_names: every box keeps its label", async () => {
    const dir = await tmpDir();
    const vg = path.join(dir, 'vg');
    await mkdir(vg);
    await copyFile(path.join(VG_DIR, 'image_data.json'), path.join(vg, 'image_data.json'));
    await copyFile(fx('vg_v1_0_attributes_from_format_docs.json'), path.join(vg, 'attributes.json'));
    const { result, out } = await runPrepare({ sources: [{ kind: 'vg', paths: [vg] }], format: 'jsonl' });
    expect(result.rejects).toEqual({});
    const records = await readJsonlShards<ImageRecord>(out, result);
    const labels = records.flatMap((r) => r.boxes.map((b) => b.label));
    expect(labels.length).toBe(12);
    expect(labels).toContain('clock');
    expect(labels.every((l) => l.length > 0)).toBe(true);
  });

  it('a Visual Genome box of an image with no size anywhere is set aside as image-size-unknown, not as outside the image', async () => {
    const dir = await tmpDir();
    const vg = path.join(dir, 'vg');
    await mkdir(vg);
    // No image_data.json: nothing gives the images' sizes, and no image root to open them.
    await copyFile(fx('vg_v1_0_attributes_from_format_docs.json'), path.join(vg, 'attributes.json'));
    const { result } = await runPrepare({ sources: [{ kind: 'vg', paths: [vg] }], format: 'jsonl' });
    expect(Object.keys(result.rejects)).toEqual(['image-size-unknown']);
    expect(result.rejects['image-size-unknown']).toBe(12);
  });

  it("RefCOCO expressions are the annotator's raw sentences, not the tokenised ones", async () => {
    const { result, out } = await runPrepare({
      sources: [{ kind: 'refcoco', paths: [fx('refcoco_refs_unc_from_format_docs.json'), fx('refcoco_instances_from_format_docs.json')] }],
      format: 'jsonl',
    });
    const labels = (await readJsonlShards<ImageRecord>(out, result)).flatMap((r) => r.boxes.map((b) => b.label));
    expect(labels).toContain('Man in white.');
    expect(labels).not.toContain('man in white');
  });

  it("RefCOCO alone takes its objects' masks, ids and file names from the instances.json beside its refs", async () => {
    const { result, out } = await runPrepare({ sources: [{ kind: 'refcoco', paths: [fx('refcoco_refs_unc_from_format_docs.json'), COCO_INSTANCES] }], format: 'jsonl' });
    const rec = (await readJsonlShards<ImageRecord>(out, result)).find((r) => r.image === '000000397133.jpg')!;
    expect(rec.sources).toEqual(['refcoco']);
    const man = rec.boxes.find((b) => b.label === 'Man in white.')!;
    // The COCO annotation's id, then the sentence's.
    expect(man.sourceId).toBe('200887:0');
    expect(man.mask?.format).toBe('polygon');
    expect(rec.boxes.every((b) => b.mask !== null)).toBe(true);
    // In the facts: grounding questions with the raw sentence and the box, never a count.
    const convs = factConversations(rec, { seed: 1, maxTurns: 20 });
    expect(convs.find((c) => c.promptType === 'facts-count')).toBeUndefined();
    const refer = convs.find((c) => c.promptType === 'facts-refer')!;
    const turn = refer.turns.find((t) => t.question.includes('"Man in white"'))!;
    expect(turn.answer).toBe(`It is ${positionPhrase(boxCentre(man))}, at [${[man.x1, man.y1, man.x2, man.y2].map((v) => v.toFixed(2)).join(', ')}] (x1, y1, x2, y2, 0 to 1 from the top left).`);
  });

  it('RefCOCO joined with COCO instances by ann_id: a ref with its own, different bbox still lands on its annotation\'s object', async () => {
    const refs = JSON.parse(await readFile(fx('refcoco_refs_unc_from_format_docs.json'), 'utf8')) as { ann_id: number; bbox?: number[] }[];
    // A re-release's own bbox, shifted: geometry alone would not say it is COCO's person 200887.
    refs.find((r) => r.ann_id === 200887)!.bbox = [300, 40, 150, 300];
    const file = path.join(await tmpDir(), 'refs_with_bbox_from_format_docs.json');
    await writeFile(file, JSON.stringify(refs));
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }, { kind: 'refcoco', paths: [file, fx('refcoco_instances_from_format_docs.json')] }], format: 'jsonl' });
    const rec = (await readJsonlShards<ImageRecord>(out, result)).find((r) => r.image === '000000397133.jpg')!;
    const person = rec.boxes.find((b) => b.source === 'coco-instances' && b.sourceId === '200887')!;
    const man = rec.boxes.find((b) => b.label === 'Man in white.')!;
    expect([man.x1, man.y1, man.x2, man.y2]).toEqual([person.x1, person.y1, person.x2, person.y2]);
    const node = rec.treeNodes.find((n) => n.labels.includes('Man in white.'))!;
    expect(node.labels).toContain('person');
  });

  it('the same file given twice for one source is refused, never read twice', async () => {
    const file = fx('refcoco_instances_from_format_docs.json');
    await expect(runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }, { kind: 'coco-instances', paths: [file] }] })).rejects.toMatchObject({
      code: 'E_OPTION',
      message: expect.stringContaining('this file is given twice for coco-instances'),
    });
  });

  it('LVIS names keep their qualifier in the boxes, but not in any sentence; articles as the word wants', () => {
    expect(containsSentence(['pita (bread)', 'apple', 'apple', 'umbrella', 'unicorn', 'hour'])).toBe('This image contains a pita, apples, an umbrella, a unicorn and an hour.');
    const box = (label: string, x: number) => ({ label, x1: x, y1: 0.1, x2: x + 0.1, y2: 0.3, attributes: [], relations: [], source: 'lvis', iscrowd: false, sourceId: null, mask: null });
    const rec = {
      image: 'a.jpg', width: 100, height: 100, ref: 'coco:1', sources: ['lvis'], captions: [], facts: [], qa: [], regions: [], tree: null, treeNodes: [],
      boxes: [box('beef (food)', 0.1), box('glass (drink container)', 0.5), box('glass (drink container)', 0.7), box('orange (fruit)', 0.3)],
      absent: ['pita (bread)'],
    } satisfies ImageRecord;
    const text = factConversations(rec, { seed: 1, maxTurns: 20 }).flatMap((c) => c.turns.flatMap((t) => [t.question, t.answer]));
    expect(text.join('\n')).not.toMatch(/\(/);
    expect(text).toContain('There are 2 glasses.');
    expect(text).toContain('No, there is no pita in the image.');
    expect(text.some((t) => /\ban orange\b/.test(t))).toBe(true);
    expect(rec.boxes[0]!.label).toBe('beef (food)');
    // The tree is text too: no qualifier there either.
    const tree = buildTree({ boxes: rec.boxes, width: 100, height: 100 }).text;
    expect(tree).toContain('beef [');
    expect(tree).not.toMatch(/\((food|drink container|fruit)\)/);
  });
});
