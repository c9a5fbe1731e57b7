import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tableToIPC, Table, makeVector, vectorFromArray, Struct, Field, Binary, Utf8, makeData, Int32, List, Float64 } from 'apache-arrow';
import { createRequire } from 'node:module';
import type { ImageRecord } from '../src/types.js';
import { countStatement } from '../src/sources/choice-qa.js';
import { parseEntitySentence } from '../src/sources/flickr30k.js';
import { parseMapping } from '../src/sources/custom.js';
import { refForPath } from '../src/sources/records.js';
import { createIngestState, type HandlerContext } from '../src/sources/types.js';
import { SOURCE_KINDS } from '../src/sources/index.js';
import { InstructifyError } from '../src/errors.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, VG_DIR, VQA_ANNOTATIONS, VQA_QUESTIONS, duckdb, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

const FIX = path.join(ROOT, 'tests', 'fixtures', 'sources');
const fx = (name: string) => path.join(FIX, name);
const require = createRequire(import.meta.url);

async function records(sources: Parameters<typeof runPrepare>[0]['sources'], extra: Partial<Parameters<typeof runPrepare>[0]> = {}) {
  const { result, out } = await runPrepare({ sources, format: 'jsonl', ...extra });
  const rows = await readJsonlShards<ImageRecord>(out, result);
  const rejects = readFileSync(path.join(out, 'rejects.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { reason: string; detail: string; file: string; offset: number | null });
  return { result, out, rows, rejects, byImage: new Map(rows.map((r) => [r.image, r])) };
}

function errorOf(p: Promise<unknown>): Promise<InstructifyError> {
  return p.then(
    () => {
      throw new Error('expected an error');
    },
    (e: unknown) => e as InstructifyError,
  );
}

describe('RefCOCO', () => {
  it('puts referring expressions on the COCO boxes of the real image, merged with the category in the tree', async () => {
    const { rows, rejects, byImage } = await records([
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      { kind: 'refcoco', paths: [fx('refcoco_refs_unc_from_format_docs.json'), fx('refcoco_instances_from_format_docs.json')] },
    ]);
    expect(rows).toHaveLength(79);
    const rec = byImage.get('000000397133.jpg')!;
    expect(rec.sources).toEqual(['coco-instances', 'refcoco']);
    const refBoxes = rec.boxes.filter((b) => b.source === 'refcoco');
    // The annotators' raw sentences ("Man in white."), not the tokenised `sent` ("man in white").
    expect(refBoxes.map((b) => b.label).sort()).toEqual(['Man in white.', 'guy on the right', 'knife on left']);
    // Same box as COCO's person 200887 (bbox 388.66,69.92,109.41,277.62 on 640x427).
    const person = rec.boxes.find((b) => b.source === 'coco-instances' && b.sourceId === '200887')!;
    const man = refBoxes.find((b) => b.label === 'Man in white.')!;
    expect(man.x1).toBeCloseTo(person.x1, 6);
    expect(man.y2).toBeCloseTo(person.y2, 6);
    // The tree merges the expressions into the person's node.
    const node = rec.treeNodes.find((n) => n.labels.includes('Man in white.'))!;
    expect(node.labels).toContain('person');
    expect(node.merged).toBeGreaterThanOrEqual(3);
    // A ref whose annotation is unknown is set aside with the reason.
    expect(rejects.some((r) => r.reason === 'bad-record' && /ann_id 999999/.test(r.detail))).toBe(true);
  });

  it('says what it expected when given the wrong file', async () => {
    const err = await errorOf(runPrepare({ sources: [{ kind: 'refcoco', paths: [fx('tallyqa_train_from_format_docs.json')] }], format: 'jsonl' }));
    expect(err.code).toBe('E_WRONG_KIND');
    expect(err.message).toMatch(/RefCOCO refs records need the keys image_id, sentences; the first record has image, answer/);
    expect(err.file).toContain('tallyqa_train');
  });
});

describe('TextVQA and TextCaps', () => {
  it('joins questions, OCR tokens and captions of one Open Images photo', async () => {
    const { rows } = await records([
      { kind: 'textvqa', paths: [fx('TextVQA_0.5.1_train_from_format_docs.json'), fx('TextVQA_Rosetta_OCR_v0.2_train_from_format_docs.json')] },
      { kind: 'textcaps', paths: [fx('TextCaps_0.1_train_from_format_docs.json')] },
    ]);
    expect(rows).toHaveLength(1);
    const r = rows[0]!;
    expect(r.image).toBe('train_images/003a8ae2ef43b901.jpg');
    expect([r.width, r.height]).toEqual([1024, 664]);
    expect(r.qa.map((q) => [q.question, q.answer])).toEqual([
      ['what is the brand of this camera?', 'dakota'],
      ['what does the small white text spell?', 'copenhagen'],
    ]);
    expect(r.qa[0]!.answers).toContain('dakota digital');
    expect(r.facts.map((f) => f.text)).toEqual(['The text in the image reads: DAKOTA DIGITAL copenhagen.']);
    expect(r.captions.map((c) => c.text)).toEqual(['A Dakota Digital camera sits on a wooden desk.']);
  });
});

describe('OK-VQA, A-OKVQA, VQA-E', () => {
  it('A-OKVQA: the right choice with the others as "(not ...)", rationales as facts, on the real COCO image', async () => {
    const { byImage } = await records([
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'aokvqa', paths: [fx('aokvqa_v1p0_val_from_format_docs.json')] },
    ]);
    const r = byImage.get('000000397133.jpg')!;
    expect(r.captions).toHaveLength(5);
    // The test-split record (no answer) adds nothing.
    expect(r.qa).toHaveLength(1);
    expect(r.qa[0]!.answer).toBe('cut food (not eat, not wash it, not throw it)');
    expect(r.qa[0]!.answers).toEqual(['cut food', 'cook']);
    expect(r.facts.map((f) => f.text)).toEqual(['The man is standing by a table with food and a knife on it.', 'People use knives to cut food.']);
  });

  it('OK-VQA reads the VQA v2 format; VQA-E adds its explanation to the same COCO image', async () => {
    const vqaE = JSON.parse(readFileSync(fx('VQA-E_train_set_from_format_docs.json'), 'utf8')) as { img_id: number }[];
    const { rows } = await records([
      { kind: 'okvqa', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] },
      { kind: 'vqa-e', paths: [fx('VQA-E_train_set_from_format_docs.json')] },
    ]);
    const r = rows.find((x) => x.ref === `coco:${vqaE[0]!.img_id}`)!;
    expect(r.sources).toEqual(['okvqa', 'vqa-e']);
    expect(r.qa.some((q) => q.source === 'okvqa')).toBe(true);
    const e = r.qa.find((q) => q.source === 'vqa-e')!;
    expect([e.question, e.answer]).toEqual(['What color is the sky?', 'blue']);
    expect(r.facts).toEqual([{ text: 'The sky is clear and blue over the field.', source: 'vqa-e' }]);
  });
});

