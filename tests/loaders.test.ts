import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { ImageRecord } from '../src/types.js';
import {
  COCO_CAPTIONS,
  COCO_IMAGES,
  COCO_INSTANCES,
  GQA_QUESTIONS,
  GQA_SCENES,
  VG_DIR,
  VQA_ANNOTATIONS,
  VQA_QUESTIONS,
  readJsonlShards,
  runPrepare,
} from './helpers.js';

async function records(sources: Parameters<typeof runPrepare>[0]['sources'], extra: Partial<Parameters<typeof runPrepare>[0]> = {}) {
  const { result, out } = await runPrepare({ sources, format: 'jsonl', ...extra });
  const rows = await readJsonlShards<ImageRecord>(out, result);
  return { result, out, rows, byImage: new Map(rows.map((r) => [r.image, r])) };
}

// Ground truth read independently from the real files with JSON.parse.
const cocoInstances = JSON.parse(readFileSync(COCO_INSTANCES, 'utf8')) as {
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: { image_id: number; bbox: number[]; category_id: number; iscrowd: number; segmentation: unknown }[];
  categories: { id: number; name: string }[];
};
const cocoCaptions = JSON.parse(readFileSync(COCO_CAPTIONS, 'utf8')) as { annotations: { image_id: number; caption: string }[] };

