import { Writable } from 'node:stream';
import type { ShardWriter } from '../src/shards.js';

/** Writes each row it receives to a shard writer; the writer's pace is the stream's pace. */
export function shardSink<T extends object>(writer: ShardWriter, onRow?: (row: T) => void): Writable {
  return new Writable({
    objectMode: true,
    highWaterMark: 64,
    write(row: T, _enc, done) {
      onRow?.(row);
      writer.write(row).then(() => done(), done);
    },
    final(done) {
      writer.close().then(() => done(), done);
    },
  });
}