describe('Visual7W, TallyQA, ScienceQA', () => {
  it('Visual7W: distractors after the answer, pointing boxes in VG pixels, on the VG image (and its file)', async () => {
    const { byImage } = await records([
      { kind: 'vg', paths: [VG_DIR] },
      { kind: 'visual7w', paths: [fx('dataset_v7w_telling_from_format_docs.json'), fx('dataset_v7w_pointing_from_format_docs.json')] },
    ]);
    const vgImage = JSON.parse(readFileSync(path.join(VG_DIR, 'image_data.json'), 'utf8')) as { image_id?: number; id?: number; width: number; height: number; url: string }[];
    const one = vgImage.find((i) => (i.image_id ?? i.id) === 1)!;
    const r = [...byImage.values()].find((x) => x.ref === 'vg:1')!;
    // The VG catalog names the file, not Visual7W's v7w_1.jpg.
    expect(r.image).toBe(one.url.split('/').slice(-2).join('/'));
    const q = r.qa.filter((x) => x.source === 'visual7w');
    expect(q.map((x) => x.answer)).toEqual(['A tree. (not A car., not A dog., not A bus.)', 'clock (not sign, not shade, not man)']);
    const clock = r.boxes.find((b) => b.source === 'visual7w' && b.label === 'clock')!;
    expect(clock.x1).toBeCloseTo(421 / one.width, 5);
    expect(clock.y2).toBeCloseTo((91 + 339) / one.height, 5);
  });

  it('TallyQA: counts become statements, images alias to COCO and VG by path, a bad answer is set aside', async () => {
    const { rows, rejects } = await records([
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'tallyqa', paths: [fx('tallyqa_train_from_format_docs.json')] },
    ]);
    const coco = rows.find((r) => r.ref === 'coco:397133')!;
    expect(coco.image).toBe('000000397133.jpg');
    expect(coco.facts.map((f) => f.text)).toEqual(['There are 2 people.']);
    expect(coco.qa[0]).toMatchObject({ question: 'How many people are in the photo?', answer: '2' });
    const vg = rows.find((r) => r.ref === 'vg:1')!;
    expect(vg.image).toBe('VG_100K/1.jpg');
    expect(vg.facts.map((f) => f.text)).toEqual(['There is one clock.']);
    expect(rejects.filter((r) => r.reason === 'bad-record').map((r) => r.detail)).toEqual(['TallyQA record 2: needs image, question and a numeric answer']);
  });

  it('countStatement handles the usual question shapes', () => {
    expect(countStatement('How many dogs are in the picture?', 3)).toBe('There are 3 dogs.');
    expect(countStatement('how many giraffes can be seen', 0)).toBe('There are no giraffes.');
    expect(countStatement('How many people?', 1)).toBe('There is one person.');
    expect(countStatement('What color is the bus?', 2)).toBeNull();
  });

  it('ScienceQA: problems with images only, choice with distractors, hint and solution as facts', async () => {
    const { rows } = await records([{ kind: 'scienceqa', paths: [fx('scienceqa_problems_from_format_docs.json')] }]);
    expect(rows.map((r) => r.image).sort()).toEqual(['train/5/image.png', 'val/12/image.png']);
    const p5 = rows.find((r) => r.image === 'train/5/image.png')!;
    expect(p5.qa[0]!.answer).toBe('West Virginia (not Louisiana, not Arizona, not Oklahoma)');
    expect(p5.facts.map((f) => f.text)).toEqual(['To find the answer, look at the compass rose. West Virginia is farthest north.']);
    const p12 = rows.find((r) => r.image === 'val/12/image.png')!;
    expect(p12.facts.map((f) => f.text)).toEqual(['Read the text about an animal.\nTree frogs live in rain forests.', 'Look at the picture of the tree frog.']);
  });
});

