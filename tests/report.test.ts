import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../src/generate/generate.js';
import { report, rleOutlines, sampleKey, overlaySvg } from '../src/inspect/report.js';
import { maskToRle } from '../src/enrich/models.js';
import { bucketize, cardHtml, colourOf, SOURCE_COLOURS } from '../src/inspect/report-html.js';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, duckdb, runPrepare, tmpDir } from './helpers.js';
import { CHROMIUM, openBrowser } from './browser.js';

interface DrawnBox {
  label: string;
  source: string;
  colour: string;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** The cards of a written page: image name, thumbnail and the boxes the card says it drew. */
async function cardsOf(index: string): Promise<{ image: string; thumb: string | null; boxes: DrawnBox[] }[]> {
  const html = await readFile(index, 'utf8');
  const unescape = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  return [...html.matchAll(/<article class="card" id="card-\d+" data-image="([^"]*)" data-boxes="([^"]*)">([\s\S]*?)<\/article>/g)].map((m) => ({
    image: unescape(m[1]!),
    boxes: JSON.parse(unescape(m[2]!)) as DrawnBox[],
    thumb: /<img src="([^"]+)"/.exec(m[3]!)?.[1] ?? null,
  }));
}

function rgbOf(hex: string): [number, number, number] {
  return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
}

/** Close to the colour, as a JPEG keeps a 3-pixel outline of it. */
function near(px: [number, number, number], hex: string, tolerance = 70): boolean {
  const want = rgbOf(hex);
  return px.every((v, i) => Math.abs(v - want[i]!) <= tolerance);
}

let prepared: string;
beforeAll(async () => {
  ({ out: prepared } = await runPrepare({
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
    ],
    images: COCO_IMAGES,
    imageDirs: { coco: '.' },
    format: 'parquet',
  }));
});

