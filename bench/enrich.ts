import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { enrich } from '../src/enrich/enrich.js';
import { prepare } from '../src/prepare/prepare.js';
import { sceneSvg, writeSyntheticCoco } from '../src/sources/synthetic.js';
import { buildTree } from '../src/tree/build.js';
import type { ImageRecord } from '../src/types.js';
import { readShards } from '../src/write/shard-reader.js';

/**
 * bench/enrich: images per second of each model step of `enrich` on this
 * machine's CPU, on seeded generated scenes, against the floor measured in
 * the same run (decoding and resizing the same images with sharp); then the
 * tree's cost on the enriched records with their masks against the same
 * records with boxes only. Needs model support (npm run models:install).
 * Without --model-dir it runs the tiny stand-in models of the tests, which
 * measures enrich's own pre- and post-processing, not a real model's speed.
 *
 *   npm run build && node dist/bench/enrich.js [--images 40] [--model-dir DIR]
 */
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const here = path.dirname(fileURLToPath(import.meta.url));
const testModels = path.join(here, '..', '..', 'tests', 'fixtures', 'models');
const modelDir = arg('model-dir', '');
const images = Number(arg('images', '40'));
const dir = path.join(os.tmpdir(), 'instructify-bench-enrich');
rmSync(dir, { recursive: true, force: true });
const imageDir = path.join(dir, 'images');
mkdirSync(imageDir, { recursive: true });
const instancesFile = path.join(dir, 'instances.json');
const scenes = await writeSyntheticCoco({ instancesFile, count: images, seed: 5, keep: true });
for (const s of scenes) await sharp(Buffer.from(sceneSvg(s))).jpeg({ quality: 85 }).toFile(path.join(imageDir, s.fileName));
const prepared = path.join(dir, 'prepared');
await prepare({ sources: [{ kind: 'coco-instances', paths: [instancesFile] }], images: imageDir, out: prepared });
// The generated scenes come with polygons; take them off so every box asks SAM.
const bare = path.join(dir, 'bare');
const records: ImageRecord[] = [];
for await (const r of readShards<ImageRecord>(prepared)) records.push(r);

let t = performance.now();
for (const r of records) await sharp(path.join(imageDir, r.image)).resize(1024, 1024, { fit: 'inside' }).raw().toBuffer();
const floor = records.length / ((performance.now() - t) / 1000);

const { ShardWriter } = await import('../src/write/shards.js');
const { preparedSchema } = await import('../src/write/schema.js');
mkdirSync(bare, { recursive: true });
const w = new ShardWriter({ dir: bare, prefix: 'part-0', format: 'parquet', rowsPerShard: 10_000, metadata: [...preparedSchema.metadata] });
await w.add(records.map((r) => ({ ...r, boxes: r.boxes.map((b) => ({ ...b, mask: null })) })));
await w.close();
const { writeFile, readFile } = await import('node:fs/promises');
const m = JSON.parse(await readFile(path.join(prepared, 'manifest.json'), 'utf8'));
await writeFile(path.join(bare, 'manifest.json'), JSON.stringify({ ...m, shards: w.shards }));

const models = modelDir
  ? { modelDir }
  : { depthModel: path.join(testModels, 'depth-anything-v2-small-test'), samModel: path.join(testModels, 'slimsam-test') };
const out = path.join(dir, 'enriched');
t = performance.now();
const r = await enrich({ input: bare, out, depth: true, masks: true, ...models });
const seconds = (performance.now() - t) / 1000;
console.log(`bench/enrich: ${r.images} generated images, ${r.masksAdded} boxes, ${modelDir ? `models in ${modelDir}` : 'the tests\' stand-in models'}, CPU`);
console.log(`  floor (decode and resize with sharp): ${floor.toFixed(1)} images/s`);
for (const [model, rate] of Object.entries(r.rates)) console.log(`  ${model}: ${rate} images/s (${(rate / floor).toFixed(2)}x the floor)`);
console.log(`  whole enrich: ${(r.images / seconds).toFixed(2)} images/s`);

const enriched: ImageRecord[] = [];
for await (const e of readShards<ImageRecord>(out)) enriched.push(e);
const trees = (rs: ImageRecord[]) => {
  const t0 = performance.now();
  for (let k = 0; k < 5; k++) for (const x of rs) buildTree({ boxes: x.boxes, uncounted: x.uncounted, width: x.width, height: x.height, depth: null });
  return (5 * rs.length) / ((performance.now() - t0) / 1000);
};
const boxOnly = trees(enriched.map((x) => ({ ...x, boxes: x.boxes.map((b) => ({ ...b, mask: null })) })));
const withMasks = trees(enriched);
console.log(`  tree: ${withMasks.toFixed(0)} trees/s with SAM's RLE masks, ${boxOnly.toFixed(0)} with boxes only (${(boxOnly / withMasks).toFixed(2)}x the cost)`);
rmSync(dir, { recursive: true, force: true });