describe('DocVQA, InfographicVQA, ChartQA', () => {
  it('reads each format onto its own image paths; a record without an image is set aside', async () => {
    const { rows, rejects } = await records([
      { kind: 'docvqa', paths: [fx('docvqa_train_v1.0_from_format_docs.json')] },
      { kind: 'infovqa', paths: [fx('infographicsVQA_train_v1.0_from_format_docs.json')] },
      { kind: 'chartqa', paths: [fx('chartqa_train_human_from_format_docs.json')] },
    ]);
    const by = new Map(rows.map((r) => [r.image, r]));
    expect([...by.keys()].sort()).toEqual(['documents/xnbl0037_1.png', 'infographicsvqa_images/20471.jpeg', 'png/41699051005347.png']);
    expect(by.get('documents/xnbl0037_1.png')!.qa[0]).toMatchObject({ question: 'what is the date mentioned in this letter?', answer: '1/8/93' });
    expect(by.get('infographicsvqa_images/20471.jpeg')!.qa[0]!.answers).toEqual(['57%', '57']);
    expect(by.get('png/41699051005347.png')!.qa[0]).toMatchObject({ answer: '14' });
    expect(rejects.map((r) => r.detail)).toEqual(['ChartQA record 1: needs an image, a question and an answer']);
  });
});

