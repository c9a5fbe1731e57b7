import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { formatSummary } from './format.js';
import { prepare } from '../prepare/prepare.js';
import { report } from '../inspect/report.js';
import { sceneSvg, writeSyntheticCoco } from '../sources/synthetic.js';
import { generate } from '../generate/generate.js';
import { readShardFile, readShards } from '../write/shard-reader.js';
import type { Conversation } from '../generate/generate.js';
import type { ImageRecord } from '../types.js';
import type { Command } from 'commander';
import { parsePositiveInt, repeated } from './options.js';

export interface DemoOptions {
  out: string;
  images: number;
  seed: number;
  log: (line: string) => void;
  /** With servers, the LLM loop generates; without, conversations come from the facts. */
  llmUrls?: string[];
  model?: string;
}

/**
 * The out-of-the-box run: make a small COCO-style dataset (drawn images,
 * captions, instances with polygon masks), prepare it (join, tree), and
 * generate conversations. No GPU, no server, no network, unless --llm-url.
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

  const conversationsDir = path.join(o.out, 'conversations');
  const llm = o.llmUrls?.length ? { endpoints: o.llmUrls, model: o.model ?? '', apiKeyEnv: 'OPENAI_API_KEY' } : undefined;
  const gen = await generate({ input: prepared, out: conversationsDir, llm, distribution: 'instructify-mix', loop: { seed: o.seed } });
  o.log(`\ngenerated ${gen.conversations} conversations for ${gen.images} images (${llm ? `LLM ${llm.model}` : 'from the facts, no LLM'}) -> ${conversationsDir}`);
  for (const [type, s] of Object.entries(gen.perPromptType)) o.log(`  ${type}: ${s.accepted} kept of ${s.generated}`);

  // One full example, read back from the shards: the record, its tree, its conversations.
  const first = result.shards[0];
  if (first) {
    const { value: rec } = (await readShardFile<ImageRecord>(path.join(prepared, first.file)).next()) as { value: ImageRecord };
    o.log(`\nexample: ${rec.image} (${rec.width}x${rec.height})`);
    o.log('information:');
    for (const c of rec.captions) o.log(`  ${c.text}`);
    o.log('tree:');
    for (const line of (rec.tree ?? '').split('\n')) o.log(`  ${line}`);
    const convs: Conversation[] = [];
    for await (const c of readShards<Conversation>(conversationsDir)) if (c.image === rec.image && convs.length < 4) convs.push(c);
    for (const c of convs) {
      o.log(`conversation (${c.promptType}):`);
      for (const t of c.conversations) o.log(`  ${t.from}: ${t.value.replace(/\n/g, ' | ')}`);
    }
  }
  await writeFile(
    path.join(o.out, 'README.txt'),
    'instructify demo output\n\nsample/         generated images and COCO-style annotations\nprepared/       one record per image (with its ASCII tree) as Parquet shards, manifest.json, rejects.jsonl\nconversations/  generated conversations as Parquet shards, manifest.json\nreport/         index.html: every image with its boxes, tree and conversations (open it in a browser)\n',
  );
  // Every image of the demo, to look at in a browser.
  const page = await report({ input: conversationsDir, out: path.join(o.out, 'report'), count: o.images });
  o.log(`\nreport: ${page.cards} images with their boxes, trees and conversations -> ${path.resolve(page.index)}`);
}

/** `instructify demo`: a sample dataset through the whole pipeline. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('Make a small sample dataset (images and COCO-style annotations), prepare it and generate conversations. Needs no GPU, server or network.')
    .option('-o, --out <dir>', 'where the sample and its output go', 'demo-out')
    .option('--images <n>', 'how many sample images', parsePositiveInt, 24)
    .option('--seed <n>', 'seed for the sample', parsePositiveInt, 7)
    .option('--llm-url <url>', 'generate with this OpenAI-compatible server instead of from the facts (repeatable)', repeated, [] as string[])
    .option('--model <name>', 'model name, with --llm-url')
    .action(async (opts) => {
      await runDemo({ out: opts.out, images: opts.images, seed: opts.seed, llmUrls: opts.llmUrl, model: opts.model, log: (s) => process.stdout.write(s + '\n') });
    });
}
