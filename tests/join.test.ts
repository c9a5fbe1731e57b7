import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageRecord } from '../src/types.js';
import { buildRecord, resolveGroup } from '../src/records/assemble.js';
import { processPartition } from '../src/prepare/emit.js';
import { FragmentJoin, groupPartition } from '../src/join/join.js';
import { createIngestState, emptyFragment, rawBox, type HandlerContext } from '../src/sources/types.js';
import { DEFAULT_TREE_STAGE } from '../src/tree/stage.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, VG_DIR, VQA_ANNOTATIONS, VQA_QUESTIONS, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

/**
 * The real slices share no images, so these tests alias them onto each other
 * the way the full datasets do: a VG image_data with `coco_id` set, VQA
 * entries for a COCO val2017 image, a GQA scene graph for that VG image.
 */
async function aliasedFixtures(): Promise<{ dir: string; vgDir: string; vqaQ: string; vqaA: string; gqa: string }> {
  const dir = await tmpDir('instructify-alias-');
  const vgDir = path.join(dir, 'vg');
  await mkdir(vgDir);
  for (const f of await readdir(VG_DIR)) await copyFile(path.join(VG_DIR, f), path.join(vgDir, f));
  const imageData = JSON.parse(readFileSync(path.join(VG_DIR, 'image_data.json'), 'utf8')) as { image_id: number; coco_id: number | null }[];
  imageData[0]!.coco_id = 397133; // VG image 1 is, for this test, COCO 397133
  await writeFile(path.join(vgDir, 'image_data.json'), JSON.stringify(imageData));
  const q = JSON.parse(readFileSync(VQA_QUESTIONS, 'utf8')) as { questions: { image_id: number }[] };
  const a = JSON.parse(readFileSync(VQA_ANNOTATIONS, 'utf8')) as { annotations: { image_id: number }[] };
  for (const x of q.questions) if (x.image_id === 6818) x.image_id = 397133;
  for (const x of a.annotations) if (x.image_id === 6818) x.image_id = 397133;
  const vqaQ = path.join(dir, 'questions.json');
  const vqaA = path.join(dir, 'annotations.json');
  await writeFile(vqaQ, JSON.stringify(q));
  await writeFile(vqaA, JSON.stringify(a));
  const gqa = path.join(dir, 'scene_graphs.json');
  await writeFile(gqa, JSON.stringify({ '1': { width: 800, height: 600, objects: { '9001': { name: 'oven', x: 10, y: 20, w: 200, h: 100, attributes: ['hot'], relations: [] } } } }));
  return { dir, vgDir, vqaQ, vqaA, gqa };
}