describe('Flickr30k and Localized Narratives', () => {
  it('Flickr30k captions from the token file and the Karpathy JSON; Entities boxes named by their phrases', async () => {
    const { rows, rejects } = await records([
      { kind: 'flickr30k', paths: [fx('flickr30k_results_20130124_from_format_docs.token'), fx('dataset_flickr30k_from_format_docs.json'), fx('flickr30k_entities_from_format_docs')] },
    ]);
    const by = new Map(rows.map((r) => [r.image, r]));
    const r = by.get('1000092795.jpg')!;
    expect([r.width, r.height]).toEqual([500, 333]);
    // Two captions from the token file, two from the Entities sentences (markup removed): the first is in both.
    const texts = r.captions.map((c) => c.text);
    expect(texts.filter((t) => t === 'Two young guys with shaggy hair look at their hands while hanging out in the yard .')).toHaveLength(2);
    expect(texts).toContain('Two young , White males are outside near many bushes .');
    expect(texts.some((t) => t.includes('[/EN#'))).toBe(false);
    expect(r.captions).toHaveLength(4);
    const labels = r.boxes.map((b) => b.label).sort();
    expect(labels).toEqual(['shaggy hair', 'two young , white males', 'two young guys']);
    const guys = r.boxes.find((b) => b.label === 'two young guys')!;
    expect([guys.x1, guys.y1, guys.x2]).toEqual([100 / 500, 50 / 333, 300 / 500]);
    // One node for the two phrases of entity 1.
    expect(r.treeNodes.some((n) => n.labels.includes('two young guys') && n.labels.includes('two young , white males'))).toBe(true);
    expect(by.get('1001465944.jpg')!.captions[0]!.text).toBe('A dog runs across the grass.');
    const details = rejects.map((x) => x.detail);
    expect(details).toContain('line 3 is not "<image>#<n><TAB><caption>"');
    expect(details).toContain('entity 9 has a box but no phrase in 1000092795.txt');
  });

  it('parses Entities markup', () => {
    expect(parseEntitySentence('[/EN#18/people A child] in [/EN#19/clothing a pink dress] .')).toEqual({
      text: 'A child in a pink dress .',
      phrases: [
        { id: '18', type: 'people', phrase: 'A child' },
        { id: '19', type: 'clothing', phrase: 'a pink dress' },
      ],
    });
  });

  it('Localized Narratives (JSON Lines): COCO narratives join the COCO image, Open Images ones stand alone', async () => {
    const { rows } = await records([
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'localized-narratives', paths: [fx('coco_val2017_localized_narratives_from_format_docs.jsonl')] },
    ]);
    const coco = rows.find((r) => r.image === '000000397133.jpg')!;
    expect(coco.captions).toHaveLength(6);
    expect(coco.captions.at(-1)).toEqual({ text: 'In this image I can see a man standing in a kitchen, in front of him there is a table with food.', source: 'localized-narratives' });
    const oi = rows.find((r) => r.ref === 'openimages:0000c64e1253d68f')!;
    expect(oi.image).toBe('0000c64e1253d68f.jpg');
  });

  it('a bad JSON line is named by line and byte', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'narratives.jsonl');
    writeFileSync(file, '{"dataset_id":"mscoco_val2017","image_id":"1","caption":"ok"}\n{"dataset_id": broken\n');
    const err = await errorOf(runPrepare({ sources: [{ kind: 'localized-narratives', paths: [file] }], format: 'jsonl' }));
    expect(err.code).toBe('E_JSON_SYNTAX');
    expect(err.message).toMatch(/line 2 is not JSON/);
    expect(err.offset).toBe(62);
    expect(err.file).toBe(file);
  });
});

describe('LLaVA conversations as a source', () => {
  it('turns become QA (short answers) and facts (long ones) on the COCO image; text-only samples are skipped', async () => {
    const { rows } = await records([
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'llava', paths: [fx('llava_instruct_from_format_docs.json')] },
    ]);
    expect(rows).toHaveLength(79);
    const r = rows.find((x) => x.image === '000000397133.jpg')!;
    expect(r.qa).toEqual([{ question: 'What is the man holding?', answer: 'The man is holding a knife.', answers: ['The man is holding a knife.'], source: 'llava' }]);
    expect(r.facts.map((f) => f.text)).toEqual([
      'The image shows a man in a kitchen preparing food at a table. On the table there are bowls, a bottle, broccoli and a knife.',
      'The room has cabinets and an oven behind him, and the light comes from the left side of the picture.',
    ]);
  });
});

