import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { yesNoQuestion } from '../src/sources/captions-more.js';
import { ocrWordBoxes } from '../src/sources/text-sets.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_IMAGES, COCO_INSTANCES, ROOT, VG_DIR, duckdb, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

/**
 * The reference's remaining datasets, each from a fixture written from its
 * format's documentation (tests/fixtures/sources/*_from_format_docs*; the
 * Parquet ones are written here by DuckDB, an independent writer, with the
 * columns the Hugging Face cards list), joined with the real COCO or Visual
 * Genome slice where the images are the same.
 */
const FIX = path.join(ROOT, 'tests', 'fixtures', 'sources');
const fx = (name: string) => path.join(FIX, name);

async function records(sources: Parameters<typeof runPrepare>[0]['sources'], extra: Partial<Parameters<typeof runPrepare>[0]> = {}) {
  const { result, out } = await runPrepare({ sources, format: 'jsonl', ...extra });
  const rows = await readJsonlShards<ImageRecord>(out, result);
  const rejects = readFileSync(path.join(out, 'rejects.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { reason: string; detail: string });
  return { result, out, rows, rejects, byImage: new Map(rows.map((r) => [r.image, r])) };
}

/** A JPEG of a size, a flat colour, for datasets whose pictures are not in ../shared/data. */
async function picture(file: string, width: number, height: number, colour = '#4080c0'): Promise<Buffer> {
  mkdirSync(path.dirname(file), { recursive: true });
  const buf = await sharp({ create: { width, height, channels: 3, background: colour } }).jpeg().toBuffer();
  writeFileSync(file, buf);
  return buf;
}

describe('the kinds', () => {
  it('instructify sources lists every kind of the reference\'s datasets', () => {
    const listed = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'instructify'), 'sources'], { encoding: 'utf8' }).split('\n').map((l) => l.split(/\s+/)[0]);
    for (const kind of ['coco-captions', 'vsr', 'image2paragraph', 'conceptual-captions', 'img2dataset', 'ocr-vqa', 'st-vqa', 'visualmrc', 'llavar', 'docowl', 'visual-news', 'dior-rsvg', 'hrrsd', 'remoteclip', 'levir-cc', 'spot-the-diff', 'image-editing']) {
      expect(listed, kind).toContain(kind);
    }
  });
});

describe('COCO 2014 files', () => {
  it('2014 names resolve to the 2017 folders the user holds, and the run says so', async () => {
    const root = await tmpDir();
    // The two pictures, copied into a 2017 layout (a symlink would lead outside the root, which prepare refuses).
    mkdirSync(path.join(root, 'val2017'));
    mkdirSync(path.join(root, 'train2017'));
    for (const n of ['000000000139.jpg', '000000000802.jpg']) copyFileSync(path.join(COCO_IMAGES, n), path.join(root, 'val2017', n));
    const warned: string[] = [];
    const { rows, result } = await records([{ kind: 'coco-captions', paths: [fx('captions_val2014_from_format_docs.json')] }], { images: root, warn: (m) => warned.push(m) });
    expect(rows.map((r) => [r.image, r.width, r.height]).sort()).toEqual([
      ['val2017/000000000139.jpg', 640, 426],
      ['val2017/000000000802.jpg', 424, 640],
    ]);
    expect(result.notes).toEqual([`COCO 2014 file names (COCO_val2014_000000000139.jpg) found as COCO 2017 files in ${path.join(root, 'val2017')} (the image root has 2017 folders and no 2014 ones)`]);
    expect(warned).toEqual(result.notes);
    // A root with the 2014 folders keeps the 2014 names.
    const old = await tmpDir();
    mkdirSync(path.join(old, 'val2014'));
    const kept = await records([{ kind: 'coco-captions', paths: [fx('captions_val2014_from_format_docs.json')] }], { images: old, imageDirs: { coco: 'val2014' }, keepMissing: true });
    expect(kept.rows.map((r) => r.image).sort()).toEqual(['val2014/COCO_val2014_000000000139.jpg', 'val2014/COCO_val2014_000000000802.jpg']);
    expect(kept.result.notes).toEqual([]);
  });
});