function sources(f: Awaited<ReturnType<typeof aliasedFixtures>>) {
  return [
    { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
    { kind: 'coco-instances', paths: [COCO_INSTANCES] },
    { kind: 'vg', paths: [f.vgDir] },
    { kind: 'vqav2', paths: [f.vqaQ, f.vqaA] },
    { kind: 'gqa', paths: [f.gqa] },
  ];
}

async function shardText(out: string): Promise<string> {
  const names = (await readdir(out)).filter((n) => n.startsWith('part-')).sort();
  let text = '';
  for (const n of names) text += await readFile(path.join(out, n), 'utf8');
  return text;
}

describe('per-image join across sources', () => {
  it('joins COCO, VG (by coco_id), VQA v2 (by image_id) and GQA (by VG id) into one record', async () => {
    const f = await aliasedFixtures();
    const { result, out } = await runPrepare({ sources: sources(f), format: 'jsonl', images: COCO_IMAGES, keepMissing: true });
    const rows = await readJsonlShards<ImageRecord>(out, result);
    const r = rows.find((x) => x.image === '000000397133.jpg')!;
    expect(r.ref).toBe('coco:397133');
    expect(r.sources).toEqual(['coco-captions', 'coco-instances', 'vg', 'vqav2', 'gqa']);
    expect(rows.filter((x) => x.ref === 'coco:397133')).toHaveLength(1);
    expect(rows.find((x) => x.ref === 'vg:1')).toBeUndefined();
    // The COCO file's own size wins for the record; VG boxes are normalised by VG's size for its copy.
    expect([r.width, r.height]).toEqual([640, 427]);
    const clock = r.boxes.find((b) => b.source === 'vg' && b.sourceId === '1058498')!;
    expect(clock.x1).toBeCloseTo(421 / 800, 6);
    const oven = r.boxes.find((b) => b.source === 'gqa')!;
    expect(oven).toMatchObject({ label: 'oven', attributes: ['hot'] });
    expect(oven.x2).toBeCloseTo(210 / 800, 6);
    expect(r.boxes.filter((b) => b.source === 'coco-instances')).toHaveLength(19);
    expect(r.qa.some((q) => q.source === 'vqav2' && q.question === 'What color is the wall?')).toBe(true);
    expect(r.qa.some((q) => q.source === 'vg' && q.question === 'What color is the clock?')).toBe(true);
    expect(r.captions).toHaveLength(5);
  });

  it('writes byte-identical shards when a tiny memory budget forces the join to spill', async () => {
    const f = await aliasedFixtures();
    const spillParent = await tmpDir('instructify-spill-');
    const inMemory = await runPrepare({ sources: sources(f), format: 'jsonl', rowsPerShard: 17 });
    const spilled = await runPrepare({ sources: sources(f), format: 'jsonl', rowsPerShard: 17, memoryBudget: 20_000, tmpDir: spillParent });
    expect(inMemory.result.join.spills).toBe(0);
    expect(spilled.result.join.spills).toBeGreaterThan(5);
    expect(spilled.result.shards.map((s) => s.rows)).toEqual(inMemory.result.shards.map((s) => s.rows));
    expect(await shardText(spilled.out)).toBe(await shardText(inMemory.out));
    // The spill folder is gone afterwards.
    expect(await readdir(spillParent)).toEqual([]);
  });

  it('gives identical records whatever the read chunk size', async () => {
    const f = await aliasedFixtures();
    const base = await runPrepare({ sources: sources(f), format: 'jsonl' });
    const text = await shardText(base.out);
    expect(base.result.counts.images).toBeGreaterThan(90);
    for (const readChunkBytes of [13, 4093]) {
      const run = await runPrepare({ sources: sources(f), format: 'jsonl', readChunkBytes });
      expect(await shardText(run.out)).toBe(text);
    }
  });

  it('removes the spill folder when the run fails', async () => {
    const dir = await tmpDir();
    const spillParent = await tmpDir('instructify-spill-');
    const bad = path.join(dir, 'captions.json');
    const good = readFileSync(COCO_CAPTIONS, 'utf8');
    await writeFile(bad, good.slice(0, Math.floor(good.length * 0.8)));
    await expect(
      runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }, { kind: 'coco-captions', paths: [bad] }], memoryBudget: 10_000, tmpDir: spillParent }),
    ).rejects.toMatchObject({ code: 'E_JSON_TRUNCATED' });
    expect(await readdir(spillParent)).toEqual([]);
  });
});

