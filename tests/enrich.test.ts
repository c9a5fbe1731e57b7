import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import http from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { enrich } from '../src/enrich/enrich.js';
import { OcrReader } from '../src/enrich/ocr.js';
import { decodeRleString } from '../src/records/rle.js';
import type { ImageRecord } from '../src/types.js';
import { readShards } from '../src/write/shard-reader.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, VG_DIR, runPrepare, tmpDir } from './helpers.js';

/**
 * enrich with the tiny stand-in models of tests/fixtures/models (made by
 * make-models.py, with the real exports' names and configs): the depth
 * model says brighter is nearer; the SAM model's mask of a box is the
 * ellipse inscribed in it.
 */
const MODELS = path.join(ROOT, 'tests', 'fixtures', 'models');
const DEPTH = path.join(MODELS, 'depth-anything-v2-small-test');
const SAM = path.join(MODELS, 'slimsam-test');

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
// Model support is an optional install (npm run models:install); .ci/run installs it.
const modelSupport = installed('onnxruntime-node') && installed('tesseract.js') && installed('@tesseract.js-data/eng');
const skip = !modelSupport && process.env.CI !== 'true';

/** Images for the VG slice (which ships none), at the sizes its image_data gives, drawn with sharp. */
async function vgImages(root: string): Promise<void> {
  const data = JSON.parse(await readFile(path.join(VG_DIR, 'image_data.json'), 'utf8')) as { url: string; width: number; height: number }[];
  for (const d of data) {
    const name = d.url.split('/').slice(-2).join('/');
    await mkdir(path.join(root, path.dirname(name)), { recursive: true });
    const { width: w, height: h } = d;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#202040"/><stop offset="1" stop-color="#e0e0c0"/></linearGradient></defs><rect width="${w}" height="${h}" fill="url(#g)"/><circle cx="${w / 3}" cy="${h / 2}" r="${h / 5}" fill="#f0f0f0"/><rect x="${w / 2}" y="${h / 3}" width="${w / 4}" height="${h / 3}" fill="#303030"/></svg>`;
    await sharp(Buffer.from(svg)).jpeg().toFile(path.join(root, name));
  }
}

async function records(dir: string): Promise<ImageRecord[]> {
  const out: ImageRecord[] = [];
  for await (const r of readShards<ImageRecord>(dir)) out.push(r);
  return out;
}