describe('VSR', () => {
  it('joins the real COCO records; true captions are facts, false ones "No." answers, never captions; a bad label is set aside', async () => {
    const { rows, byImage, rejects } = await records([
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      { kind: 'vsr', paths: [fx('vsr_from_format_docs.jsonl')] },
    ]);
    expect(rows).toHaveLength(79);
    const rec = byImage.get('000000000139.jpg')!;
    expect(rec.sources).toEqual(['coco-instances', 'vsr']);
    expect(rec.facts.map((f) => f.text)).toContain('The potted plant is at the left side of the tv.');
    expect(rec.qa).toEqual([{ question: 'Is the tv on top of the person?', answer: 'No.', answers: ['No.'], source: 'vsr' }]);
    // Not of the "The X is ..." shape: a negated fact instead of a question.
    expect(byImage.get('000000000802.jpg')!.facts.map((f) => f.text)).toContain('It is not true that oven far away from the refrigerator.');
    for (const r of rows) expect(r.captions.filter((c) => c.source === 'vsr')).toEqual([]);
    // A false statement is never a caption nor a true fact, on any record.
    const falseOnes = ['The tv is on top of the person.', 'Oven far away from the refrigerator.'];
    for (const r of rows) for (const t of [...r.captions, ...r.facts].map((x) => x.text)) expect(falseOnes).not.toContain(t);
    expect(rejects.filter((r) => r.reason === 'bad-record').map((r) => r.detail)).toEqual(['VSR label must be 1 (true) or 0 (false), got 2']);
  });

  it('alone, finds its image in the split folder image_link names', async () => {
    const { rows } = await records([{ kind: 'vsr', paths: [fx('vsr_from_format_docs.jsonl')] }]);
    expect(rows.map((r) => r.image).sort()).toEqual(['val2017/000000000139.jpg', 'val2017/000000000802.jpg']);
    expect(yesNoQuestion('The cats are under the table.')).toBe('Are the cats under the table?');
  });
});

describe('Stanford image paragraphs', () => {
  it('a paragraph is a caption of the VG image its URL names, from the JSON and from the CSV, joined with the real VG slice', async () => {
    const { byImage, rejects } = await records([
      { kind: 'vg', paths: [VG_DIR] },
      { kind: 'image2paragraph', paths: [fx('image2paragraph_paragraphs_v1_from_format_docs.json'), fx('image2paragraph_from_format_docs.csv')] },
    ]);
    const one = byImage.get('VG_100K_2/1.jpg')!;
    expect(one.sources).toEqual(['vg', 'image2paragraph']);
    expect(one.captions.map((c) => c.text)).toEqual(['A street scene with a tall tree on the sidewalk. A man in a white shirt stands beside a parked car. Buildings line the far side of the road.']);
    expect(one.boxes.length).toBeGreaterThan(10);
    expect(byImage.get('VG_100K/2.jpg')!.captions.map((c) => c.text)).toEqual(['A living room with a couch, a lamp and a window.']);
    expect(rejects.some((r) => r.reason === 'bad-record' && /not-vg/.test(r.detail))).toBe(true);
  });
});

