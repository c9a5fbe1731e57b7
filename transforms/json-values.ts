import { Transform, type TransformCallback } from 'node:stream';
import { createJsonSplitter, type JsonValue, type SplitterOptions } from '../src/json/splitter.js';

/**
 * Bytes in, batches of JSON values out. Values are pushed as one array per
 * input chunk: per-element stream pushes cost more than the parsing itself
 * on files with a million small annotations.
 */
export function jsonValues(opts: SplitterOptions): Transform {
  const batch: JsonValue[] = [];
  return batchingTransform(
    createJsonSplitter(opts, (v) => batch.push(v)),
    () => batch.splice(0),
  );
}

/**
 * The stream side of a push/end splitter that collects values: each input
 * chunk is pushed through, and what it gave goes downstream as one batch.
 * A splitter's error (bad syntax) fails the stream.
 */
export function batchingTransform(splitter: { push(chunk: Buffer): void; end(): void }, take: () => JsonValue[]): Transform {
  const step = (t: Transform, work: () => void, done: TransformCallback) => {
    try {
      work();
    } catch (err) {
      done(err as Error);
      return;
    }
    const batch = take();
    if (batch.length) t.push(batch);
    done();
  };
  return new Transform({
    readableObjectMode: true,
    readableHighWaterMark: 4,
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      step(this, () => splitter.push(chunk), done);
    },
    flush(done: TransformCallback) {
      step(this, () => splitter.end(), done);
    },
  });
}
