import { describe, expect, it } from 'vitest';
import { ByteWriter, FragmentCodec } from '../src/join/fragment-codec.js';
import { rng } from '../src/util/random.js';
import type { Fragment, RawBox } from '../src/types.js';

function box(r: () => number, i: number): RawBox {
  const kind = r();
  return {
    label: kind < 0.2 ? null : `label ${i} é`,
    categoryId: kind < 0.2 ? Math.floor(r() * 90) : kind < 0.25 ? NaN : null,
    x: kind < 0.3 ? NaN : r() * 600,
    y: r() * 400,
    w: r() * 100,
    h: r() * 100,
    attributes: r() < 0.5 ? [] : ['green', 'tall\nline'],
    relations: r() < 0.5 ? [] : ['wears the "sneakers"'],
    mask:
      r() < 0.3
        ? null
        : r() < 0.5
          ? { format: 'rle', polygons: null, rle: 'a1b2\\c', height: 480, width: 640 }
          : { format: 'polygon', polygons: `[[${r().toFixed(2)}, 2.50,\n 3e2, -4]]`, rle: null, height: 0, width: 0 },
    iscrowd: r() < 0.1,
    sourceId: r() < 0.5 ? null : String(i),
  };
}

function fragment(r: () => number, i: number): Fragment {
  return {
    ref: `coco:${i}`,
    source: r() < 0.5 ? 'coco-instances' : 'vg',
    family: 'coco',
    catalog: r() < 0.3,
    path: r() < 0.5 ? null : `dir/${i}.jpg`,
    width: r() < 0.5 ? null : 640,
    height: r() < 0.5 ? null : 480,
    requiresCatalogFrom: r() < 0.5 ? null : 'coco-instances',
    captions: r() < 0.5 ? [] : [`a caption with a control char \u0001 and a nul \u0000`, 'naïve café ☕ 😀', 'a lone surrogate \ud83d here', 'x'.repeat(40) + 'é'],
    facts: r() < 0.7 ? [] : [`There are ${Math.floor(r() * 9)} things.`],
    labelSentence: r() < 0.2,
    boxes: Array.from({ length: Math.floor(r() * 4) }, (_, k) => box(r, i * 10 + k)),
    qa: r() < 0.5 ? [] : [{ id: String(i), question: 'Why?', answer: null, answers: ['a', 'b'] }],
    regions: r() < 0.5 ? [] : [{ text: 'region', x: 1, y: 2, w: 3, h: NaN }],
    absentCategoryIds: r() < 0.5 ? [] : [2, 3],
    uncountedCategoryIds: r() < 0.5 ? [] : [4],
    prov: { file: `/data/file-${i % 3}.json`, offset: i * 100 },
  };
}