/** A Parquet file written with parquet-wasm from an Arrow table, as Hugging Face datasets store them. */
function writeParquet(file: string, table: Table): void {
  const pw = require('parquet-wasm/node') as typeof import('parquet-wasm/node');
  const props = new pw.WriterPropertiesBuilder().setMaxRowGroupSize(2).build();
  writeFileSync(file, pw.writeParquet(pw.Table.fromIPCStream(tableToIPC(table, 'stream')), props));
}

function imageColumn(items: { bytes: Uint8Array | null; path: string | null }[]) {
  const type = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);
  const bytes = vectorFromArray(items.map((i) => i.bytes), new Binary());
  const paths = vectorFromArray(items.map((i) => i.path), new Utf8());
  return makeVector(makeData({ type, length: items.length, nullCount: 0, children: [bytes.data[0]!, paths.data[0]!] }));
}

describe('Hugging Face Parquet', () => {
  it('writes embedded images once under the image root, sizes them with sharp, and reads the usual columns', async () => {
    const dir = await tmpDir();
    const images = path.join(dir, 'images');
    mkdirSync(images);
    const jpeg = readFileSync(path.join(COCO_IMAGES, '000000397133.jpg'));
    const other = readFileSync(path.join(COCO_IMAGES, '000000349860.jpg'));
    const table = new Table({
      image: imageColumn([
        { bytes: jpeg, path: '000000397133.jpg' },
        { bytes: other, path: null },
        { bytes: jpeg, path: '000000397133.jpg' },
      ]),
      caption: vectorFromArray(['A man in a kitchen.', 'A skateboarder in the air.', 'Food on a table.'], new Utf8()),
      question: vectorFromArray(['Where is the man?', 'What is he riding?', null], new Utf8()),
      answer: vectorFromArray(['in a kitchen', 'a skateboard', null], new Utf8()),
    });
    const file = path.join(dir, 'train-00000-of-00001.parquet');
    writeParquet(file, table);
    const { rows } = await records([{ kind: 'hf-parquet', paths: [file] }], { images });
    // The same bytes twice are one image, with both rows' information.
    expect(rows).toHaveLength(2);
    const written = readdirSync(path.join(images, 'hf')).sort();
    expect(written).toHaveLength(2);
    expect(written.every((n) => n.endsWith('.jpg'))).toBe(true);
    const man = rows.find((r) => r.captions.some((c) => c.text === 'A man in a kitchen.'))!;
    expect(man.captions.map((c) => c.text)).toEqual(['A man in a kitchen.', 'Food on a table.']);
    expect([man.width, man.height]).toEqual([640, 427]);
    expect(man.qa.map((q) => [q.question, q.answer])).toEqual([['Where is the man?', 'in a kitchen']]);
    expect(readFileSync(path.join(images, man.image)).equals(jpeg)).toBe(true);
    // A second run finds the images already there and gives the same records.
    const again = await records([{ kind: 'hf-parquet', paths: [file] }], { images });
    expect(again.rows.map((r) => r.image).sort()).toEqual(rows.map((r) => r.image).sort());
  });

  it('needs --images to write embedded images to', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'x.parquet');
    writeParquet(file, new Table({ image: imageColumn([{ bytes: readFileSync(path.join(COCO_IMAGES, '000000397133.jpg')), path: null }]), caption: vectorFromArray(['x'], new Utf8()) }));
    const err = await errorOf(runPrepare({ sources: [{ kind: 'hf-parquet', paths: [file] }], format: 'jsonl' }));
    expect(err.message).toMatch(/give --images/);
  });

  it('a file that is not Parquet is named', async () => {
    const err = await errorOf(runPrepare({ sources: [{ kind: 'hf-parquet', paths: [COCO_CAPTIONS] }], format: 'jsonl' }));
    expect(err.code).toBe('E_PARQUET');
    expect(err.file).toBe(COCO_CAPTIONS);
  });
});

