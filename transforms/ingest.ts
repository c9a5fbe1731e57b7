import { Writable } from 'node:stream';
import type { JsonValue } from '../src/read/json-splitter.js';
import type { FileHandler } from '../src/sources/types.js';

/**
 * Feeds batches of JSON values to a source's file handler. The handler emits
 * fragments synchronously; `drain` returns a promise when the consumer (the
 * join) is spilling, and the stream waits for it before taking more input.
 */
export function ingestSink(handler: FileHandler, drain: () => Promise<void> | undefined): Writable {
  /** Run a handler step, then wait for any spill it started (and work of its own, see FileHandler.pending) before taking more input. */
  const step = (work: () => void, done: (err?: Error | null) => void, all = false) => {
    try {
      work();
    } catch (err) {
      done(err as Error);
      return;
    }
    const wait = drain();
    const own = handler.pending?.(all);
    if (wait && own) Promise.all([wait, own]).then(() => done(), done);
    else if (wait || own) (wait ?? own)!.then(() => done(), done);
    else done();
  };
  return new Writable({
    objectMode: true,
    highWaterMark: 4,
    write(batch: JsonValue[], _enc, done) {
      step(deliver.bind(null, handler, batch), done);
    },
    final(done) {
      step(() => handler.finish(), done, true);
    },
  });
}

/**
 * One batch to the handler. A module-level function, not a closure per
 * batch: its loop is hot, and V8 compiled a closure made per batch anew
 * (it keeps optimised code only while a closure of it lives).
 */
function deliver(handler: FileHandler, batch: JsonValue[]): void {
  for (const v of batch) handler.onValue(v);
}