describe('Conceptual Captions and img2dataset', () => {
  it('captions and labels by URL join the img2dataset folder that holds the images; failed downloads are counted and set aside', async () => {
    const root = await tmpDir();
    const dl = path.join(root, 'cc');
    const rows = [
      { key: '000000000', url: 'http://example.org/cc/1.jpg', caption: 'a dog runs on the beach', status: 'success', width: 320, height: 240 },
      { key: '000000001', url: 'http://example.org/cc/2.jpg', caption: 'city skyline at night', status: 'success', width: 200, height: 100 },
      { key: '000000002', url: 'http://example.org/cc/3.jpg', caption: null, status: 'failed_to_download', width: null, height: null },
    ];
    for (const r of rows.filter((x) => x.status === 'success')) {
      await picture(path.join(dl, '00000', `${r.key}.jpg`), r.width!, r.height!);
      writeFileSync(path.join(dl, '00000', `${r.key}.json`), JSON.stringify(r));
    }
    // The shard's Parquet, written by DuckDB.
    const values = rows.map((r) => `('${r.key}', '${r.url}', ${r.caption ? `'${r.caption}'` : 'NULL'}, '${r.status}', ${r.width ?? 'NULL'}, ${r.height ?? 'NULL'})`).join(', ');
    await duckdb(`COPY (SELECT * FROM (VALUES ${values}) t(key, url, caption, status, width, height)) TO '${path.join(dl, '00000.parquet')}' (FORMAT parquet)`);
    const { byImage, rejects } = await records(
      [
        { kind: 'img2dataset', paths: [dl] },
        { kind: 'conceptual-captions', paths: [fx('conceptual_captions_train_from_format_docs.tsv'), fx('conceptual_captions_labels_from_format_docs.tsv')] },
      ],
      { images: root, imageDirs: { web: 'cc' } },
    );
    const dog = byImage.get('cc/00000/000000000.jpg')!;
    expect(dog).toMatchObject({ width: 320, height: 240, sources: ['img2dataset', 'conceptual-captions'] });
    expect(dog.captions.map((c) => c.text)).toEqual(['a dog runs on the beach', 'a dog runs on the beach']);
    expect(dog.facts.map((f) => f.text)).toEqual(['In this image you can find dog, beach and sand.']);
    expect(byImage.get('cc/00000/000000001.jpg')!.width).toBe(200);
    expect(rejects.filter((r) => r.reason === 'not-downloaded')).toHaveLength(1);
    // The caption of the picture that never downloaded has no file: set aside, saying why.
    expect(rejects.filter((r) => r.reason === 'unknown-image').map((r) => r.detail)).toEqual(['no source names a file for web:http://example.org/cc/3.jpg: give the img2dataset folder that downloaded it']);
    // Without the Parquet, the per-image .json files.
    const alt = path.join(root, 'cc-json');
    mkdirSync(path.join(alt, '00000'), { recursive: true });
    for (const r of rows.filter((x) => x.status === 'success')) writeFileSync(path.join(alt, '00000', `${r.key}.json`), JSON.stringify(r));
    const { byImage: fromJson } = await records([{ kind: 'img2dataset', paths: [alt] }]);
    expect([...fromJson.keys()].sort()).toEqual(['00000/000000000.jpg', '00000/000000001.jpg']);
  });
});

