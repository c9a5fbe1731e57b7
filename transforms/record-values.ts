import { Readable, Transform, type TransformCallback } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import { createTarParser } from '../src/read/tar.js';
import { plainValue } from '../src/write/plain.js';
import { parquetRowGroups } from '../src/write/parquet-read.js';
import { InstructifyError } from '../src/errors.js';
import type { JsonValue, SplitterOptions } from '../src/read/json-splitter.js';
import { splitLines } from '../src/read/lines.js';
import { batchingTransform, jsonValues } from './json-values.js';

/**
 * Readers for the input formats other than one big JSON document, each
 * giving what `jsonValues` gives: batches of JsonValue (key null, index =
 * record number, offset = byte offset where the record starts (for a CSV's
 * first row, 0), or the row number for Parquet), so loaders do not care
 * where their records came from.
 */
export type InputFormat = 'json' | 'jsonl' | 'csv' | 'tsv' | 'lines' | 'text' | 'tar' | 'parquet';

function value(index: number, offset: number, v: unknown): JsonValue {
  return { key: null, index, value: v, offset, raw: null };
}

/** JSON Lines: one JSON value per non-empty line; a bad line is an error naming the line and byte. */
export function jsonlValues(file: string): Transform {
  return linesTransform((line, index, offset) => {
    try {
      return value(index, offset, JSON.parse(line));
    } catch (err) {
      throw new InstructifyError('E_JSON_SYNTAX', `line ${index + 1} is not JSON: ${(err as Error).message}`, { file, offset, cause: err });
    }
  });
}

/** Plain text lines (Flickr30k's `results_20130124.token`): each non-empty line as a string. */
export function lineValues(file: string): Transform {
  return linesTransform((line, index, offset) => value(index, offset, line));
}

function linesTransform(make: (line: string, index: number, offset: number) => JsonValue): Transform {
  const batch: JsonValue[] = [];
  let index = 0;
  const splitter = splitLines((line, offset) => {
    if (line.trim() !== '') batch.push(make(line, index++, offset));
  });
  return batchingTransform(splitter, () => batch.splice(0));
}

/** A tar archive's file entries, one value each: `{name, data}` (data as bytes), at the header's offset. */
export function tarValues(file: string): Transform {
  const batch: JsonValue[] = [];
  let index = 0;
  const parser = createTarParser((e) => batch.push(value(index++, e.offset, { name: e.name, data: e.data })));
  return new Transform({
    readableObjectMode: true,
    transform(chunk: Buffer, _e, done: TransformCallback) {
      parser.push(chunk);
      if (batch.length) this.push(batch.splice(0));
      done();
    },
    flush(done: TransformCallback) {
      try {
        parser.end();
      } catch (err) {
        return done(new InstructifyError('E_WRONG_KIND', (err as Error).message, { file }));
      }
      if (batch.length) this.push(batch.splice(0));
      done();
    },
  });
}

/** The whole file as one string value (small per-image files, e.g. Flickr30k Entities XML). */
export function textValue(): Transform {
  const chunks: Buffer[] = [];
  return new Transform({
    readableObjectMode: true,
    transform(chunk: Buffer, _e, done: TransformCallback) {
      chunks.push(chunk);
      done();
    },
    flush(done: TransformCallback) {
      this.push([value(0, 0, Buffer.concat(chunks).toString('utf8'))]);
      done();
    },
  });
}

/**
 * CSV or TSV with a header row: each row as an object keyed by the header's
 * names. Two stages (csv-parse, then batching) for `pipeline()` to chain.
 */
export function csvValues(file: string, delimiter: ',' | '\t'): Transform[] {
  const parser = parseCsv({ columns: true, delimiter, bom: true, skip_empty_lines: true, info: true });
  let index = 0;
  // csv-parse reports the bytes read when a record ends: a record starts where the one before ended.
  let start = 0;
  const toValues = new Transform({
    objectMode: true,
    transform(row: { record: Record<string, string>; info: { bytes: number; lines: number } }, _e, done: TransformCallback) {
      const v = value(index++, start, row.record);
      start = row.info.bytes;
      done(null, [v]);
    },
  });
  return [parser, toValues];
}

/** csv-parse errors (codes CSV_*) as our own, naming the file and line. */
export function wrapCsvError(err: unknown, file: string): unknown {
  const e = err as { code?: string; lines?: number; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('CSV_')) {
    return new InstructifyError('E_CSV_SYNTAX', `CSV${e.lines ? ` line ${e.lines}` : ''}: ${e.message}`, { file, cause: err });
  }
  return err;
}

/** The stages that turn a file's bytes into value batches, for every format but Parquet (which is not read as a stream). */
export function valueStages(format: Exclude<InputFormat, 'parquet'>, file: string, opts: Pick<SplitterOptions, 'skipKeys' | 'rawKeys'>): Transform[] {
  switch (format) {
    case 'json':
      return [jsonValues({ file, skipKeys: opts.skipKeys, rawKeys: opts.rawKeys })];
    case 'jsonl':
      return [jsonlValues(file)];
    case 'lines':
      return [lineValues(file)];
    case 'text':
      return [textValue()];
    case 'tar':
      return [tarValues(file)];
    case 'csv':
    case 'tsv':
      return csvValues(file, format === 'tsv' ? '\t' : ',');
  }
}

/**
 * A Parquet file (Hugging Face datasets' format) one row group at a time, rows
 * as plain objects (binary columns as Uint8Array), so memory holds one row
 * group whatever the file's size.
 */
export function parquetValues(file: string, columns?: string[]): Readable {
  const gen = async function* (): AsyncGenerator<JsonValue[]> {
    let row = 0;
    for await (const table of parquetRowGroups(file, columns)) {
      const batch: JsonValue[] = [];
      const names = table.schema.fields.map((f) => f.name);
      const cols = names.map((n) => table.getChild(n)!);
      for (let i = 0; i < table.numRows; i++) {
        const obj: Record<string, unknown> = {};
        for (let c = 0; c < names.length; c++) obj[names[c]!] = plainValue(cols[c]!.get(i));
        batch.push(value(row, row, obj));
        row++;
      }
      yield batch;
    }
  };
  return Readable.from(gen(), { objectMode: true, highWaterMark: 2 });
}