describe('your own data with a mapping file', () => {
  const birds = {
    family: 'birds',
    image: 'file',
    captions: ['caption'],
    facts: 'note',
    boxes: { label: 'species', x1: 'xmin', y1: 'ymin', x2: 'xmax', y2: 'ymax' },
  };

  it('CSV, one box per row, over real images sized with sharp', async () => {
    const dir = await tmpDir();
    const images = path.join(dir, 'images');
    mkdirSync(images);
    copyFileSync(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(images, 'feeder-1.jpg'));
    const mapping = path.join(dir, 'birds.mapping.json');
    writeFileSync(mapping, JSON.stringify(birds));
    const csv = path.join(dir, 'birds.csv');
    writeFileSync(
      csv,
      'file,caption,note,species,xmin,ymin,xmax,ymax\n' +
        'feeder-1.jpg,Two finches at a feeder.,Photographed in March,house finch,0,0,320,213.5\n' +
        'feeder-1.jpg,,,"goldfinch, american",320,213.5,640,427\n' +
        'feeder-1.jpg,,,sparrow,10,10,,20\n' +
        'feeder-1.jpg,Seen again at noon.,,,,,,\n',
    );
    const { rows, rejects } = await records([{ kind: 'custom', paths: [mapping, csv] }], { images });
    expect(rows).toHaveLength(1);
    const r = rows[0]!;
    expect(r.image).toBe('feeder-1.jpg');
    expect([r.width, r.height]).toEqual([640, 427]);
    expect(r.captions.map((c) => c.text)).toEqual(['Two finches at a feeder.', 'Seen again at noon.']);
    expect(r.facts.map((c) => c.text)).toEqual(['Photographed in March.']);
    expect(r.boxes.map((b) => [b.label, b.x1, b.y1, b.x2, b.y2])).toEqual([
      ['house finch', 0, 0, 0.5, 0.5],
      ['goldfinch, american', 0.5, 0.5, 1, 1],
    ]);
    expect(r.tree).toContain('house finch');
    expect(rejects.map((x) => x.reason)).toEqual(['bad-box']);
    expect(rejects[0]!.detail).toMatch(/"sparrow"/);
  });

  it('Parquet with a boxes list in normalised cx,cy,w,h and QA with choices, read back by DuckDB', async () => {
    const dir = await tmpDir();
    const mapping = path.join(dir, 'x.mapping.json');
    writeFileSync(
      mapping,
      JSON.stringify({
        family: 'xray',
        image: 'meta.path',
        width: 'meta.w',
        height: 'meta.h',
        qa: { question: 'q', answer: 'a', choices: 'options' },
        boxes: { list: 'findings', label: 'name', bbox: 'box', format: 'cxcywh', units: 'normalized' },
      }),
    );
    const file = path.join(dir, 'scans.parquet');
    const metaType = new Struct([new Field('path', new Utf8()), new Field('w', new Int32()), new Field('h', new Int32())]);
    const findingType = new List(new Field('item', new Struct([new Field('name', new Utf8()), new Field('box', new List(new Field('item', new Float64())))])));
    const table = new Table({
      meta: vectorFromArray([{ path: 'scans/001.png', w: 512, h: 256 }, { path: 'scans/002.png', w: 512, h: 512 }], metaType),
      q: vectorFromArray(['Is there a nodule?', 'Is the lung clear?'], new Utf8()),
      a: vectorFromArray(['yes', 'yes'], new Utf8()),
      options: vectorFromArray([['yes', 'no'], ['yes', 'no', 'unclear']], new List(new Field('item', new Utf8()))),
      findings: vectorFromArray([[{ name: 'nodule', box: [0.5, 0.5, 0.2, 0.1] }], []], findingType),
    });
    writeParquet(file, table);
    // The same mapping reads JSON Lines too: one more record for the first scan.
    const jsonl = path.join(dir, 'scans.jsonl');
    writeFileSync(jsonl, JSON.stringify({ meta: { path: 'scans/001.png', w: 512, h: 256 }, q: 'Where?', a: 'left', findings: [] }) + '\n');
    const out = await tmpDir();
    await runPrepare({ sources: [{ kind: 'custom', paths: [mapping, file, jsonl] }], out, format: 'parquet' });
    const rows = await duckdb<{ image: string; width: number; qa: string; boxes: string }>(
      `select image, width, to_json(qa) as qa, to_json(boxes) as boxes from read_parquet('${out}/part-*.parquet') order by image`,
    );
    expect(rows.map((r) => r.image)).toEqual(['scans/001.png', 'scans/002.png']);
    const qa1 = JSON.parse(rows[0]!.qa) as { question: string; answer: string }[];
    expect(qa1.map((q) => q.answer)).toEqual(['yes (not no)', 'left']);
    const boxes1 = JSON.parse(rows[0]!.boxes) as { label: string; x1: number; y1: number; x2: number; y2: number }[];
    expect(boxes1).toHaveLength(1);
    expect(boxes1[0]!.label).toBe('nodule');
    expect(boxes1[0]!.x1).toBeCloseTo(0.4, 5);
    expect(boxes1[0]!.y1).toBeCloseTo(0.45, 5);
    expect(boxes1[0]!.x2).toBeCloseTo(0.6, 5);
    expect(boxes1[0]!.y2).toBeCloseTo(0.55, 5);
  });

  it('a malformed CSV is an error naming the file and line', async () => {
    const dir = await tmpDir();
    const mapping = path.join(dir, 'b.mapping.json');
    writeFileSync(mapping, JSON.stringify(birds));
    const csv = path.join(dir, 'bad.csv');
    writeFileSync(csv, 'file,caption\na.jpg,ok\nb.jpg,"unclosed\n');
    const err = await errorOf(runPrepare({ sources: [{ kind: 'custom', paths: [mapping, csv] }], format: 'jsonl' }));
    expect(err.code).toBe('E_CSV_SYNTAX');
    expect(err.file).toBe(csv);
    expect(err.message).toMatch(/line \d/);
  });

  it('mapping mistakes are named before any data is read', () => {
    expect(() => parseMapping('{"image": "f", "captions": "c", "boxs": {}}', 'm.mapping.json')).toThrow(/unknown key "boxs"/);
    expect(() => parseMapping('{"captions": "c"}', 'm.mapping.json')).toThrow(/"image" .* is required/);
    expect(() => parseMapping('{"image": "f"}', 'm.mapping.json')).toThrow(/maps nothing/);
    expect(() => parseMapping('{"image": "f", "boxes": {"label": "l", "bbox": "b", "units": "percent"}}', 'm.mapping.json')).toThrow(/units/);
    expect(() => parseMapping('{"image": "f", "boxes": {"label": "l"}}', 'm.mapping.json')).toThrow(/needs "bbox"/);
  });
});

