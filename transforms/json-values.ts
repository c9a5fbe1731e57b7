import { Transform, type TransformCallback } from 'node:stream';
import { createJsonSplitter, type JsonValue, type SplitterOptions } from '../src/json/splitter.js';

/**
 * Bytes in, batches of JSON values out. Values are pushed as one array per
 * input chunk: per-element stream pushes cost more than the parsing itself
 * on files with a million small annotations.
 */
export function jsonValues(opts: SplitterOptions): Transform {
  let batch: JsonValue[] = [];
  const splitter = createJsonSplitter(opts, (v) => batch.push(v));
  const flushBatch = (t: Transform): void => {
    if (batch.length) {
      t.push(batch);
      batch = [];
    }
  };
  return new Transform({
    readableObjectMode: true,
    readableHighWaterMark: 4,
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      try {
        splitter.push(chunk);
      } catch (err) {
        done(err as Error);
        return;
      }
      flushBatch(this);
      done();
    },
    flush(done: TransformCallback) {
      try {
        splitter.end();
      } catch (err) {
        done(err as Error);
        return;
      }
      flushBatch(this);
      done();
    },
  });
}