describe('boxes named by id', () => {
  it('merge into one box across fragments, and the fragments keep their own boxes as they were', () => {
    const vg = { source: 'vg', family: 'vg' } as HandlerContext;
    const catalog = emptyFragment('vg:1', vg, 'image_data.json', 0);
    catalog.catalog = true;
    catalog.path = '1.jpg';
    catalog.width = 800;
    catalog.height = 600;
    const objects = emptyFragment('vg:1', vg, 'objects.json', 10);
    const a = rawBox('man', 80, 60, 400, 300);
    a.sourceId = '7';
    const b = rawBox('dog', 0, 0, 80, 60);
    b.sourceId = '8';
    objects.boxes.push(a, b);
    const attributes = emptyFragment('vg:1', vg, 'attributes.json', 20);
    const a2 = rawBox(null, 80, 60, 400, 300);
    a2.sourceId = '7';
    a2.attributes.push('tall');
    attributes.boxes.push(a2);
    const relations = emptyFragment('vg:1', vg, 'relationships.json', 30);
    const a3 = rawBox('man', 80, 60, 400, 300);
    a3.sourceId = '7';
    a3.relations.push('walking dog');
    a3.attributes.push('tall', 'smiling');
    relations.boxes.push(a3);
    const group = resolveGroup({ ref: 'vg:1', fragments: [catalog, objects, attributes, relations] }, { imageDirs: {}, cocoNaming: '2017', edgeTolerance: 0.01 }).value!;
    const r = buildRecord(group, null, { state: createIngestState(), opts: { imageDirs: {}, cocoNaming: '2017', edgeTolerance: 0.01 }, sourceOrder: ['vg'] }).value!;
    expect(r.boxes.map((x) => [x.label, x.attributes, x.relations, x.x1, x.y2])).toEqual([
      ['man', ['tall', 'smiling'], ['walking dog'], 0.1, 0.6],
      ['dog', [], [], 0, 0.1],
    ]);
    // What was merged went into a copy: the fragments' boxes are unchanged.
    expect(a.attributes).toEqual([]);
    expect(a.relations).toEqual([]);
    expect(a2.attributes).toEqual(['tall']);
    expect(a3.attributes).toEqual(['tall', 'smiling']);
  });
});

describe('spilling', () => {
  it('writes a spill to the end of a segment file, not a file per partition, starts a new segment past its size, and reads back every fragment in read order', async () => {
    const ctx = { source: 'coco-instances', family: 'coco' } as HandlerContext;
    const parent = await tmpDir('instructify-spill-');
    // Files this process holds open (Linux): a join must not keep any between spills, since a
    // worker thread's join can be stopped without a chance to close them.
    const openFiles = () => (existsSync('/proc/self/fd') ? readdirSync('/proc/self/fd').length : 0);
    const openAtStart = openFiles();
    const join = new FragmentJoin({ memoryBudget: 8_000, partitions: 32, tmpDir: parent, segmentBytes: 20_000 });
    const added = new Map<string, string[]>();
    for (let i = 0; i < 2000; i++) {
      const ref = `coco:${i % 97}`;
      const f = emptyFragment(ref, ctx, 'instances.json', i);
      f.boxes.push(rawBox(`thing ${i}`, i % 50, 2, 30, 40));
      await join.add(f, i);
      added.set(ref, [...(added.get(ref) ?? []), `thing ${i}`]);
    }
    await join.settled();
    expect(join.stats.spills).toBeGreaterThan(5);
    expect(openFiles()).toBe(openAtStart);
    const [spillDir] = await readdir(parent);
    const files = (await readdir(path.join(parent, spillDir!))).sort();
    // Segments of 20 KB and a spill's worth more at most: a few files for all the spills, where a
    // file per partition made 32.
    expect(join.stats.spilledBytes).toBeGreaterThan(100_000);
    expect(files[0]).toBe('segment-0000.fragments');
    expect(files.length).toBeGreaterThanOrEqual(Math.floor(join.stats.spilledBytes / 30_000));
    expect(files.length).toBeLessThanOrEqual(Math.ceil(join.stats.spilledBytes / 20_000));
    expect(files.length).toBeLessThan(join.stats.spills);
    const got = new Map<string, string[]>();
    let partitions = 0;
    for await (const p of join.partitionsInOrder()) {
      partitions++;
      for (const g of groupPartition(p, join.codec)) got.set(g.ref, g.fragments.map((f) => f.boxes[0]!.label!));
    }
    expect(partitions).toBeGreaterThan(20);
    expect(got).toEqual(added);
    expect(openFiles()).toBe(openAtStart);
    await join.cleanup();
    expect(await readdir(parent)).toEqual([]);
  });

  it('refuses a segment size that is not a positive whole number of bytes', () => {
    expect(() => new FragmentJoin({ memoryBudget: 1000, segmentBytes: 0 })).toThrowError(expect.objectContaining({ code: 'E_OPTION' }));
  });
});