describe('aliases by path', () => {
  const ctx = { source: 's', family: 'x', state: createIngestState(), cocoNaming: '2017', images: null, sink: { emit: () => {}, reject: () => {} } } as HandlerContext;
  it('COCO, Visual Genome / GQA and TextVQA paths join those datasets; others keep their own identity', () => {
    expect(refForPath('coco/train2017/000000033471.jpg', 'llava', ctx).ref).toBe('coco:33471');
    expect(refForPath('train2014/COCO_train2014_000000000009.jpg', 'x', ctx).ref).toBe('coco:9');
    expect(refForPath('vg/VG_100K_2/2345.jpg', 'x', ctx).ref).toBe('vg:2345');
    expect(refForPath('gqa/images/2354786.jpg', 'x', ctx).ref).toBe('vg:2354786');
    expect(refForPath('textvqa/train_images/0054c91397f2fe05.jpg', 'x', ctx).ref).toBe('textvqa:0054c91397f2fe05');
    expect(refForPath('ocr_vqa/images/123456789012.jpg', 'llava', ctx).ref).toBe('llava:ocr_vqa/images/123456789012.jpg');
  });
});

describe('instructify sources', () => {
  it('lists every loader with what it expects', () => {
    for (const k of ['refcoco', 'refcoco+', 'refcocog', 'textvqa', 'textcaps', 'okvqa', 'aokvqa', 'visual7w', 'tallyqa', 'vqa-e', 'scienceqa', 'docvqa', 'infovqa', 'chartqa', 'flickr30k', 'localized-narratives', 'llava', 'hf-parquet', 'custom']) {
      expect(SOURCE_KINDS.get(k)?.expects.length).toBeGreaterThan(10);
    }
  });
});

