import { describe, expect, it } from 'vitest';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Field, List, Schema, Utf8, tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow';
import { TableBuilder } from '../src/write/columns.js';
import { parquetRowGroups } from '../src/write/parquet-read.js';
import { camel, columnValues, plainValue, tableRows } from '../src/write/plain.js';
import { COCO_CAPTIONS, COCO_INSTANCES, VG_DIR, runPrepare } from './helpers.js';

/** Rows into one table through the builder the shard writers use. */
function tableOf(schema: Schema, rows: readonly object[]) {
  const b = new TableBuilder(schema);
  for (const r of rows) b.append(r);
  return b.take();
}

describe('Arrow rows as plain values, column by column', () => {
  it('equals the row-by-row conversion on real prepared shards (masks, tree nodes, nested lists), at any chunk size', async () => {
    const { out } = await runPrepare({
      sources: [
        { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
        { kind: 'coco-instances', paths: [COCO_INSTANCES] },
        { kind: 'vg', paths: [VG_DIR] },
      ],
    });
    const shards = (await readdir(out)).filter((n) => n.endsWith('.parquet'));
    let rows = 0;
    let masks = 0;
    for (const shard of shards) {
      for await (const table of parquetRowGroups(path.join(out, shard))) {
        const expected = Array.from({ length: table.numRows }, (_, i) => plainValue(table.get(i), camel));
        for (const chunk of [1, 7, 64, 100_000]) expect([...tableRows(table, camel, chunk)]).toEqual(expected);
        rows += expected.length;
        for (const r of expected as { boxes: { mask: unknown }[] }[]) masks += r.boxes.filter((b) => b.mask !== null).length;
      }
    }
    expect(rows).toBeGreaterThan(79);
    // The nested, nullable mask struct was really there to convert.
    expect(masks).toBeGreaterThan(100);
  });

  it('keeps nulls, booleans, 64-bit integers and UTF-8 text of a sliced column', () => {
    const table = tableFromIPC(
      tableToIPC(
        tableFromArrays({
          text: ['a', 'é', '日本', 'x'],
          big: new BigInt64Array([1n, 2n, 3n, 4n]),
          f: new Float32Array([0.5, 1.5, 2.5, 3.5]),
        }),
      ),
    );
    const data = table.batches[0]!.data;
    expect(columnValues(data.slice(1, 2))).toEqual([
      { text: 'é', big: 2, f: 1.5 },
      { text: '日本', big: 3, f: 2.5 },
    ]);
    const withNulls = tableFromIPC(tableToIPC(tableFromArrays({ n: [1, null, 3] as (number | null)[], b: [true, false, null] as (boolean | null)[] })));
    expect([...tableRows(withNulls)]).toEqual([0, 1, 2].map((i) => plainValue(withNulls.get(i))));
    expect([...tableRows(withNulls)]).toEqual([
      { n: 1, b: true },
      { n: null, b: false },
      { n: 3, b: null },
    ]);
  });
});

describe('Arrow columns built from plain objects', () => {
  it('writes every string as its UTF-8 bytes, short ASCII ones by the fast loop and the rest by Buffer.write', () => {
    const texts = [
      'person',
      '',
      'a'.repeat(32),
      'a'.repeat(33),
      'a'.repeat(31) + 'é',
      'é' + 'a'.repeat(31),
      'café',
      '日本語のラベル',
      'a cup ☕ and 😀',
      'tab\tand nul \u0000',
      'z'.repeat(500),
    ];
    const schema = new Schema([new Field('label', new Utf8(), true), new Field('names', new List(new Field('item', new Utf8(), true)), true)]);
    const rows = texts.map((t, i) => ({ label: t, names: [t, texts[(i + 1) % texts.length]!] }));
    rows.push({ label: null as unknown as string, names: [] });
    // Read back through Arrow's own IPC reader, not through our builder.
    const table = tableFromIPC(tableToIPC(tableOf(schema, rows)));
    const labels = [...table.getChild('label')!].map((v) => v as string | null);
    expect(labels).toEqual([...texts, null]);
    expect(table.get(6)!.toJSON().names.toJSON()).toEqual(['café', '日本語のラベル']);
    // A lone surrogate cannot be UTF-8: it becomes U+FFFD, on either path.
    const odd = tableFromIPC(tableToIPC(tableOf(schema, [{ label: 'x\ud800', names: ['\udfff' + 'y'.repeat(40)] }])));
    expect(odd.get(0)!.toJSON().label).toBe('x\ufffd');
    expect(odd.get(0)!.toJSON().names.toJSON()).toEqual(['\ufffd' + 'y'.repeat(40)]);
  });

  it('a table builder hands over each row group whole: later rows never change a table already taken', () => {
    const schema = new Schema([new Field('label', new Utf8(), true), new Field('names', new List(new Field('item', new Utf8(), false)), false)]);
    const b = new TableBuilder(schema);
    const row = (i: number) => ({ label: `label ${i} ${'é'.repeat(i % 3)}`, names: Array.from({ length: i % 4 }, (_, k) => `n${i}.${k}`) });
    for (let i = 0; i < 3000; i++) b.append(row(i));
    expect(b.length).toBe(3000);
    const first = b.take();
    expect(b.length).toBe(0);
    // Enough rows after it that every buffer would have been written over if it were shared.
    for (let i = 3000; i < 9000; i++) b.append(row(i));
    const second = b.take();
    const read = (t: ReturnType<TableBuilder['take']>) => tableFromIPC(tableToIPC(t)).toArray().map((r) => ({ label: r.label as string, names: [...r.names] as string[] }));
    expect(read(first)).toEqual(Array.from({ length: 3000 }, (_, i) => row(i)));
    expect(read(second)).toEqual(Array.from({ length: 6000 }, (_, i) => row(3000 + i)));
    // clear() drops what was appended.
    b.append(row(1));
    b.clear();
    b.append(row(2));
    expect(read(b.take())).toEqual([row(2)]);
  });
});
