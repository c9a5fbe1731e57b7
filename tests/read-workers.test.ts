import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ElementBatcher, forEachBatchValue, type ElementBatch } from '../src/read/element-batches.js';
import { InstructifyError } from '../src/errors.js';
import { FragmentCodec, readOrder } from '../src/join/fragment-codec.js';
import { FragmentJoin, groupPartition } from '../src/join/join.js';
import { createJsonSplitter, type JsonValue } from '../src/read/json-splitter.js';
import { ReadPool } from '../src/read/read-pool.js';
import { SOURCE_KINDS } from '../src/sources/index.js';
import { createIngestState, type HandlerContext } from '../src/sources/types.js';
import { writeSyntheticCoco } from '../src/sources/synthetic.js';
import type { Fragment } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, VG_DIR, runPrepare, tmpDir } from './helpers.js';

const RAW = new Set(['segmentation']);

/** The real COCO instances file split the ordinary way, every element parsed in place. */
function splitWhole(buf: Buffer): JsonValue[] {
  const out: JsonValue[] = [];
  const s = createJsonSplitter({ file: COCO_INSTANCES, rawKeys: RAW }, (v) => out.push(v));
  s.push(buf);
  s.end();
  return out;
}

/** The keys whose elements prepare lets read workers take from a COCO instances file: as its handler declares them. */
const COCO_PARALLEL = SOURCE_KINDS.get('coco-instances')!.handler(
  { path: COCO_INSTANCES, role: 'coco-instances' },
  { source: 'coco-instances', family: 'coco', state: createIngestState(), cocoNaming: '2017', images: null, sink: { emit: () => {}, reject: () => {} } },
).parallelKeys!;

/** The same file with the elements of those keys, after each array's first, cut out into batches of about `batchBytes`. */
function splitDeferred(buf: Buffer, batchBytes: number, chunk: number): { values: JsonValue[]; batches: ElementBatch[] } {
  const values: JsonValue[] = [];
  const batches: ElementBatch[] = [];
  const batcher = new ElementBatcher(0, batchBytes);
  const s = createJsonSplitter(
    {
      file: COCO_INSTANCES,
      rawKeys: RAW,
      defer: (key, index) => COCO_PARALLEL.has(key) && index > 0,
      onDeferred: (key, index, offset, source, start, end, raw) => {
        const b = batcher.add(key, index, offset, source, start, end, raw);
        if (b) batches.push(b);
      },
    },
    (v) => values.push(v),
  );
  for (let i = 0; i < buf.length; i += chunk) s.push(buf.subarray(i, i + chunk));
  s.end();
  const last = batcher.flush();
  if (last) batches.push(last);
  return { values, batches };
}

describe('element batches', () => {
  const buf = readFileSync(COCO_INSTANCES);

  it('give back exactly the values the splitter gives, raw polygons included, at any chunk size', () => {
    const whole = splitWhole(buf);
    for (const chunk of [97, 4096, buf.length]) {
      const { values, batches } = splitDeferred(buf, 3000, chunk);
      expect(batches.length).toBeGreaterThan(20);
      // A batch holds consecutive elements of one array, about the size asked for.
      for (const b of batches) {
        expect(['images', 'annotations']).toContain(b.key);
        expect(b.starts[0]).toBe(0);
        expect(b.length).toBeLessThan(3000 + 10_000);
      }
      // Each array's elements after its first, in order, with none left out.
      for (let i = 1; i < batches.length; i++) {
        const [a, b] = [batches[i - 1]!, batches[i]!];
        expect(b.firstIndex).toBe(b.key === a.key ? a.firstIndex + a.count : 1);
      }
      for (const b of batches) forEachBatchValue(b, COCO_INSTANCES, (v) => values.push(v));
      values.sort((a, b) => a.offset - b.offset);
      expect(values).toEqual(whole);
      expect(values.filter((v) => v.raw?.segmentation).length).toBeGreaterThan(600);
    }
  });

  it('name the file, the element and the byte of malformed JSON inside a batch, as the splitter does', () => {
    const text = buf.toString('utf8');
    const at = text.indexOf('"iscrowd": 0', text.indexOf('"annotations"') + 20_000);
    const broken = Buffer.from(text.slice(0, at) + '"iscrowd": 0 0' + text.slice(at + '"iscrowd": 0'.length));
    let direct: InstructifyError | null = null;
    try {
      splitWhole(broken);
    } catch (err) {
      direct = err as InstructifyError;
    }
    expect(direct?.code).toBe('E_JSON_SYNTAX');
    const { batches } = splitDeferred(broken, 3000, 4096);
    let fromBatch: InstructifyError | null = null;
    try {
      for (const b of batches) forEachBatchValue(b, COCO_INSTANCES, () => {});
    } catch (err) {
      fromBatch = err as InstructifyError;
    }
    expect(fromBatch).toBeInstanceOf(InstructifyError);
    expect(fromBatch!.code).toBe('E_JSON_SYNTAX');
    expect(fromBatch!.file).toBe(COCO_INSTANCES);
    expect(fromBatch!.offset).toBe(Buffer.byteLength(text.slice(0, at)) + '"iscrowd": 0 '.length);
    expect(fromBatch!.offset).toBe(direct!.offset);
    expect(fromBatch!.message).toMatch(/in "annotations" element \d+/);
  });
});

