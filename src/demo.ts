import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { formatSummary } from './cli-format.js';
import { prepare } from './prepare.js';
import { sceneSvg, writeSyntheticCoco } from './synthetic.js';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tableFromIPC } from 'apache-arrow';
import type { ImageRecord } from './types.js';

const require = createRequire(import.meta.url);

/** The first row of a prepared Parquet shard, as a plain object. */
export function readFirstRecord(file: string): ImageRecord {
  const pq = require('parquet-wasm/node') as typeof import('parquet-wasm/node');
  const table = tableFromIPC(pq.readParquet(readFileSync(file)).intoIPCStream());
  return JSON.parse(JSON.stringify(table.get(0)!.toJSON())) as ImageRecord;
}

export interface DemoOptions {
  out: string;
  images: number;
  seed: number;
  log: (line: string) => void;
}

/**
 * The out-of-the-box run: make a small COCO-style dataset (drawn images,
 * captions, instances with polygon masks), then prepare it. No GPU, no
 * server, no network.
 */
export async function runDemo(o: DemoOptions): Promise<void> {
  const sample = path.join(o.out, 'sample');
  const imageDir = path.join(sample, 'images');
  const annDir = path.join(sample, 'annotations');
  await mkdir(imageDir, { recursive: true });
  await mkdir(annDir, { recursive: true });
  const instancesFile = path.join(annDir, 'instances_demo.json');
  const captionsFile = path.join(annDir, 'captions_demo.json');
  const scenes = await writeSyntheticCoco({ instancesFile, captionsFile, count: o.images, seed: o.seed, keep: true });
  await Promise.all(scenes.map((s) => sharp(Buffer.from(sceneSvg(s))).jpeg({ quality: 85 }).toFile(path.join(imageDir, s.fileName))));
  o.log(`made ${scenes.length} sample images and COCO-style annotations in ${sample}`);

  const prepared = path.join(o.out, 'prepared');
  const result = await prepare({
    sources: [
      { kind: 'coco-captions', paths: [captionsFile] },
      { kind: 'coco-instances', paths: [instancesFile] },
    ],
    images: imageDir,
    out: prepared,
  });
  o.log(formatSummary(result));

  // Show one record as a user would read it: read back from the first shard.
  const first = result.shards[0];
  if (first) {
    const rec = readFirstRecord(path.join(prepared, first.file));
    o.log(`\nexample record from ${first.file}: ${rec.image} (${rec.width}x${rec.height}), sources ${rec.sources.join(', ')}`);
    for (const c of rec.captions) o.log(`  caption: ${c.text}`);
    for (const b of rec.boxes) o.log(`  box: ${b.label} [${[b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(3)).join(', ')}] (x1, y1, x2, y2 in 0..1, top-left origin)${b.mask ? ` mask: ${b.mask.format}` : ''}`);
  }
  await writeFile(path.join(o.out, 'README.txt'), `instructify demo output\n\nsample/     generated images and COCO-style annotations\nprepared/   one record per image as Parquet shards, manifest.json, rejects.jsonl\n`);
}
