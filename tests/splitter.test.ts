import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createJsonSplitter, type JsonValue } from '../src/read/json-splitter.js';
import { InstructifyError } from '../src/errors.js';
import { SHARED } from './helpers.js';

function split(text: string | Buffer, chunk = 1 << 16, skip?: string[]): JsonValue[] {
  const out: JsonValue[] = [];
  const s = createJsonSplitter({ file: 'test.json', skipKeys: skip ? new Set(skip) : undefined }, (v) => out.push(v));
  const buf = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (let i = 0; i < buf.length; i += chunk) s.push(buf.subarray(i, i + chunk));
  s.end();
  return out;
}

function splitError(text: string, chunk = 1 << 16): InstructifyError {
  try {
    split(text, chunk);
  } catch (err) {
    expect(err).toBeInstanceOf(InstructifyError);
    return err as InstructifyError;
  }
  throw new Error('expected the splitter to throw');
}

describe('json splitter', () => {
  it('splits keyed arrays into elements and keeps other top-level values whole', () => {
    const vals = split('{"info": {"a": [1, {"b": "]}"}]}, "images": [{"id": 1}, {"id": 2}], "n": 5, "s": "x\\"y", "empty": []}');
    expect(vals.map((v) => [v.key, v.index, v.value])).toEqual([
      ['info', -1, { a: [1, { b: ']}' }] }],
      ['images', 0, { id: 1 }],
      ['images', 1, { id: 2 }],
      ['n', -1, 5],
      ['s', -1, 'x"y'],
    ]);
  });

  it('splits a top-level array, including scalars and strings', () => {
    const vals = split('[ {"a":1} , 2,"three" ,[4], true,null ]');
    expect(vals.map((v) => v.value)).toEqual([{ a: 1 }, 2, 'three', [4], true, null]);
    expect(vals.map((v) => v.index)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('reports byte offsets of each value', () => {
    const text = '{"k": [ {"x": "é"}, {"y": 2} ]}';
    const vals = split(text);
    const buf = Buffer.from(text);
    for (const v of vals) expect(buf[v.offset]).toBe('{'.charCodeAt(0));
    expect(vals[1]!.offset).toBe(buf.indexOf('{"y"'));
  });

  it('gives identical values for every chunk size, on the real COCO instances file', () => {
    const buf = readFileSync(`${SHARED}/coco/annotations/instances_val2017.json`);
    const whole = split(buf, buf.length);
    expect(whole.filter((v) => v.key === 'annotations')).toHaveLength(624);
    expect(whole.filter((v) => v.key === 'categories')).toHaveLength(80);
    for (const size of [1, 7, 4093]) {
      const parts = split(buf, size);
      expect(parts).toEqual(whole);
    }
  });

  it('handles escapes and multi-byte characters split across chunks', () => {
    const text = JSON.stringify({ a: ['\\"\u00e9\u4e2d\ud83d\ude00"\\', 'plain'], b: { 'k"ey': 'v\\' } });
    const expected = split(text, text.length);
    for (let size = 1; size < 12; size++) expect(split(text, size)).toEqual(expected);
    expect(expected[0]!.value).toBe('\\"\u00e9\u4e2d\ud83d\ude00"\\');
    expect(expected[2]!.value).toEqual({ 'k"ey': 'v\\' });
  });

  it('skips values under skipped keys without parsing them', () => {
    const vals = split('{"licenses": [{"bad": }], "images": [1]}', 64, ['licenses']);
    expect(vals.map((v) => v.value)).toEqual([1]);
  });

  it('names the file and byte offset of malformed JSON inside an element', () => {
    const text = '{"annotations": [{"id": 1}, {"id": 2,, "x": 3}]}';
    const err = splitError(text);
    expect(err.code).toBe('E_JSON_SYNTAX');
    expect(err.file).toBe('test.json');
    expect(err.offset).toBe(text.indexOf(',,') + 1);
    expect(err.message).toContain('test.json at byte');
    expect(err.message).toContain('"annotations" element 1');
  });

  it('finds the byte of a fault V8 reports by quoting the text around it, after a raw polygon too', () => {
    const real = readFileSync(path.join(SHARED, 'coco', 'annotations', 'instances_val2017.json'), 'utf8');
    const at = real.indexOf('"iscrowd": 0', real.indexOf('"annotations"') + 10_000);
    const broken = real.slice(0, at) + '"iscrowd":: 0' + real.slice(at + '"iscrowd": 0'.length);
    for (const rawKeys of [undefined, new Set(['segmentation'])]) {
      let err: InstructifyError | null = null;
      try {
        const s = createJsonSplitter({ file: 'real.json', rawKeys }, () => {});
        s.push(Buffer.from(broken));
        s.end();
      } catch (e) {
        err = e as InstructifyError;
      }
      expect(err?.code).toBe('E_JSON_SYNTAX');
      // V8 says "Unexpected token ':', ..."iscrowd":: 0, ..." with no position: the second colon is the fault.
      expect(err!.message).toMatch(/Unexpected token ':'/);
      expect(err!.offset).toBe(Buffer.byteLength(real.slice(0, at)) + '"iscrowd":'.length);
    }
  });

  it('reports truncated input with the element it was in', () => {
    const text = '{"annotations": [{"id": 1}, {"id": 2, "bbox": [1, 2';
    for (const chunk of [5, 1 << 16]) {
      const err = splitError(text, chunk);
      expect(err.code).toBe('E_JSON_TRUNCATED');
      expect(err.offset).toBe(Buffer.byteLength(text));
      expect(err.message).toContain('"annotations" element 1');
    }
    expect(splitError('').code).toBe('E_JSON_TRUNCATED');
    expect(splitError('[{"a": "unterminated').code).toBe('E_JSON_TRUNCATED');
  });

  it('rejects structural errors between elements', () => {
    expect(splitError('[{"a":1} {"b":2}]').code).toBe('E_JSON_SYNTAX');
    expect(splitError('{"a" 1}').code).toBe('E_JSON_SYNTAX');
    expect(splitError('[1] [2]').code).toBe('E_JSON_SYNTAX');
    expect(splitError('{"a": [1}').code).toBe('E_JSON_SYNTAX');
    expect(splitError('{"a": }').code).toBe('E_JSON_SYNTAX');
  });
});

describe('raw fields', () => {
  function splitRaw(text: string | Buffer, chunk: number): JsonValue[] {
    const out: JsonValue[] = [];
    const s = createJsonSplitter({ file: 'raw.json', rawKeys: new Set(['segmentation']) }, (v) => out.push(v));
    const buf = Buffer.isBuffer(text) ? text : Buffer.from(text);
    for (let i = 0; i < buf.length; i += chunk) s.push(buf.subarray(i, i + chunk));
    s.end();
    return out;
  }

  it('keeps array values of raw keys as their exact text, at any chunk size', () => {
    const text = '{"annotations": [{"segmentation": [[1.50, 2, 3e2]], "id": 1}, {"id": 2, "segmentation" :\n [ [4,5] ] }, {"segmentation": {"counts": "x"}, "id": 3}, {"name": "segmentation", "v": [9]}]}';
    const expected = splitRaw(text, text.length);
    expect(expected.map((v) => v.raw)).toEqual([{ segmentation: '[[1.50, 2, 3e2]]' }, { segmentation: '[ [4,5] ]' }, null, null]);
    expect(expected.map((v) => v.value)).toEqual([
      { segmentation: null, id: 1 },
      { id: 2, segmentation: null },
      { segmentation: { counts: 'x' }, id: 3 },
      { name: 'segmentation', v: [9] },
    ]);
    for (let size = 1; size < 40; size++) expect(splitRaw(text, size)).toEqual(expected);
  });

  it('gives the same raw polygons as JSON.parse for the real COCO file at any chunk size', () => {
    const buf = readFileSync(`${SHARED}/coco/annotations/instances_val2017.json`);
    const truth = JSON.parse(buf.toString()) as { annotations: { segmentation: unknown }[] };
    const whole = splitRaw(buf, buf.length).filter((v) => v.key === 'annotations');
    whole.forEach((v, i) => {
      const seg = truth.annotations[i]!.segmentation;
      if (Array.isArray(seg)) expect(JSON.parse(v.raw!.segmentation!)).toEqual(seg);
      else expect((v.value as { segmentation: unknown }).segmentation).toEqual(seg);
    });
    for (const size of [3, 1000, 65536]) expect(splitRaw(buf, size).filter((v) => v.key === 'annotations')).toEqual(whole);
  });

  it('names the byte of anything but numbers inside a raw array, and of JSON errors after it', () => {
    const bad = '[{"segmentation": [[1, 2, "x"]], "id": 1}]';
    expect(() => splitRaw(bad, 64)).toThrowError(expect.objectContaining({ code: 'E_JSON_SYNTAX', offset: bad.indexOf('"x"') }));
    const after = '[{"segmentation": [[1, 2]], "id": 1,}]';
    expect(() => splitRaw(after, 64)).toThrowError(expect.objectContaining({ code: 'E_JSON_SYNTAX', offset: after.indexOf(',}') + 1 }));
  });
});