describe('read pool (real worker threads)', () => {
  const buf = readFileSync(COCO_INSTANCES);
  const kind = SOURCE_KINDS.get('coco-instances')!;
  const planned = { path: COCO_INSTANCES, role: 'coco-instances' };
  const tables = { sources: [{ name: 'coco-instances', family: 'coco' }], files: [COCO_INSTANCES] };

  /** The fragments the main thread's own handler makes of the elements workers may take. */
  function mainThreadFragments(): Fragment[] {
    const frags: Fragment[] = [];
    const ctx: HandlerContext = { source: 'coco-instances', family: 'coco', state: createIngestState(), cocoNaming: '2017', images: null, sink: { emit: (f) => frags.push(f), reject: () => {} } };
    const handler = kind.handler(planned, ctx);
    for (const v of splitWhole(buf)) if (COCO_PARALLEL.has(v.key) && v.index > 0) handler.onValue(v);
    return frags;
  }

  async function startPool(workers: number) {
    const dirs = await Promise.all(Array.from({ length: workers }, () => tmpDir('instructify-join-')));
    const pool = new ReadPool({ codec: tables, memoryBudget: 50_000, partitions: 16, shard: null }, dirs);
    pool.startFile({ file: 0, kind: 'coco-instances', planned, source: 'coco-instances', family: 'coco', state: createIngestState(), cocoNaming: '2017', images: null });
    return pool;
  }

  it('two workers turn batches into the same fragments as the main thread, in joins they hand over', async () => {
    const pool = await startPool(2);
    try {
      const { batches } = splitDeferred(buf, 4000, 1 << 16);
      // Images come first in the file and are the workers' to take too.
      expect(batches[0]!.key).toBe('images');
      expect(batches.some((b) => b.key === 'annotations')).toBe(true);
      const elements = batches.reduce((n, b) => n + b.count, 0);
      const done = await Promise.all(batches.map((b) => pool.submit(b)));
      expect(done.reduce((n, d) => n + d.fragments, 0)).toBe(elements);
      const { spilled, stats } = await pool.close();
      expect(spilled).toHaveLength(2);
      // Both workers had work, and each spilled to stay under its small budget.
      for (const s of stats) expect(s.fragments).toBeGreaterThan(0);
      expect(stats.reduce((n, s) => n + s.fragments, 0)).toBe(elements);

      // The handed-over partitions, grouped as the emit phase groups them: the main thread's fragments, in file order.
      const empty = new FragmentJoin({ memoryBudget: 1 << 20, partitions: 16, codec: new FragmentCodec(tables) });
      const got: Fragment[] = [];
      for await (const part of empty.partitionsInOrder(spilled)) for (const g of groupPartition(part, new FragmentCodec(tables))) got.push(...g.fragments);
      const want = mainThreadFragments();
      const key = (f: Fragment) => `${f.ref}|${String(f.prov.offset).padStart(12, '0')}`;
      expect(got.map(key).sort()).toEqual(want.map(key).sort());
      const byOffset = new Map(want.map((f) => [f.prov.offset, f]));
      for (const f of got) expect(f).toEqual(byOffset.get(f.prov.offset));
    } finally {
      await pool.terminate();
    }
  });

  it('a worker that meets malformed JSON fails the pool with the file and byte', async () => {
    const text = buf.toString('utf8');
    const at = text.indexOf('"iscrowd": 0', text.indexOf('"annotations"') + 30_000);
    const broken = Buffer.from(text.slice(0, at) + '"iscrowd": 0 0' + text.slice(at + '"iscrowd": 0'.length));
    const pool = await startPool(1);
    try {
      const { batches } = splitDeferred(broken, 4000, 1 << 16);
      const results = await Promise.allSettled(batches.map((b) => pool.submit(b)));
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(failed.reason).toBeInstanceOf(InstructifyError);
      expect(failed.reason).toMatchObject({ code: 'E_JSON_SYNTAX', file: COCO_INSTANCES });
      expect((failed.reason as InstructifyError).offset).toBe(Buffer.byteLength(text.slice(0, at)) + '"iscrowd": 0 '.length);
      await expect(pool.idle()).rejects.toMatchObject({ code: 'E_JSON_SYNTAX' });
      expect(pool.hasRoom()).toBe(false);
    } finally {
      await pool.terminate();
    }
  });

  it('the read order puts files first and then positions', () => {
    expect(readOrder(0, 5)).toBeLessThan(readOrder(1, 0));
    expect(readOrder(3, 2 ** 39)).toBeLessThan(readOrder(4, 0));
    expect(Number.isSafeInteger(readOrder(8191, 2 ** 40 - 1))).toBe(true);
  });
});

