import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { formatSummary } from './cli-format.js';
import { prepare } from './prepare.js';
import { sceneSvg, writeSyntheticCoco } from './synthetic.js';

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

  // Show one record as a user would read it.
  const { readFile } = await import('node:fs/promises');
  void readFile;
  const first = scenes[0]!;
  o.log(`\nexample: ${first.fileName} (${first.width}x${first.height})`);
  for (const c of first.captions) o.log(`  caption: ${c}`);
  for (const ob of first.objects) o.log(`  box: ${ob.label} [${ob.bbox.join(', ')}] (pixels x, y, w, h)`);
  await writeFile(path.join(o.out, 'README.txt'), `instructify demo output\n\nsample/     generated images and COCO-style annotations\nprepared/   one record per image as Parquet shards, manifest.json, rejects.jsonl\n`);
}
