import { describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { ImageRecord } from '../src/types.js';
import { COCO_INSTANCES, VQA_ANNOTATIONS, VQA_QUESTIONS, duckdb, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

describe('the tree stage in prepare', () => {
  it('writes the tree and its nodes into the Parquet shards', async () => {
    const { out, result } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], workers: 1 });
    // Lane 1 is a worker thread: it writes Parquet with the parquet-wasm module the main thread compiled.
    expect(result.shards.some((s) => s.file.startsWith('part-1-') && s.rows > 0)).toBe(true);
    const [row] = await duckdb<{ tree: string; nodes: string; roots: string; bad_parents: string }>(
      `select tree, len(tree_nodes)::varchar as nodes,
              len(list_filter(tree_nodes, n -> n.parent = -1))::varchar as roots,
              len(list_filter(tree_nodes, n -> n.parent >= len(tree_nodes)))::varchar as bad_parents
       from '${out}/part-*.parquet' where image = '000000229358.jpg'`,
    );
    expect(row!.tree).toMatch(/-> cell phone \[X: [\d.]+, Y: [\d.]+, Pixel Size: [\d.]+%\] X/);
    expect(row!.tree).toContain('Object Counts:');
    expect(Number(row!.nodes)).toBe(10);
    expect(row!.bad_parents).toBe('0');
    const [phone] = await duckdb<{ parent_label: string }>(
      `select tree_nodes[n.parent + 1].labels[1] as parent_label
       from (select tree_nodes, unnest(tree_nodes) as n from '${out}/part-*.parquet' where image = '000000229358.jpg') where n.labels[1] = 'cell phone'`,
    );
    expect(phone!.parent_label).toBe('person');
    const [all] = await duckdb<{ with_tree: string }>(`select count(*)::varchar as with_tree from '${out}/part-*.parquet' where tree is not null`);
    expect(all!.with_tree).toBe('79');
  });

  it('--no-tree gives the flat [label, x1, y1, x2, y2] list instead', async () => {
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], format: 'jsonl', tree: { mode: 'flat' } });
    const r = (await readJsonlShards<ImageRecord>(out, result)).find((x) => x.image === '000000397133.jpg')!;
    const lines = r.tree!.split('\n');
    expect(lines).toHaveLength(19);
    expect(lines.every((l) => /^\[[a-z ]+, [\d.]+, [\d.]+, [\d.]+, [\d.]+\]$/.test(l))).toBe(true);
    expect(r.treeNodes).toEqual([]);
  });

  it('records without boxes have no tree', async () => {
    const { result, out } = await runPrepare({ sources: [{ kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] }], format: 'jsonl' });
    for (const r of await readJsonlShards<ImageRecord>(out, result)) expect(r.tree).toBeNull();
  });

  it('reads depth maps from --depth-dir and prints relative depths', async () => {
    const depthDir = await tmpDir();
    await mkdir(depthDir, { recursive: true });
    // Image 000000229358.jpg is 640x423: a map that is near on the left, far on the right, at another size.
    const w = 320;
    const h = 212;
    const px = Buffer.alloc(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = x < w * 0.6 ? 240 : 20;
    await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path.join(depthDir, '000000229358.png'));
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], format: 'jsonl', tree: { depthDir } });
    const rows = await readJsonlShards<ImageRecord>(out, result);
    const r = rows.find((x) => x.image === '000000229358.jpg')!;
    expect(r.tree).toContain('Relative Depths:');
    // The big person on the right is on the far plane; the bottle on the left shelf on the near one.
    const person = r.treeNodes.find((n) => n.labels[0] === 'person' && n.x1 > 0.7)!;
    expect(person.depths).toEqual([1]);
    const bottle = r.treeNodes.find((n) => n.labels[0] === 'bottle')!;
    expect(bottle.depths).toEqual([0]);
    // Other images have no map: no depths.
    expect(rows.find((x) => x.image === '000000397133.jpg')!.tree).not.toContain('Relative Depths');
  });
});