describe('img2dataset outputs', () => {
  it('the parquet output (bytes in a jpg column) and the webdataset output (tar shards) give the same records as the files output', async () => {
    const work = await tmpDir();
    const root = await tmpDir();
    const pics = [
      { key: '000000000', url: 'http://example.org/cc/1.jpg', caption: 'a dog runs on the beach', status: 'success', width: 320, height: 240 },
      { key: '000000001', url: 'http://example.org/cc/2.jpg', caption: 'city skyline at night', status: 'success', width: 200, height: 100 },
    ];
    for (const p of pics) {
      await picture(path.join(work, `${p.key}.jpg`), p.width, p.height, p.key.endsWith('0') ? '#ff8000' : '#0080ff');
      writeFileSync(path.join(work, `${p.key}.json`), JSON.stringify(p));
      writeFileSync(path.join(work, `${p.key}.txt`), p.caption);
    }
    const pq = path.join(work, 'pq');
    mkdirSync(pq);
    const rowsSql = pics.map((p) => `SELECT '${p.key}' AS key, '${p.url}' AS url, '${p.caption}' AS caption, '${p.status}' AS status, ${p.width} AS width, ${p.height} AS height, (SELECT content FROM read_blob('${path.join(work, `${p.key}.jpg`)}')) AS jpg`).join(' UNION ALL ');
    await duckdb(`COPY (${rowsSql}) TO '${path.join(pq, '00000.parquet')}' (FORMAT parquet)`);
    const wds = path.join(work, 'wds');
    mkdirSync(wds);
    // GNU tar writes the shard, as webdataset's own writer lays it out: a sample's files one after another.
    execFileSync('tar', ['-cf', path.join(wds, '00000.tar'), '-C', work, ...pics.flatMap((p) => [`${p.key}.jpg`, `${p.key}.json`, `${p.key}.txt`])]);
    for (const dir of [pq, wds]) {
      const { rows } = await records([
        { kind: 'img2dataset', paths: [dir] },
        { kind: 'conceptual-captions', paths: [fx('conceptual_captions_train_from_format_docs.tsv')] },
      ], { images: root });
      const byUrlCaption = rows.map((r) => [r.width, r.height, r.captions.map((c) => c.text)]).sort();
      expect(byUrlCaption, dir).toEqual([
        [200, 100, ['city skyline at night', 'city skyline at night']],
        [320, 240, ['a dog runs on the beach', 'a dog runs on the beach']],
      ]);
      // The pictures were written once under the image root, and are the ones in the archive.
      for (const r of rows) expect((await sharp(path.join(root, r.image)).metadata()).width).toBe(r.width);
    }
  });
});