const servers: LoopbackLlmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe('report: the page', () => {
  it('samples by seed: the same seed the same images in the same order, another seed others, every image at most once', async () => {
    const a = await report({ input: prepared, out: await tmpDir(), count: 12, seed: 3 });
    const b = await report({ input: prepared, out: await tmpDir(), count: 12, seed: 3 });
    const c = await report({ input: prepared, out: await tmpDir(), count: 12, seed: 4 });
    const [ia, ib, ic] = await Promise.all([a, b, c].map(async (r) => (await cardsOf(r.index)).map((x) => x.image)));
    expect(a).toMatchObject({ cards: 12, eligible: 79, thumbnails: 12, missingImages: 0 });
    expect(ia).toEqual(ib);
    expect(new Set(ia).size).toBe(12);
    expect(ic).not.toEqual(ia);
    // The sample is the 12 smallest keys of the 79 images.
    const all = (await duckdb<{ image: string }>(`select image from '${prepared}/part-*.parquet'`)).map((r) => r.image);
    expect(ia).toEqual(all.sort((x, y) => sampleKey(3, x) - sampleKey(3, y)).slice(0, 12));
  });

  it('every card draws exactly its record\'s boxes (DuckDB reads the record), each outlined in its source\'s colour on the thumbnail', async () => {
    const r = await report({ input: prepared, out: await tmpDir(), count: 79, seed: 1 });
    const cards = await cardsOf(r.index);
    expect(cards).toHaveLength(79);
    const rows = await duckdb<{ image: string; boxes: string }>(`select image, to_json(boxes)::varchar as boxes from '${prepared}/part-*.parquet'`);
    const byImage = new Map(rows.map((x) => [x.image, JSON.parse(x.boxes) as { label: string; source: string; x1: number; y1: number; x2: number; y2: number }[]]));
    let boxes = 0;
    for (const card of cards) {
      const want = byImage.get(card.image)!;
      expect(card.boxes.map((b) => [b.label, b.source, b.x1, b.y1, b.x2, b.y2])).toEqual(want.map((b) => [b.label, b.source, b.x1, b.y1, b.x2, b.y2]));
      const { data, info } = await sharp(path.join(path.dirname(r.index), card.thumb!)).raw().toBuffer({ resolveWithObject: true });
      const pixel = (x: number, y: number): [number, number, number] => {
        const cx = Math.min(info.width - 1, Math.max(0, Math.round(x)));
        const cy = Math.min(info.height - 1, Math.max(0, Math.round(y)));
        const at = (cy * info.width + cx) * info.channels;
        return [data[at]!, data[at + 1]!, data[at + 2]!];
      };
      for (const b of card.boxes) {
        boxes++;
        // The left edge, at five heights in its middle: a label drawn over it hides one or two at most.
        const hits = [0.3, 0.4, 0.5, 0.6, 0.7].filter((t) => near(pixel(b.x1 * info.width, (b.y1 + (b.y2 - b.y1) * t) * info.height), b.colour)).length;
        expect(hits, `${card.image}: ${b.label} at x1 ${b.x1}`).toBeGreaterThanOrEqual(1);
      }
    }
    expect(boxes).toBeGreaterThan(600);
  });

  it('a generate folder: conversations per card as the shards hold them, the turns the checks rejected with why, and --prompt-type / --rejected / --image pick', async () => {
    // A model that plants a false answer in every conversation's second turn: the check takes it out.
    const server = new LoopbackLlmServer({ answer: (req) => fakeAnswer(req.messages.at(-1)!.content, { wrongTurn: 1 }) });
    await server.start();
    servers.push(server);
    const gen = await tmpDir();
    const g = await generate({ input: prepared, out: gen, llm: { endpoints: [server.url], model: 'fake-model', maxConcurrency: 16, sampling: { seed: 1 } }, distribution: 'instructify-mix', loop: { seed: 1 }, cache: null });
    const turnsRejected = (await readFile(path.join(gen, 'turns-rejected.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { image: string; prompt_type: string; reason: string; question: string });
    const rejectedTotal = Object.values(g.perPromptType).reduce((n, t) => n + t.turnsRejected, 0);
    expect(turnsRejected.length).toBe(rejectedTotal);
    expect(turnsRejected.length).toBeGreaterThan(0);
    // A false second turn is taken out of a kept conversation; in one-turn-lists where it comes first, the conversation goes.
    expect(new Set(turnsRejected.map((t) => t.reason))).toEqual(new Set(['check-false', 'first-turn-false']));

    const all = await report({ input: gen, out: await tmpDir(), count: 200 });
    const html = await readFile(all.index, 'utf8');
    const convs = await duckdb<{ image: string; n: number }>(`select image, count(*)::int as n from '${gen}/part-*.parquet' group by image`);
    expect(all.cards).toBe(convs.length);
    // Every conversation of every image is on its card, and every rejected turn, with its reason in words.
    const cardTexts = html.split('<article class="card"').slice(1);
    for (const c of convs) {
      const text = cardTexts.find((t) => t.includes(`data-image="${c.image}"`))!;
      expect((text.match(/<div class="conversation"/g) ?? []).length, c.image).toBe(c.n);
      const rejectedHere = turnsRejected.filter((t) => t.image === c.image).length;
      expect((text.match(/the check said false|first turn failed its check/g) ?? []).length, c.image).toBe(rejectedHere);
    }
    // Pictures come from the image root the prepare manifest names.
    expect(all.missingImages).toBe(0);

    const type = 'llava-complex';
    const byType = await report({ input: gen, out: await tmpDir(), count: 200, promptType: type });
    const withType = await duckdb<{ image: string }>(`select distinct image from '${gen}/part-*.parquet' where prompt_type = '${type}'`);
    expect((await cardsOf(byType.index)).map((c) => c.image).sort()).toEqual(withType.map((r) => r.image).sort());

    const rejected = await report({ input: gen, out: await tmpDir(), count: 200, rejected: true });
    expect((await cardsOf(rejected.index)).map((c) => c.image).sort()).toEqual([...new Set(turnsRejected.map((t) => t.image))].sort());

    const named = [turnsRejected[0]!.image, convs[0]!.image];
    const picked = await report({ input: gen, out: await tmpDir(), images: COCO_IMAGES, pickImages: named });
    expect((await cardsOf(picked.index)).map((c) => c.image).sort()).toEqual([...new Set(named)].sort());
  });

  it('outlines RLE masks (COCO crowds, the masks enrich adds) in their source\'s colour: the edge, not the inside', () => {
    // A disc of radius 30 in a 100 x 80 mask, as COCO's column-major RLE.
    const bits = new Uint8Array(100 * 80);
    for (let y = 0; y < 80; y++) for (let x = 0; x < 100; x++) bits[y * 100 + x] = (x - 50) ** 2 + (y - 40) ** 2 <= 900 ? 1 : 0;
    const mask = maskToRle(bits, 100, 80);
    const box = { label: 'crowd', x1: 0.2, y1: 0.125, x2: 0.8, y2: 0.875, attributes: [], relations: [], source: 'b', iscrowd: true, sourceId: null, mask };
    const raw = rleOutlines([box], ['a', 'b'], 200, 160)!;
    const colour = (x: number, y: number) => [...raw.subarray((y * 200 + x) * 4, (y * 200 + x) * 4 + 4)];
    const [r, g, b] = rgbOf(SOURCE_COLOURS[1]!);
    // At twice the size: the disc's left edge is near x = 40, its centre at (100, 80).
    const edge = [38, 39, 40, 41, 42].map((x) => colour(x, 80)).find((c) => c[3] === 255);
    expect(edge).toEqual([r, g, b, 255]);
    expect(colour(100, 80)[3]).toBe(0);
    expect(colour(5, 5)[3]).toBe(0);
    expect(rleOutlines([{ ...box, mask: null }], ['b'], 200, 160)).toBeNull();
  });

  it('a run folder (prepare streamed into generate, no prepared folder): conversations and pictures without boxes, from --images', async () => {
    const { run } = await import('../src/commands/run.js');
    const out = await tmpDir();
    await run({ prepare: { sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }], images: COCO_IMAGES, imageDirs: { coco: '.' } }, generate: { out, distribution: 'instructify-mix', limit: 4 } });
    const r = await report({ input: out, out: await tmpDir(), images: COCO_IMAGES });
    expect(r).toMatchObject({ cards: 4, thumbnails: 4, missingImages: 0 });
    const html = await readFile(r.index, 'utf8');
    expect(html.match(/the prepared record is not available/g)).toHaveLength(4);
    expect(html.match(/<div class="conversation"/g)!.length).toBeGreaterThanOrEqual(4);
  });

  it('escapes what the data says: a label or caption with markup stays text', () => {
    const rec = {
      image: 'a<b>.jpg', width: 100, height: 100, ref: 'x', sources: ['custom'], captions: [{ text: '<script>alert(1)</script>', source: 'custom' }], facts: [], qa: [], regions: [], absent: [], uncounted: [], tree: 'x <y>', treeNodes: [],
      boxes: [{ label: '<img src=x onerror=alert(1)>', x1: 0.1, y1: 0.1, x2: 0.5, y2: 0.5, attributes: [], relations: [], source: 'custom', iscrowd: false, sourceId: null, mask: null }],
    } as ImageRecord;
    const html = cardHtml({ image: rec.image, record: rec, thumb: null, missing: 'no image', conversations: [], rejectedTurns: [], rejects: [] }, ['custom'], 0);
    expect(html).not.toMatch(/<script>|<img src=x/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(overlaySvg(rec.boxes, ['custom'], 100, 100, rec)).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('charts count what they say: exact buckets, then doubling ranges', () => {
    const h = bucketize(new Map([[1, 5], [2, 3], [9, 1], [30, 2]]), 4, 't');
    // 0 is left out (no value there, before the first value); 5-9, 10-19, 20-39 hold 9 and the two 30s.
    expect(h.buckets).toEqual([
      { label: '1', count: 5 },
      { label: '2', count: 3 },
      { label: '3', count: 0 },
      { label: '4', count: 0 },
      { label: '5-9', count: 1 },
      { label: '10-19', count: 0 },
      { label: '20-39', count: 2 },
    ]);
    expect(colourOf('b', ['a', 'b'])).toBe(SOURCE_COLOURS[1]);
  });

  it('will not write into another command\'s folder, and says what a folder that is not an output is', async () => {
    await expect(report({ input: prepared, out: prepared })).rejects.toMatchObject({ code: 'E_OUTPUT' });
    const empty = await tmpDir();
    await expect(report({ input: empty, out: await tmpDir() })).rejects.toMatchObject({ code: 'E_WRONG_KIND' });
    await expect(report({ input: prepared, out: await tmpDir(), promptType: 'x' })).rejects.toMatchObject({ code: 'E_OPTION' });
  });
});

// .ci/run installs Debian's chromium; elsewhere the browser test runs where it is installed.
const browserMissing = !existsSync(CHROMIUM) && process.env.CI !== 'true';

describe.skipIf(browserMissing)('report in headless Chromium', () => {
  it('opens from file:// with no console error, shows every card, and draws a box where its record says', async () => {
    const r = await report({ input: prepared, out: await tmpDir(), count: 30, seed: 2 });
    const cards = await cardsOf(r.index);
    const page = await openBrowser();
    try {
      await page.goto(pathToFileURL(r.index).href);
      expect(await page.evaluate<number>(`document.querySelectorAll('article.card').length`)).toBe(30);
      // The first card with a box: its picture on screen, and the box's left edge in the screenshot.
      const n = cards.findIndex((c) => c.boxes.length > 0);
      const box = cards[n]!.boxes[0]!;
      const rect = await page.evaluate<{ x: number; y: number; width: number; height: number }>(
        `(async () => { const img = document.querySelector('#card-${n} img'); img.scrollIntoView(); await img.decode(); const r = img.getBoundingClientRect(); return { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height }; })()`,
      );
      const shot = await page.screenshot(rect);
      const dir = path.join(ROOT, 'test-artifacts');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'report-card.png'), shot);
      await writeFile(path.join(dir, 'report-page.png'), await page.screenshot());
      const { data, info } = await sharp(shot).raw().toBuffer({ resolveWithObject: true });
      expect(info.width).toBe(Math.round(rect.width));
      const hits = [0.3, 0.4, 0.5, 0.6, 0.7].filter((t) => {
        const x = Math.min(info.width - 1, Math.round(box.x1 * info.width));
        const y = Math.min(info.height - 1, Math.round((box.y1 + (box.y2 - box.y1) * t) * info.height));
        const at = (y * info.width + x) * info.channels;
        return near([data[at]!, data[at + 1]!, data[at + 2]!], box.colour);
      });
      expect(hits.length, `${box.label} on ${cards[n]!.image}`).toBeGreaterThanOrEqual(1);
      expect(page.problems).toEqual([]);
      expect((await readdir(dir)).sort()).toEqual(expect.arrayContaining(['report-card.png', 'report-page.png']));
    } finally {
      await page.close();
    }
  });

  it('a page that has a console error is caught: the check can fail', async () => {
    const dir = await tmpDir();
    await writeFile(path.join(dir, 'bad.html'), '<!doctype html><title>x</title><script>console.error("boom")</script><img src="missing.png">');
    const page = await openBrowser();
    try {
      await page.goto(pathToFileURL(path.join(dir, 'bad.html')).href);
      expect(page.problems.join('\n')).toMatch(/boom/);
      expect(page.problems.join('\n')).toMatch(/missing\.png|ERR_FILE_NOT_FOUND/);
    } finally {
      await page.close();
    }
  });
});