describe.skipIf(skip)('enrich with the test models', () => {
  let vgRoot: string;
  let vgPrepared: string;
  beforeAll(async () => {
    vgRoot = await tmpDir();
    await vgImages(vgRoot);
    ({ out: vgPrepared } = await runPrepare({ sources: [{ kind: 'vg', paths: [VG_DIR] }], images: vgRoot, imageDirs: { vg: '.' }, format: 'parquet' }));
  });

  it('the real VG slice: a mask for every box (from the model, none in the data), depth layers in every tree, 16-bit maps of each image\'s size', async () => {
    const before = await records(vgPrepared);
    expect(before.flatMap((r) => r.boxes).every((b) => b.mask === null)).toBe(true);
    const out = await tmpDir();
    const r = await enrich({ input: vgPrepared, out, depth: true, masks: true, depthModel: DEPTH, samModel: SAM, keepMaps: true });
    const after = await records(out);
    expect(after.map((x) => x.image)).toEqual(before.map((x) => x.image));
    const boxes = after.flatMap((x) => x.boxes);
    expect(r).toMatchObject({ images: 5, masksAdded: boxes.length, masksKept: 0, depthMaps: 5 });
    expect(boxes.length).toBe(before.flatMap((x) => x.boxes).length);
    for (const rec of after) {
      expect(rec.tree, rec.image).toContain('Relative Depths');
      for (const n of rec.treeNodes) expect(n.depths, `${rec.image} ${n.labels[0]}`).not.toBeNull();
      const meta = await sharp(path.join(vgRoot, rec.image)).metadata();
      for (const b of rec.boxes) {
        expect(b.mask).toMatchObject({ format: 'rle', width: meta.width, height: meta.height });
        // The ellipse inscribed in the box: about pi/4 of its pixels, all inside it.
        const counts = decodeRleString(b.mask!.rle!);
        let inside = 0;
        let outside = 0;
        let at = 0;
        const [bx1, by1, bx2, by2] = [b.x1 * meta.width!, b.y1 * meta.height!, b.x2 * meta.width!, b.y2 * meta.height!];
        // Within one cell of SAM's 256-cell mask (interpolated up to the image), and a pixel.
        const tol = Math.ceil(Math.max(meta.width!, meta.height!) / 256) + 1;
        counts.forEach((n, k) => {
          if (k % 2 === 1) {
            for (let p = at; p < at + n; p++) {
              const x = Math.floor(p / meta.height!);
              const y = p % meta.height!;
              if (x >= bx1 - tol && x <= bx2 + tol && y >= by1 - tol && y <= by2 + tol) inside++;
              else outside++;
            }
          }
          at += n;
        });
        expect(outside, `${rec.image} ${b.label}`).toBe(0);
        const boxPixels = (bx2 - bx1) * (by2 - by1);
        if (boxPixels > 2000) {
          expect(inside / boxPixels, `${rec.image} ${b.label}`).toBeGreaterThan(0.65);
          expect(inside / boxPixels).toBeLessThan(0.9);
        }
      }
      // The depth map kept as --depth-dir reads it: 16-bit, the image's size, the full range.
      const map = path.join(out, 'maps', 'depth', rec.image.replace(/\.jpg$/, '.png'));
      const m = await sharp(map).metadata();
      expect(m).toMatchObject({ depth: 'ushort', width: meta.width, height: meta.height });
      const stats = await sharp(map).toColourspace('grey16').stats();
      // The whole 16-bit range, but for what resizing to the image's size blends at the extremes.
      expect(stats.channels[0]!.min).toBeLessThan(0.02 * 65535);
      expect(stats.channels[0]!.max).toBeGreaterThan(0.98 * 65535);
    }
    // Masks, not rectangles: every object's pixel share is its ellipse's, under its box's.
    const nodes = after.flatMap((x) => x.treeNodes).filter((n) => n.merged === 1 && (n.x2 - n.x1) * (n.y2 - n.y1) > 0.01);
    expect(nodes.length).toBeGreaterThan(20);
    for (const n of nodes) expect(n.pixelPct).toBeLessThan(100 * (n.x2 - n.x1) * (n.y2 - n.y1));
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ status: 'complete', command: 'prepare', enrich: { depth: { model: 'depth-anything-v2-small-test' }, masks: { model: 'slimsam-test' } }, enriched: { masks_added: boxes.length } });
    // An enriched folder is a prepared folder: enrich again into it, the same rows.
    await enrich({ input: vgPrepared, out, depth: true, masks: true, depthModel: DEPTH, samModel: SAM, keepMaps: true });
    expect((await records(out)).map((x) => x.tree)).toEqual(after.map((x) => x.tree));
  });

  it('an interrupted run goes on where it stopped: finished images are kept, not worked on again, and the result is the uninterrupted one', async () => {
    const whole = await tmpDir();
    await enrich({ input: vgPrepared, out: whole, depth: true, masks: true, depthModel: DEPTH, samModel: SAM });
    const out = await tmpDir();
    const stop = new AbortController();
    const first = enrich({ input: vgPrepared, out, depth: true, masks: true, depthModel: DEPTH, samModel: SAM, rowsPerShard: 1, signal: stop.signal, onProgress: (p) => p.done === 2 && stop.abort() });
    await expect(first).rejects.toMatchObject({ code: 'E_INTERRUPTED' });
    expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).status).toBe('interrupted');
    const warnings: string[] = [];
    const again = await enrich({ input: vgPrepared, out, depth: true, masks: true, depthModel: DEPTH, samModel: SAM, rowsPerShard: 1, warn: (m) => warnings.push(m) });
    expect(again.resumed).toBe(2);
    expect(again.images).toBe(3);
    expect(warnings.join('\n')).toContain('going on from an interrupted run: 2 images done in 2 shards');
    const sortByImage = (rs: ImageRecord[]) => [...rs].sort((a, b) => a.image.localeCompare(b.image)).map((r) => [r.image, r.tree, r.boxes.map((b) => b.mask?.rle)]);
    expect(sortByImage(await records(out))).toEqual(sortByImage(await records(whole)));
    expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'))).toMatchObject({ status: 'complete', counts: { images: 5 }, resumed: 2 });
    // Other settings are other work: a run with masks only starts over.
    const other = await enrich({ input: vgPrepared, out, masks: true, samModel: SAM, rowsPerShard: 1 });
    expect(other.resumed).toBe(0);
    expect(other.images).toBe(5);
  });

  it('without --model-dir, the models come from the hub once and from the cache after (a loopback hub serving the test models)', async () => {
    const served: string[] = [];
    const hub = http.createServer((req, res) => {
      served.push(req.url!);
      const m = /^\/(onnx-community\/depth-anything-v2-small|Xenova\/slimsam-77-uniform)\/resolve\/main\/([^?]+)/.exec(req.url!);
      if (!m) return void res.writeHead(404).end();
      const local = path.join(m[1]!.includes('depth') ? DEPTH : SAM, m[2]!);
      if (!existsSync(local)) return void res.writeHead(404).end();
      // The hub answers a redirect to its file store, as huggingface.co does.
      if (!req.url!.includes('?stored')) return void res.writeHead(302, { location: `${req.url}?stored` }).end();
      res.writeHead(200);
      createReadStream(local).pipe(res);
    });
    await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(hub.address() as { port: number }).port}`;
    try {
      const cacheDir = await tmpDir();
      const out = await tmpDir();
      const r = await enrich({ input: vgPrepared, out, depth: true, masks: true, hub: { endpoint, cacheDir } });
      expect(r.masksAdded).toBeGreaterThan(100);
      expect(await readFile(path.join(cacheDir, 'Xenova/slimsam-77-uniform/onnx/vision_encoder.onnx'))).toEqual(await readFile(path.join(SAM, 'onnx/vision_encoder.onnx')));
      const downloads = served.filter((u) => u.includes('?stored')).length;
      expect(downloads).toBe(7);
      await enrich({ input: vgPrepared, out, depth: true, masks: true, hub: { endpoint, cacheDir } });
      expect(served.filter((u) => u.includes('?stored')).length).toBe(downloads);
    } finally {
      hub.close();
    }
  });

  it('never replaces a dataset\'s own masks: COCO\'s polygons and RLE stay as they were', async () => {
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }, { kind: 'coco-instances', paths: [COCO_INSTANCES] }], images: COCO_IMAGES, imageDirs: { coco: '.' }, format: 'parquet' });
    const before = await records(prepared);
    const pick = before.slice(0, 6);
    const out = await tmpDir();
    const r = await enrich({ input: prepared, out, masks: true, samModel: SAM, shard: null });
    const after = new Map((await records(out)).map((x) => [x.image, x]));
    expect(r.masksAdded).toBe(before.flatMap((x) => x.boxes).filter((b) => b.mask === null).length);
    for (const rec of pick) expect(after.get(rec.image)!.boxes.map((b) => b.mask)).toEqual(rec.boxes.map((b) => b.mask));
  });

  it('OCR reads back the words of an image rendered from SVG text, as boxes where they are drawn and one fact', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'sign.png');
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="240"><rect width="640" height="240" fill="white"/><text x="40" y="100" font-family="DejaVu Sans" font-size="48" fill="black">OPEN DAILY</text><text x="40" y="180" font-family="DejaVu Sans" font-size="40" fill="black">Fresh bread 7am</text></svg>`;
    await sharp(Buffer.from(svg)).png().toFile(file);
    const ocr = await OcrReader.start(60);
    try {
      const read = await ocr.read(file, 640, 240);
      expect(read.words.map((w) => w.text)).toEqual(['OPEN', 'DAILY', 'Fresh', 'bread', '7am']);
      expect(read.fact).toBe('The text in the image reads: "OPEN DAILY Fresh bread 7am".');
      const open = read.boxes.find((b) => b.label === 'text "OPEN"')!;
      expect(open.x1).toBeCloseTo(40 / 640, 1);
      expect(open.y2).toBeCloseTo(100 / 240, 1);
    } finally {
      await ocr.stop();
    }
    // Through enrich: a custom source names the picture; the record gains the words.
    await writeFile(path.join(dir, 'signs.mapping.json'), JSON.stringify({ image: 'file', captions: ['caption'] }));
    await writeFile(path.join(dir, 'signs.jsonl'), JSON.stringify({ file: 'sign.png', caption: 'A shop sign.' }) + '\n');
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'custom', paths: [path.join(dir, 'signs.mapping.json'), path.join(dir, 'signs.jsonl')] }], images: dir, format: 'parquet' });
    const out = path.join(await tmpDir(), 'enriched');
    const r = await enrich({ input: prepared, out, ocr: true, keepMaps: true });
    expect(r.ocrWords).toBe(5);
    const [rec] = await records(out);
    expect(rec!.facts.map((f) => f.text)).toContain('The text in the image reads: "OPEN DAILY Fresh bread 7am".');
    expect(rec!.boxes.map((b) => b.label)).toEqual(['text "OPEN"', 'text "DAILY"', 'text "Fresh"', 'text "bread"', 'text "7am"']);
    expect(rec!.tree).toContain('text "OPEN"');
    const words = JSON.parse(await readFile(path.join(out, 'maps', 'ocr', 'sign.json'), 'utf8'));
    expect(words['sign.png'].map((w: unknown[]) => w[0])).toEqual(['OPEN', 'DAILY', 'Fresh', 'bread', '7am']);
  });
});