describe('text in images', () => {
  it('LLaVAR: text as a fact, OCR words as boxes, in pixels or fractions as each image\'s numbers say', async () => {
    const { byImage } = await records([{ kind: 'llavar', paths: [fx('llavar_finetune_meta_from_format_docs.json'), fx('llavar_ocr_from_format_docs.jsonl')] }]);
    const sale = byImage.get('000001.jpg')!;
    expect(sale.facts.map((f) => f.text)).toEqual(['The text in the image reads: SUMMER SALE 50% OFF.']);
    const summer = sale.boxes.find((b) => b.label === 'text "SUMMER"')!;
    expect([summer.x1, summer.y1, summer.x2, summer.y2]).toEqual([40 / 640, 50 / 480, 200 / 640, 110 / 480]);
    const chapter = byImage.get('000002.jpg')!.boxes.find((b) => b.label === 'text "Chapter"')!;
    expect([chapter.x1, chapter.y1, chapter.x2, chapter.y2].map((v) => +v.toFixed(6))).toEqual([0.1, 0.1, 0.5, 0.2]);
  });

  it('DocOwl-style OCR results, and the files enrich --keep-maps writes, read as words and boxes', async () => {
    const root = await tmpDir();
    await picture(path.join(root, 'DocVQA/imgs/ffbf0023_4.png'), 600, 800);
    await picture(path.join(root, 'ChartQA/png/two_col_1.png'), 400, 300);
    const { byImage } = await records([{ kind: 'docowl', paths: [fx('docowl_ocr_from_format_docs.json')] }], { images: root });
    const memo = byImage.get('DocVQA/imgs/ffbf0023_4.png')!;
    expect(memo.facts.map((f) => f.text)).toEqual(['The text in the image reads: RJR INTEROFFICE MEMO.']);
    expect(memo.boxes.map((b) => b.label)).toEqual(['text "RJR"', 'text "INTEROFFICE"', 'text "MEMO"']);
    expect(memo.boxes[0]!.x1).toBeCloseTo(120 / 600, 6);
    expect(byImage.get('ChartQA/png/two_col_1.png')!.boxes[0]!.x2).toBeCloseTo(0.3, 6);
    // enrich writes [text, x0, y0, x1, y1, confidence]: the sixth number is not a coordinate.
    expect(ocrWordBoxes([['OPEN', 43, 64, 168, 101, 96]]).boxes[0]).toMatchObject({ label: 'text "OPEN"', x: 43, y: 64, w: 125, h: 37 });
  });

  it('OCR-VQA, ST-VQA and VisualMRC from Hugging Face Parquet: image bytes written once, QA paired by role, OCR boxes in pixels', async () => {
    const root = await tmpDir();
    const dir = await tmpDir();
    const img = path.join(dir, 'cover.jpg');
    await picture(img, 300, 450, '#c04040');
    const blob = `(SELECT content FROM read_blob('${img}'))`;
    await duckdb(`COPY (SELECT {'bytes': ${blob}, 'path': 'cover.jpg'} AS image, '0001' AS image_id, 'The Night Garden' AS title, 'A. Writer' AS authorName, 'Fiction' AS genre,
      ['Who wrote this book?', 'What is the genre of this book?'] AS questions, ['A. Writer', 'Fiction'] AS answers,
      [{'word': 'Night', 'bounding_box': {'top_left_x': 30, 'top_left_y': 40, 'width': 90, 'height': 30}}] AS ocr_info) TO '${path.join(dir, 'ocrvqa_from_format_docs.parquet')}' (FORMAT parquet)`);
    await duckdb(`COPY (SELECT {'bytes': ${blob}, 'path': NULL} AS image, [{'question': 'What is the title?', 'answers': ['the night garden', 'the night garden', 'night garden']}] AS qas) TO '${path.join(dir, 'stvqa_from_format_docs.parquet')}' (FORMAT parquet)`);
    await duckdb(`COPY (SELECT [${blob}] AS images, [{'data': 'What is the page about?', 'modality': 'text', 'role': 'user'}, {'data': 'A garden at night.', 'modality': 'text', 'role': 'assistant'}, {'data': 'Who wrote it?', 'modality': 'text', 'role': 'user'}, {'data': 'A. Writer.', 'modality': 'text', 'role': 'assistant'}] AS data) TO '${path.join(dir, 'visualmrc_from_format_docs.parquet')}' (FORMAT parquet)`);
    const { rows } = await records(
      [
        { kind: 'ocr-vqa', paths: [path.join(dir, 'ocrvqa_from_format_docs.parquet')] },
        { kind: 'st-vqa', paths: [path.join(dir, 'stvqa_from_format_docs.parquet')] },
        { kind: 'visualmrc', paths: [path.join(dir, 'visualmrc_from_format_docs.parquet')] },
      ],
      { images: root },
    );
    // One picture, written once per family by its hash.
    const byFamily = new Map(rows.map((r) => [r.image.split('/')[0], r]));
    const cover = byFamily.get('ocr-vqa')!;
    expect(cover.facts.map((f) => f.text)).toEqual(['The title of this book is "The Night Garden".', 'The book is by A. Writer.', "The book's genre is Fiction."]);
    expect(cover.qa.map((q) => [q.question, q.answer])).toEqual([['Who wrote this book?', 'A. Writer'], ['What is the genre of this book?', 'Fiction']]);
    const night = cover.boxes.find((b) => b.label === 'text "Night"')!;
    expect([night.x1, night.y1, night.x2, night.y2]).toEqual([30 / 300, 40 / 450, 120 / 300, 70 / 450]);
    // The most common answer to train on; every distinct answer kept.
    expect(byFamily.get('st-vqa')!.qa).toEqual([{ question: 'What is the title?', answer: 'the night garden', answers: ['the night garden', 'night garden'], source: 'st-vqa' }]);
    expect(byFamily.get('visualmrc')!.qa.map((q) => [q.question, q.answer])).toEqual([['What is the page about?', 'A garden at night.'], ['Who wrote it?', 'A. Writer.']]);
  });
});

