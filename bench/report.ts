import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { generate } from '../src/generate/generate.js';
import { report } from '../src/inspect/report.js';
import { prepare } from '../src/prepare/prepare.js';
import { sceneSvg, writeSyntheticCoco } from '../src/sources/synthetic.js';
import { readShards } from '../src/write/shard-reader.js';

/**
 * bench/report: `instructify report` with --count cards on seeded generated
 * scenes (prepared, conversations from the facts), against its floor
 * measured in the same run: reading the same shards and making plain
 * thumbnails of the same images with sharp (no overlay, no page). Then,
 * where Debian's chromium is installed, how long headless chromium takes to
 * start, load the page and print its DOM.
 *
 *   npm run build && node dist/bench/report.js [--images 200] [--runs 3]
 */
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function floor(prepared: string, conversations: string, imageDir: string, out: string): Promise<void> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  let n = 0;
  for await (const _ of readShards(conversations)) n++;
  const images: string[] = [];
  for await (const r of readShards<{ image: string }>(prepared)) images.push(r.image);
  for (let i = 0; i < images.length; i += 4) {
    await Promise.all(images.slice(i, i + 4).map((img, k) => sharp(path.join(imageDir, img)).resize(480).jpeg({ quality: 88 }).toFile(path.join(out, `${i + k}.jpg`))));
  }
  if (n === 0) throw new Error('no conversations');
}

/** Time for Debian's chromium (when installed) to start, load the page with its pictures and print its DOM; the first, untimed run warms the disk cache. */
function pageTimes(index: string): { loadMs: number } | null {
  if (!existsSync('/usr/bin/chromium')) return null;
  const run = () => execFileSync('/usr/bin/chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--dump-dom', pathToFileURL(index).href], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  run();
  const t0 = performance.now();
  run();
  return { loadMs: performance.now() - t0 };
}

const images = arg('images', 200);
const runs = arg('runs', 3);
const dir = path.join(os.tmpdir(), `instructify-bench-report-${images}`);
rmSync(dir, { recursive: true, force: true });
const imageDir = path.join(dir, 'images');
mkdirSync(imageDir, { recursive: true });
const instancesFile = path.join(dir, 'instances.json');
const captionsFile = path.join(dir, 'captions.json');
const scenes = await writeSyntheticCoco({ instancesFile, captionsFile, count: images, seed: 11, keep: true });
for (let i = 0; i < scenes.length; i += 8) await Promise.all(scenes.slice(i, i + 8).map((s) => sharp(Buffer.from(sceneSvg(s))).jpeg({ quality: 85 }).toFile(path.join(imageDir, s.fileName))));
const prepared = path.join(dir, 'prepared');
await prepare({ sources: [{ kind: 'coco-captions', paths: [captionsFile] }, { kind: 'coco-instances', paths: [instancesFile] }], images: imageDir, out: prepared });
const conversations = path.join(dir, 'conversations');
await generate({ input: prepared, out: conversations, distribution: 'instructify-mix', loop: { seed: 1 } });

const reportTimes: number[] = [];
const floorTimes: number[] = [];
let index = '';
for (let r = 0; r < runs; r++) {
  let t = performance.now();
  await floor(prepared, conversations, imageDir, path.join(dir, 'floor'));
  floorTimes.push(performance.now() - t);
  t = performance.now();
  const res = await report({ input: conversations, out: path.join(dir, 'report'), count: images });
  reportTimes.push(performance.now() - t);
  index = res.index;
}
const bytes = statSync(index).size + readdirSync(path.join(dir, 'report', 'thumbs')).reduce((s, f) => s + statSync(path.join(dir, 'report', 'thumbs', f)).size, 0);
console.log(`bench/report: ${images} cards, medians of ${runs} runs`);
console.log(`  report:   ${(median(reportTimes) / 1000).toFixed(2)} s (${reportTimes.map((x) => (x / 1000).toFixed(2)).join(' ')})`);
console.log(`  floor:    ${(median(floorTimes) / 1000).toFixed(2)} s (${floorTimes.map((x) => (x / 1000).toFixed(2)).join(' ')}): read the shards, plain thumbnails`);
console.log(`  ratio:    ${(median(reportTimes) / median(floorTimes)).toFixed(2)}x the floor`);
console.log(`  page:     ${(bytes / 1e6).toFixed(1)} MB (index.html and thumbnails)`);
const page = await pageTimes(index);
console.log(page ? `  browser:  ${page.loadMs.toFixed(0)} ms for headless chromium to start, load the page and print its DOM` : '  browser:  no /usr/bin/chromium, not measured');
rmSync(dir, { recursive: true, force: true });