describe('enrich without what it needs', () => {
  it('without model support: exit 1, E_DEPENDENCY naming the one command, and no output folder', async () => {
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], images: COCO_IMAGES, imageDirs: { coco: '.' }, format: 'parquet' });
    const out = path.join(await tmpDir(), 'e');
    for (const flag of ['--depth', '--ocr']) {
      const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'instructify'), 'enrich', '--in', prepared, '--out', out, flag, '--model-dir', MODELS], { encoding: 'utf8', env: { ...process.env, INSTRUCTIFY_TEST_NO_MODEL_SUPPORT: '1' } });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/E_DEPENDENCY: .* install model support with `npm run models:install` \(onnxruntime-node@1\.31\.1, tesseract\.js@7\.0\.0, @tesseract\.js-data\/eng@1\.0\.0; from the npm registry only\)/);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('asks for something to add, and for a model folder laid out as on the hub', async () => {
    await expect(enrich({ input: 'x', out: 'y' })).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining('--depth, --masks and/or --ocr') });
    if (!modelSupport) return;
    const { out: prepared } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [COCO_INSTANCES] }], images: COCO_IMAGES, imageDirs: { coco: '.' }, format: 'parquet' });
    const out = path.join(await tmpDir(), 'e');
    await expect(enrich({ input: prepared, out, depth: true, depthModel: MODELS })).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining('has no config.json') });
    const cacheDir = await tmpDir();
    await expect(enrich({ input: prepared, out, depth: true, hub: { offline: true, cacheDir } })).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining('huggingface-cli download onnx-community/depth-anything-v2-small') });
    // Online, a hub that does not answer: said with the file, and nothing half-written is left in the cache.
    await expect(enrich({ input: prepared, out, depth: true, hub: { endpoint: 'http://127.0.0.1:9', cacheDir } })).rejects.toMatchObject({ code: 'E_IO', message: expect.stringContaining('could not download http://127.0.0.1:9/onnx-community/depth-anything-v2-small/resolve/main/config.json') });
    // Refused before the output folder is made.
    expect(existsSync(out)).toBe(false);
  });
});