describe('news and aerial images', () => {
  it('Visual News: caption, topic and source as facts, images under origin/', async () => {
    const { byImage } = await records([{ kind: 'visual-news', paths: [fx('visual_news_data_from_format_docs.json')] }]);
    const fire = byImage.get('bbc/images/0001/101.jpg')!;
    expect(fire.captions.map((c) => c.text)).toEqual(['Firefighters work at the scene of a fire in the city centre.']);
    expect(fire.facts.map((f) => f.text)).toEqual(['This is a news photo about world news.', 'It appeared in bbc news.']);
  });

  it('HRRSD boxes by class and RemoteCLIP captions whole (commas kept, the header not a record)', async () => {
    const { byImage } = await records([
      { kind: 'hrrsd', paths: [fx('hrrsd_Annotations_from_format_docs.csv')] },
      { kind: 'remoteclip', paths: [fx('remoteclip_Det-10_from_format_docs.csv')] },
    ]);
    const one = byImage.get('JpegImages/00001.jpg')!;
    expect(one.boxes.map((b) => [b.label, +b.x1.toFixed(4), +b.y2.toFixed(4)])).toEqual([['airplane', 0.125, 0.4], ['storage tank', 0.5, 0.6]]);
    expect(one.facts.map((f) => f.text)).toEqual(['An aerial image.']);
    expect(byImage.get('airport_1.jpg')!.captions.map((c) => c.text)).toEqual(['many planes are parked next to a long building in an airport, with two runways']);
    expect([...byImage.keys()].some((k) => k === 'filename')).toBe(false);
  });

  it('DIOR-RSVG: every object keeps its box by category, each caption describes its box', async () => {
    const root = await tmpDir();
    const dir = await tmpDir();
    const img = path.join(dir, 'aerial.jpg');
    await picture(img, 800, 800, '#808040');
    await duckdb(`COPY (SELECT {'bytes': (SELECT content FROM read_blob('${img}')), 'path': '00001.jpg'} AS image, '00001.jpg' AS path,
      {'bbox': [[100, 100, 300, 200], [500, 500, 600, 700]], 'captions': [['the large storage tank on the left'], []], 'categories': ['storagetank', 'vehicle'], 'categories_normalized': ['storage tank', 'vehicle']} AS objects) TO '${path.join(dir, 'dior_rsvg_from_format_docs.parquet')}' (FORMAT parquet)`);
    const { rows } = await records([{ kind: 'dior-rsvg', paths: [path.join(dir, 'dior_rsvg_from_format_docs.parquet')] }], { images: root });
    expect(rows[0]!.boxes.map((b) => b.label)).toEqual(['storage tank', 'the large storage tank on the left', 'vehicle']);
    expect(rows[0]!.boxes.find((b) => b.label === 'vehicle')!.y2).toBeCloseTo(700 / 800, 6);
  });
});

describe('counts beside captions', () => {
  it('a short caption on a box is not a second kind of object: one ship, however its caption is worded', async () => {
    const root = await tmpDir();
    const dir = await tmpDir();
    const img = path.join(dir, 'harbour.jpg');
    await picture(img, 400, 400, '#3060a0');
    await duckdb(`COPY (SELECT {'bytes': (SELECT content FROM read_blob('${img}')), 'path': 'h.jpg'} AS image,
      {'bbox': [[50, 50, 150, 120]], 'captions': [['a white ship']], 'categories': ['ship'], 'categories_normalized': ['ship']} AS objects) TO '${path.join(dir, 'dior_short_caption.parquet')}' (FORMAT parquet)`);
    const { rows } = await records([{ kind: 'dior-rsvg', paths: [path.join(dir, 'dior_short_caption.parquet')] }], { images: root });
    const footer = rows[0]!.tree!.slice(rows[0]!.tree!.indexOf('Object Counts:'));
    expect(footer).toBe('Object Counts:\nships: 1');
  });
});