describe('COCO loaders on the real val2017 slice', () => {
  it('gives 000000397133.jpg its 5 captions and every instance box, labelled and normalised', async () => {
    const { byImage, rows } = await records(
      [
        { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
        { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      ],
      { images: COCO_IMAGES },
    );
    expect(rows).toHaveLength(79);
    const r = byImage.get('000000397133.jpg')!;
    expect(r.width).toBe(640);
    expect(r.height).toBe(427);
    expect(r.ref).toBe('coco:397133');
    expect(r.captions.map((c) => c.text)).toEqual([
      'A man is in a kitchen making pizzas.',
      'Man in apron standing on front of oven with pans and bakeware',
      'A baker is working in the kitchen rolling dough.',
      'A person standing by a stove in a kitchen.',
      'A table with pies being made and a person standing near a wall with pots and pans hanging on the wall.',
    ]);
    const names = new Map(cocoInstances.categories.map((c) => [c.id, c.name]));
    const truth = cocoInstances.annotations.filter((a) => a.image_id === 397133);
    expect(r.boxes).toHaveLength(truth.length);
    expect(truth.length).toBe(19);
    for (const [i, a] of truth.entries()) {
      const b = r.boxes[i]!;
      expect(b.label).toBe(names.get(a.category_id));
      expect(b.x1).toBeCloseTo(a.bbox[0]! / 640, 6);
      expect(b.y1).toBeCloseTo(a.bbox[1]! / 427, 6);
      expect(b.x2).toBeCloseTo(Math.min(1, (a.bbox[0]! + a.bbox[2]!) / 640), 6);
      expect(b.y2).toBeCloseTo(Math.min(1, (a.bbox[1]! + a.bbox[3]!) / 427), 6);
      expect(b.mask?.format).toBe('polygon');
      expect(JSON.parse(b.mask!.polygons!)).toEqual(a.segmentation);
    }
    expect(r.boxes.filter((b) => b.label === 'person')).toHaveLength(2);
  });

  it('keeps crowd RLE masks in compressed form with their size', async () => {
    const { byImage } = await records([{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], { images: COCO_IMAGES });
    const crowd = cocoInstances.annotations.filter((a) => a.iscrowd === 1);
    expect(crowd.length).toBe(5);
    for (const a of crowd) {
      const img = cocoInstances.images.find((i) => i.id === a.image_id)!;
      const r = byImage.get(img.file_name)!;
      const b = r.boxes.find((x) => x.iscrowd)!;
      expect(b.mask?.format).toBe('rle');
      expect(b.mask?.height).toBe(img.height);
      expect(b.mask?.width).toBe(img.width);
      expect(typeof b.mask?.rle).toBe('string');
    }
  });

  it('counts every caption of the captions file', async () => {
    const { result } = await records([{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }]);
    expect(result.counts.captions).toBe(cocoCaptions.annotations.length);
    expect(result.counts.images).toBe(79);
  });
});

describe('Visual Genome loader on the real v1.2 slice', () => {
  it('merges objects, attributes and relationships of one object into one box', async () => {
    const { byImage, rows } = await records([{ kind: 'vg', paths: [VG_DIR] }]);
    expect(rows).toHaveLength(5);
    const r = byImage.get('VG_100K_2/1.jpg')!;
    expect(r.width).toBe(800);
    expect(r.height).toBe(600);
    const clocks = r.boxes.filter((b) => b.sourceId === '1058498');
    expect(clocks).toHaveLength(1);
    expect(clocks[0]!.label).toBe('clock');
    expect(clocks[0]!.attributes).toEqual(['green', 'tall']);
    expect(clocks[0]!.x1).toBeCloseTo(421 / 800, 6);
    expect(clocks[0]!.y2).toBeCloseTo((91 + 339) / 600, 6);
    const man = r.boxes.find((b) => b.sourceId === '1058529')!;
    expect(man.relations).toContain('wears the sneakers');
    const shade = r.boxes.find((b) => b.sourceId === '5045')!;
    expect(shade.relations).toContain('on the street');
    // Boxes are unique per VG object id.
    const ids = r.boxes.map((b) => b.sourceId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('reads region descriptions and question answers (v1.0 `id` key spelling)', async () => {
    const { byImage } = await records([{ kind: 'vg', paths: [VG_DIR] }]);
    const r = byImage.get('VG_100K_2/1.jpg')!;
    expect(r.regions.find((x) => x.text === 'the clock is green in colour')).toMatchObject({ source: 'vg' });
    expect(r.qa.find((q) => q.question === 'What color is the clock?')?.answer).toBe('Green.');
  });
});

describe('VQA v2 loader on the real train2014 slice', () => {
  it('joins questions to their annotations with all ten answers and the most common one', async () => {
    const { rows, result } = await records([{ kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] }]);
    expect(rows).toHaveLength(13);
    expect(result.counts.qa).toBe(53);
    const r = rows.find((x) => x.ref === 'coco:6818')!;
    expect(r.image).toBe('000000006818.jpg');
    const wall = r.qa.find((q) => q.question === 'What color is the wall?')!;
    expect(wall.answer).toBe('white');
    const annotations = JSON.parse(readFileSync(VQA_ANNOTATIONS, 'utf8')) as { annotations: { question_id: number; answers: { answer: string }[] }[] };
    const truth = annotations.annotations.find((a) => a.question_id === 6818000)!;
    expect(wall.answers).toEqual([...new Set(truth.answers.map((a) => a.answer))]);
    for (const row of rows) for (const q of row.qa) expect(q.answers.length).toBeGreaterThan(0);
  });

  it('names images in the 2014 style when asked', async () => {
    const { rows } = await records([{ kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] }], { cocoNaming: '2014' });
    expect(rows.find((x) => x.ref === 'coco:6818')!.image).toBe('val2014/COCO_val2014_000000006818.jpg');
  });
});

describe('GQA loader on the real slice', () => {
  it('turns scene graph objects into boxes with attributes and relations, and questions into QA', async () => {
    const { byImage } = await records([{ kind: 'gqa', paths: [GQA_QUESTIONS, GQA_SCENES] }]);
    const scenes = JSON.parse(readFileSync(GQA_SCENES, 'utf8')) as Record<string, { width: number; height: number; objects: Record<string, { name: string; x: number; y: number; w: number; h: number }> }>;
    const r = byImage.get('2353884.jpg')!;
    expect(r.ref).toBe('vg:2353884');
    expect(r.width).toBe(500);
    expect(r.height).toBe(281);
    const objects = scenes['2353884']!.objects;
    expect(r.boxes).toHaveLength(Object.keys(objects).length);
    const nose = r.boxes.find((b) => b.sourceId === '2716708')!;
    expect(nose.label).toBe('nose');
    expect(nose.x1).toBeCloseTo(370 / 500, 6);
    expect(nose.relations).toContain(`to the right of the ${objects['2493560']!.name}`);
    const questioned = byImage.get('2320168.jpg')!;
    expect(questioned.qa.find((q) => q.question === 'On which side is the shelf, the right or the left?')).toMatchObject({
      answer: 'left',
      answers: ['left', 'The shelf is on the left of the image.'],
    });
  });
});