describe('worker lanes', () => {
  it('two lanes write the same rows as one thread, and spilling under lanes changes nothing', async () => {
    const f = await aliasedFixtures();
    const lines = async (out: string) => (await shardText(out)).trim().split('\n').sort();
    const single = await runPrepare({ sources: sources(f), format: 'jsonl', workers: 0 });
    const laned = await runPrepare({ sources: sources(f), format: 'jsonl', workers: 2, rowsPerShard: 20 });
    const lanedSpilled = await runPrepare({ sources: sources(f), format: 'jsonl', workers: 2, rowsPerShard: 20, memoryBudget: 20_000 });
    expect(laned.result.shards.map((s) => s.file)).toContain('part-1-00000.jsonl');
    expect(laned.result.shards.every((s) => s.rows <= 20)).toBe(true);
    expect(await lines(laned.out)).toEqual(await lines(single.out));
    expect(lanedSpilled.result.join.spills).toBeGreaterThan(0);
    expect(await shardText(lanedSpilled.out)).toBe(await shardText(laned.out));
    expect(laned.result.counts).toEqual(single.result.counts);
  });
});

describe('partitions follow the input size', () => {
  it('about one per MiB of input, a power of two from 256 to 4096', async () => {
    const { partitionsFor } = await import('../src/prepare/prepare.js');
    expect(partitionsFor(0)).toBe(256);
    expect(partitionsFor(200e6)).toBe(256);
    expect(partitionsFor(300e6)).toBe(512);
    expect(partitionsFor(2e9)).toBe(2048);
    expect(partitionsFor(50e9)).toBe(4096);
  });
});

describe('a partition is built and written a window of images at a time', () => {
  it('hands records to the writer in windows of --image-concurrency, in ref order, the same rows as grouping all at once', async () => {
    const ctx = { source: 'coco-instances', family: 'coco' } as HandlerContext;
    // One partition, 40 images: a catalog fragment and a box fragment each, boxes added first.
    const join = new FragmentJoin({ memoryBudget: 1 << 20, partitions: 1 });
    for (let i = 0; i < 40; i++) {
      const b = emptyFragment(`coco:${100 + i}`, ctx, 'instances.json', 1000 + i);
      b.requiresCatalogFrom = 'coco-instances';
      const box = rawBox(`thing ${i}`, 10, 20, 30 + i, 40);
      b.boxes.push(box);
      join.add(b, 1000 + i);
    }
    for (let i = 39; i >= 0; i--) {
      const c = emptyFragment(`coco:${100 + i}`, ctx, 'instances.json', i);
      c.catalog = true;
      c.path = `${String(100 + i).padStart(12, '0')}.jpg`;
      c.width = 640;
      c.height = 480;
      join.add(c, i);
    }
    const parts = [];
    for await (const p of join.partitionsInOrder()) parts.push(p);
    expect(parts.length).toBe(1);
    const windows: ImageRecord[][] = [];
    const summary = await processPartition(
      parts[0]!,
      {
        assemble: { imageDirs: {}, cocoNaming: '2017', edgeTolerance: 0.01 },
        sourceOrder: ['coco-instances'],
        categories: [],
        images: null,
        realRoot: '',
        checkImages: false,
        keepMissing: false,
        imageConcurrency: 16,
        tree: { ...DEFAULT_TREE_STAGE, mode: 'none' },
        codec: join.codec.tables(),
      },
      async (records) => {
        windows.push(records);
      },
    );
    expect(windows.map((w) => w.length)).toEqual([16, 16, 8]);
    expect(summary.rows).toBe(40);
    const refs = windows.flat().map((r) => r.ref);
    expect(refs).toEqual([...refs].sort());
    expect(windows[0]![0]!.boxes[0]!.label).toBe('thing 0');
    expect(windows[2]![7]!.boxes[0]!.x2).toBeCloseTo((10 + 30 + 39) / 640, 12);
    // Decoding image by image finds the same fragments, in the same order, as decoding the partition at once.
    const whole = groupPartition(parts[0]!, join.codec);
    expect(whole.map((g) => g.ref)).toEqual(refs);
    expect(whole.every((g) => g.fragments.length === 2 && g.fragments[0]!.catalog)).toBe(true);
    await join.cleanup();
  });
});