describe('two-image items', () => {
  it('LEVIR-CC: before and after pasted side by side at a common height, once, with the sides said in the facts', async () => {
    const root = await tmpDir();
    await picture(path.join(root, 'images/train/A/train_000001.png'), 256, 256, '#206020');
    await picture(path.join(root, 'images/train/B/train_000001.png'), 256, 256, '#a0a0a0');
    await picture(path.join(root, 'images/train/A/train_000002.png'), 200, 100, '#202060');
    await picture(path.join(root, 'images/train/B/train_000002.png'), 100, 200, '#602020');
    const { byImage } = await records([{ kind: 'levir-cc', paths: [fx('levir_cc_captions_from_format_docs.json')] }], { images: root });
    const built = byImage.get('levir-cc/pairs/train_train_000001.jpg')!;
    expect(built).toMatchObject({ width: 512, height: 256 });
    expect(built.captions.map((c) => c.text)).toEqual(['Many houses are built along the road .', 'Some buildings appear on the bare land .']);
    expect(built.facts.map((f) => f.text)).toEqual(['The image shows two photos side by side: the left one before, the right one after.']);
    // Different sizes: both at the lower height (100), widths kept in proportion: 200 + 50.
    const same = byImage.get('levir-cc/pairs/train_train_000002.jpg')!;
    expect(same).toMatchObject({ width: 250, height: 100 });
    expect(same.facts.map((f) => f.text)).toContain('Nothing changed between the two photos.');
    // The left half is the before picture, the right the after one.
    const { data, info } = await sharp(path.join(root, built.image)).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number) => [...data.subarray((128 * info.width + x) * 3, (128 * info.width + x) * 3 + 3)];
    expect(px(100)[1]).toBeGreaterThan(px(100)[0]! + 40);
    expect(Math.abs(px(400)[0]! - px(400)[2]!)).toBeLessThan(20);
  });

  it('spot-the-diff and image-editing from Hugging Face Parquet: two images composed, differences as QA, the edit as a fact', async () => {
    const root = await tmpDir();
    const dir = await tmpDir();
    await picture(path.join(dir, 'a.jpg'), 160, 120, '#ff0000');
    await picture(path.join(dir, 'b.jpg'), 160, 120, '#0000ff');
    const blob = (f: string) => `(SELECT content FROM read_blob('${path.join(dir, f)}'))`;
    await duckdb(`COPY (SELECT [${blob('a.jpg')}, ${blob('b.jpg')}] AS images, [{'data': 'What is different?', 'modality': 'text', 'role': 'user'}, {'data': 'The car is gone.', 'modality': 'text', 'role': 'assistant'}] AS data) TO '${path.join(dir, 'spot_the_diff_from_format_docs.parquet')}' (FORMAT parquet)`);
    await duckdb(`COPY (SELECT 'edit-1' AS uid, {'bytes': ${blob('a.jpg')}, 'path': 'a.jpg'} AS img0, {'bytes': ${blob('b.jpg')}, 'path': 'b.jpg'} AS img1, ['make the sky blue'] AS sents) TO '${path.join(dir, 'image_editing_from_format_docs.parquet')}' (FORMAT parquet)`);
    const { rows } = await records(
      [
        { kind: 'spot-the-diff', paths: [path.join(dir, 'spot_the_diff_from_format_docs.parquet')] },
        { kind: 'image-editing', paths: [path.join(dir, 'image_editing_from_format_docs.parquet')] },
      ],
      { images: root },
    );
    const diff = rows.find((r) => r.image.startsWith('spot-the-diff/pairs/'))!;
    expect(diff).toMatchObject({ width: 320, height: 120 });
    expect(diff.qa.map((q) => [q.question, q.answer])).toEqual([['What is different?', 'The car is gone.']]);
    // Left half the first image (red), right half the second (blue).
    const { data, info } = await sharp(path.join(root, diff.image)).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number) => [...data.subarray((60 * info.width + x) * 3, (60 * info.width + x) * 3 + 3)];
    expect(at(80)[0]).toBeGreaterThan(200);
    expect(at(80)[2]).toBeLessThan(60);
    expect(at(240)[2]).toBeGreaterThan(200);
    expect(at(240)[0]).toBeLessThan(60);
    const edit = rows.find((r) => r.image === 'image-editing/pairs/edit-1.jpg')!;
    expect(edit.facts.map((f) => f.text)).toContain('The left image was edited to make the right one: make the sky blue.');
  });
});
