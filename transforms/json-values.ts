import { Transform, type TransformCallback } from 'node:stream';
import { createJsonSplitter, type JsonValue, type SplitterOptions } from '../src/read/json-splitter.js';
import { ElementBatcher, type ElementBatch } from '../src/read/element-batches.js';

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
 * Like `jsonValues`, but elements of `parallelKeys` (after each array's
 * first) may be cut out unparsed, collected into batches and handed to
 * `offload` (a read worker parses them). Whether the next batch goes out is
 * asked when it would start: when no worker has room, the next batch's worth
 * of elements is parsed here as usual and goes downstream in file order.
 * That is the backpressure, and the main thread never parses a batch twice.
 */
export function offloadingJsonValues(
  opts: SplitterOptions & {
    parallelKeys: ReadonlySet<string | null>;
    fileNumber: number;
    batchBytes?: number;
    canOffload: () => boolean;
    offload: (b: ElementBatch) => void;
  },
): Transform {
  const values: JsonValue[] = [];
  const batcher = new ElementBatcher(opts.fileNumber, opts.batchBytes);
  /**
   * Elements still to parse here before asking again: a quarter of the last
   * batch sent, short enough that a worker that frees up soon gets the next.
   */
  let parseHere = 0;
  let perBatch = 256;
  const send = (b: ElementBatch | null) => {
    if (b === null) return;
    perBatch = b.count;
    opts.offload(b);
  };
  const splitter = createJsonSplitter(
    {
      ...opts,
      defer: (key, index) => {
        if (index === 0 || !opts.parallelKeys.has(key)) return false;
        if (batcher.pending > 0) return true;
        if (parseHere > 0) {
          parseHere--;
          return false;
        }
        if (opts.canOffload()) return true;
        parseHere = (perBatch >> 2) - 1;
        return false;
      },
      onDeferred: (key, index, offset, source, start, end, raw) => send(batcher.add(key, index, offset, source, start, end, raw)),
    },
    (v) => {
      // An element parsed here ends the batch being collected: nothing is held back from a worker.
      send(batcher.flush());
      values.push(v);
    },
  );
  return batchingTransform(
    {
      push: (chunk) => splitter.push(chunk),
      end: () => {
        splitter.end();
        send(batcher.flush());
      },
    },
    () => values.splice(0),
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