describe('fragment codec', () => {
  it('round-trips random fragments exactly: NaN, nulls, control characters, UTF-8, lone surrogates', () => {
    const r = rng(3);
    const enc = new FragmentCodec();
    const frags = Array.from({ length: 500 }, (_, i) => fragment(r, i));
    const records = frags.map((f, i) => enc.encode(f, i * 7));
    // A decoder in another thread only has the tables.
    const dec = new FragmentCodec(JSON.parse(JSON.stringify(enc.tables())));
    for (const [i, rec] of records.entries()) expect(dec.decode(rec)).toEqual(frags[i]);
    expect(frags.some((f) => f.captions.some((c) => c.includes('\ud83d here')))).toBe(true);
    expect(frags.some((f) => f.boxes.some((b) => Number.isNaN(b.categoryId)))).toBe(true);
  });

  it('reads back records appended one after another, with their read order', () => {
    const r = rng(4);
    const enc = new FragmentCodec();
    const frags = Array.from({ length: 200 }, (_, i) => fragment(r, i));
    // A small first buffer: it has to grow many times on the way.
    const out = new ByteWriter(16);
    frags.forEach((f, i) => enc.encodeInto(out, f, 2 ** 40 + i));
    // What reaches a worker thread is a plain Uint8Array at some offset in a larger buffer.
    const copy = new Uint8Array(out.length + 3);
    copy.set(out.bytes(), 3);
    const back = [...enc.decodeAll(copy.subarray(3))];
    expect(back.map((d) => d.order)).toEqual(frags.map((_, i) => 2 ** 40 + i));
    expect(back.map((d) => d.fragment)).toEqual(frags);
  });

  it('stores text that UTF-8 cannot carry (lone surrogates) whole, however much it grows as JSON', () => {
    const enc = new FragmentCodec();
    const f = fragment(rng(5), 5);
    // Each lone surrogate is 6 characters of JSON: far more than the 3 bytes per character first set aside.
    f.captions = ['\ud800'.repeat(60), `é${'\udfff'.repeat(40)}é ☕`, '\u0001'.repeat(50) + '\ud83d'];
    const out = new ByteWriter(16);
    enc.encodeInto(out, f, 1);
    enc.encodeInto(out, f, 2);
    const back = [...enc.decodeAll(out.bytes())];
    expect(back.map((d) => d.order)).toEqual([1, 2]);
    for (const d of back) expect(d.fragment.captions).toEqual(f.captions);
    // Escapes and multi-byte characters together can need more than 3 bytes a character:
    // whatever room the buffer happens to have when such a string comes, all of it is kept.
    const mixed = '\ud800'.repeat(10) + 'é'.repeat(20);
    const g = { ...f, captions: [mixed] };
    for (let capacity = 16; capacity < 700; capacity++) {
      const w = new ByteWriter(capacity);
      enc.encodeInto(w, g);
      expect(enc.decode(w.bytes()).captions).toEqual([mixed]);
    }
  });

  it('keeps polygon text as the dataset wrote it, and says where a record is cut short', () => {
    const enc = new FragmentCodec();
    const f = fragment(rng(1), 1);
    f.boxes = [{ ...box(rng(2), 1), mask: { format: 'polygon', polygons: '[[1.50, 2]]', rle: null, height: 0, width: 0 } }];
    const rec = enc.encode(f);
    expect(Buffer.from(rec).includes('[[1.50, 2]]')).toBe(true);
    expect(enc.decode(rec).boxes[0]!.mask!.polygons).toBe('[[1.50, 2]]');
    // A frame that claims more bytes than its record holds is an error, not a silent misread.
    const bad = Buffer.from(rec);
    bad.writeUInt32LE(bad.readUInt32LE(0) - 1, 0);
    expect(() => enc.decode(bad)).toThrow(/its frame says/);
  });

  it('scans frame heads (start, read order, ref) without decoding, and decodes any record from its start', () => {
    const r = rng(6);
    const enc = new FragmentCodec();
    const frags = Array.from({ length: 300 }, (_, i) => fragment(r, i));
    const out = new ByteWriter(16);
    frags.forEach((f, i) => enc.encodeInto(out, f, 5000 - i));
    const bytes = out.bytes();
    const heads: { start: number; order: number; ref: string }[] = [];
    enc.scan(bytes, heads, (into, start, order, ref) => into.push({ start, order, ref }));
    expect(heads.map((h) => h.ref)).toEqual(frags.map((f) => f.ref));
    expect(heads.map((h) => h.order)).toEqual(frags.map((_, i) => 5000 - i));
    expect(heads[0]!.start).toBe(0);
    // Out of order, as grouping decodes them: each start gives its own fragment back.
    for (const i of [299, 0, 150, 7, 298]) {
      const d = enc.decodeAt(bytes, heads[i]!.start);
      expect(d.order).toBe(5000 - i);
      expect(d.fragment).toEqual(frags[i]);
    }
    // A buffer cut inside its last record is an error, not a short scan.
    expect(() => enc.scan(bytes.subarray(0, bytes.length - 5), null, () => {})).toThrow(/frame runs to byte/);
  });
});
