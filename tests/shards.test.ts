import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { ShardWriter, type ShardFormat } from '../src/write/shards.js';
import { preparedSchema } from '../src/write/schema.js';
import { snakeJson } from '../src/write/plain.js';
import { COCO_CAPTIONS, COCO_INSTANCES, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

/** The 79 real COCO images as prepare makes them (captions, boxes, masks, trees): prepared once for every test here. */
let records: Record<string, unknown>[];
beforeAll(async () => {
  const { result, out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }], format: 'jsonl' });
  records = await readJsonlShards(out, result);
});

/** Poll until `test` holds; false after `ms`. */
async function eventually(test: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 10))) if (await test()) return true;
  return test();
}

const sizeOf = (file: string) => stat(file).then((s) => s.size, () => -1);

describe('ShardWriter: JSONL and Arrow shards are written as they fill', () => {
  for (const format of ['jsonl', 'arrow'] as const satisfies readonly ShardFormat[]) {
    it(`${format}: rows reach the .tmp file before the shard is cut, and the finished shards hold every row in order`, async () => {
      expect(records).toHaveLength(79);
      const dir = await tmpDir();
      const w = new ShardWriter({ dir, prefix: 'part-0', format, rowsPerShard: 60, rowGroupRows: 10, metadata: [...preparedSchema.metadata] });
      const tmp = path.join(dir, `part-0-00000.${format}.tmp`);
      // 30 of the first shard's 60 rows, in batches as a lane hands them over.
      for (let i = 0; i < 30; i += 10) await w.add(records.slice(i, i + 10));
      if (format === 'jsonl') {
        // Exactly the first 30 lines are on disk; nothing is held back for the cut.
        const expected = records.slice(0, 30).map((r) => snakeJson(r) + '\n').join('');
        expect(await eventually(async () => (await sizeOf(tmp)) === Buffer.byteLength(expected))).toBe(true);
        expect(await readFile(tmp, 'utf8')).toBe(expected);
      } else {
        // The magic and schema, then three row groups' batches.
        expect(await eventually(async () => (await sizeOf(tmp)) > 20_000)).toBe(true);
        expect(readFileSync(tmp).subarray(0, 6).toString()).toBe('ARROW1');
      }
      expect(await readdir(dir)).toEqual([`part-0-00000.${format}.tmp`]);
      await w.add(records.slice(30));
      const shards = await w.close();
      expect(shards.map((s) => [s.file, s.rows])).toEqual([[`part-0-00000.${format}`, 60], [`part-0-00001.${format}`, 19]]);
      expect((await readdir(dir)).sort()).toEqual(shards.map((s) => s.file));
      for (const s of shards) expect(s.bytes).toBe(await sizeOf(path.join(dir, s.file)));
      const images: string[] = [];
      for (const s of shards) {
        const file = path.join(dir, s.file);
        if (format === 'jsonl') for (const line of (await readFile(file, 'utf8')).trimEnd().split('\n')) images.push((JSON.parse(line) as { image: string }).image);
        else images.push(...(tableFromIPC(readFileSync(file)).getChild('image')!.toArray() as string[]));
      }
      expect(images).toEqual(records.map((r) => r.image));
    });

    it(`${format}: abort in the middle of a shard removes its .tmp file and keeps the finished shard`, async () => {
      const dir = await tmpDir();
      const w = new ShardWriter({ dir, prefix: 'part-0', format, rowsPerShard: 40, rowGroupRows: 10, metadata: [...preparedSchema.metadata] });
      await w.add(records.slice(0, 60));
      const both = [`part-0-00000.${format}`, `part-0-00001.${format}.tmp`];
      // The second shard's file is opened as its first rows come (the open itself is asynchronous).
      expect(await eventually(async () => JSON.stringify((await readdir(dir)).sort()) === JSON.stringify(both))).toBe(true);
      await w.abort();
      expect(await readdir(dir)).toEqual([`part-0-00000.${format}`]);
      if (format === 'arrow') expect(tableFromIPC(readFileSync(path.join(dir, 'part-0-00000.arrow'))).numRows).toBe(40);
      else expect((await readFile(path.join(dir, 'part-0-00000.jsonl'), 'utf8')).trimEnd().split('\n')).toHaveLength(40);
    });

  }
});

describe('ShardWriter: a shard that cannot be written', () => {
  for (const format of ['parquet', 'jsonl', 'arrow'] as const satisfies readonly ShardFormat[]) {
    it(`${format}: a file that cannot be written fails the writer with the system's error, without hanging`, async () => {
      const dir = path.join(await tmpDir(), 'missing-folder');
      const w = new ShardWriter({ dir, prefix: 'part-0', format, rowsPerShard: 40, rowGroupRows: 10, metadata: [...preparedSchema.metadata] });
      await expect(w.add(records).then(() => w.close())).rejects.toThrow(/ENOENT/);
      await w.abort();
    });
  }
});