describe('prepare with read workers', () => {
  async function shardLines(out: string): Promise<string[]> {
    const lines: string[] = [];
    for (const n of (await readdir(out)).filter((x) => x.startsWith('part-')).sort()) lines.push(...(await readFile(path.join(out, n), 'utf8')).split('\n').filter(Boolean));
    return lines.sort();
  }

  it('seeded generated COCO plus real captions and Visual Genome: identical records with 0, 1 and 2 workers, spilling or not', async () => {
    const dir = await tmpDir();
    const instances = path.join(dir, 'instances.json');
    const captions = path.join(dir, 'captions.json');
    // ~3 MB: hundreds of small batches, so workers and the main thread both parse many.
    await writeSyntheticCoco({ instancesFile: instances, captionsFile: captions, count: 1500, seed: 5 });
    const sources = [
      { kind: 'coco-captions', paths: [captions] },
      { kind: 'coco-instances', paths: [instances] },
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'vg', paths: [VG_DIR] },
    ];
    const spillParent = await tmpDir('instructify-spill-');
    const single = await runPrepare({ sources, format: 'jsonl', workers: 0 });
    expect(single.result.read.batches).toBe(0);
    const expected = await shardLines(single.out);
    expect(expected.length).toBe(single.result.counts.images);
    expect(expected.length).toBeGreaterThan(1500);
    for (const [workers, memoryBudget] of [
      [1, 32 << 20],
      [2, 32 << 20],
      [2, 200_000],
    ] as const) {
      const run = await runPrepare({ sources, format: 'jsonl', workers, memoryBudget, readBatchBytes: 8192, tmpDir: spillParent });
      expect(run.result.read.workers).toBe(workers);
      // How many batches the workers take depends on timing (the main thread parses when they are busy); some they must.
      expect(run.result.read.batches).toBeGreaterThan(0);
      expect(run.result.read.fragments).toBeGreaterThan(0);
      expect(run.result.join.fragments).toBe(single.result.join.fragments);
      expect(run.result.perSource).toEqual(single.result.perSource);
      expect(run.result.counts).toEqual(single.result.counts);
      if (memoryBudget < 1 << 20) expect(run.result.join.spills).toBeGreaterThan(2);
      expect(await shardLines(run.out)).toEqual(expected);
      // Every spill folder, the workers' included, is gone.
      expect(await readdir(spillParent)).toEqual([]);
    }
  }, 120_000);

  it('malformed JSON deep in the annotations: the same error with or without workers, and nothing left looking complete', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'instances.json');
    await writeSyntheticCoco({ instancesFile: file, count: 1500, seed: 6 });
    const text = await readFile(file, 'utf8');
    const at = text.indexOf('"iscrowd":0', Math.floor(text.length * 0.7));
    await writeFile(file, text.slice(0, at) + '"iscrowd":0 0' + text.slice(at + '"iscrowd":0'.length));
    const spillParent = await tmpDir('instructify-spill-');
    const errors = [];
    for (const workers of [0, 2]) {
      const out = await tmpDir();
      const err = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }], out, workers, readBatchBytes: 4096, tmpDir: spillParent, memoryBudget: 100_000 }).then(
        () => null,
        (e: unknown) => e as InstructifyError,
      );
      expect(err).toBeInstanceOf(InstructifyError);
      errors.push({ code: err!.code, file: err!.file, offset: err!.offset });
      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { status: string };
      expect(manifest.status).toBe('failed');
      expect((await readdir(out)).filter((n) => n.startsWith('part-'))).toEqual([]);
      expect(await readdir(spillParent)).toEqual([]);
    }
    expect(errors[0]).toMatchObject({ code: 'E_JSON_SYNTAX', file });
    expect(errors[0]!.offset).toBe(Buffer.byteLength(text.slice(0, at)) + '"iscrowd":0 '.length);
    expect(errors[1]).toEqual(errors[0]);
  }, 60_000);

  it('images are parsed by the workers too: the same records, and a malformed image gives the same error', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'instances.json');
    await writeSyntheticCoco({ instancesFile: file, count: 1500, seed: 7 });
    const text = await readFile(file, 'utf8');
    const single = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }], format: 'jsonl', workers: 0 });
    const run = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }], format: 'jsonl', workers: 1, readBatchBytes: 4096 });
    expect(run.result.read.batches).toBeGreaterThan(0);
    expect(await shardLines(run.out)).toEqual(await shardLines(single.out));

    const at = text.indexOf('"height":', Math.floor(text.indexOf('"annotations"') * 0.8));
    const broken = path.join(dir, 'broken.json');
    await writeFile(broken, text.slice(0, at) + '"height"::' + text.slice(at + '"height":'.length));
    const errors = [];
    for (const workers of [0, 1]) {
      const err = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [broken] }], workers, readBatchBytes: 4096 }).then(
        () => null,
        (e: unknown) => e as InstructifyError,
      );
      expect(err).toBeInstanceOf(InstructifyError);
      errors.push({ code: err!.code, file: err!.file, offset: err!.offset, message: err!.message });
    }
    expect(errors[0]).toMatchObject({ code: 'E_JSON_SYNTAX', file: broken, offset: Buffer.byteLength(text.slice(0, at)) + '"height":'.length });
    expect(errors[0]!.message).toMatch(/in "images" element \d+/);
    expect(errors[1]).toEqual(errors[0]);
  }, 60_000);
});
