import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { RecordBatchStreamWriter } from 'apache-arrow';
import { TableBuilder } from './columns.js';
import { snakeJson } from './plain.js';
import { InstructifyError } from '../errors.js';
import { preparedSchema } from './schema.js';
import type { ShardInfo } from './shards.js';
import type { ImageRecord } from '../types.js';

export type StreamFormat = 'ndjson' | 'arrow';

/** Records as objects into an object-mode stream, waiting when it is full (`run` feeds generate this way). */
export class ObjectSink {
  private rows = 0;
  constructor(private readonly out: Writable) {}
  async add(records: readonly ImageRecord[]): Promise<void> {
    for (const r of records) {
      this.rows++;
      if (!this.out.write(r)) await Promise.race([once(this.out, 'drain'), once(this.out, 'close')]);
      if (this.out.destroyed) throw new InstructifyError('E_PIPE_CLOSED', 'the consumer of the records stopped');
    }
  }
  async close(): Promise<ShardInfo[]> {
    this.out.end();
    return [{ file: '-', rows: this.rows, bytes: 0 }];
  }
  async abort(): Promise<void> {
    this.out.destroy();
  }
}

/** The IPC stream's end marker: continuation token 0xFFFFFFFF, then a zero length. */
const END_OF_STREAM = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * Records to a stream (stdout) as NDJSON or one Arrow IPC stream, in order,
 * waiting for the reader (backpressure). When the reader goes away (`| head`)
 * the next write fails with E_PIPE_CLOSED, which the CLI treats as a normal,
 * quiet end.
 */
export class StreamSink {
  private closed: Error | null = null;
  /** Whether the IPC schema message has gone out (Arrow format). */
  private schemaWritten = false;
  /** Arrow: the row group being filled, as column bytes. */
  private readonly rowGroup = new TableBuilder(preparedSchema);
  private rows = 0;
  private bytes = 0;

  constructor(
    private readonly out: Writable,
    private readonly format: StreamFormat,
    private readonly rowGroupRows: number,
  ) {
    out.on('error', (err: NodeJS.ErrnoException) => {
      this.closed = err.code === 'EPIPE' ? new InstructifyError('E_PIPE_CLOSED', 'the reader of the output closed the pipe') : err;
    });
  }

  private async write(chunk: string | Uint8Array): Promise<void> {
    if (this.closed) throw this.closed;
    this.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (!this.out.write(chunk)) {
      // once() rejects on 'error': the error handler above keeps it, checked below.
      await Promise.race([once(this.out, 'drain'), once(this.out, 'close')]).catch(() => {});
    }
    if (this.closed) throw this.closed;
  }

  /**
   * One IPC stream across many row groups without holding them: each row
   * group is written by its own writer, and only its record batch messages
   * are passed on (the schema message once, the end-of-stream marker at
   * close). apache-arrow's writer keeps every byte it has produced until it
   * is closed, so one long-lived writer would hold the whole output.
   */
  private async flushArrow(): Promise<void> {
    if (!this.rowGroup.length) return;
    const w = new RecordBatchStreamWriter();
    for (const batch of this.rowGroup.take().batches) w.write(batch);
    w.finish();
    const all = w.toUint8Array(true);
    const schema = this.schema();
    if (!Buffer.from(all.buffer, all.byteOffset, schema.length).equals(schema)) {
      throw new InstructifyError('E_INTERNAL', 'Arrow stream: a row group was written with a different schema message');
    }
    if (!this.schemaWritten) {
      this.schemaWritten = true;
      await this.write(schema);
    }
    await this.write(all.subarray(schema.length, all.length - END_OF_STREAM.length));
  }

  private schemaBytes: Uint8Array | null = null;
  private schema(): Uint8Array {
    if (this.schemaBytes === null) {
      const empty = new RecordBatchStreamWriter().reset(undefined, preparedSchema).finish().toUint8Array(true);
      this.schemaBytes = empty.subarray(0, empty.length - END_OF_STREAM.length);
    }
    return this.schemaBytes;
  }

  async add(records: readonly ImageRecord[]): Promise<void> {
    this.rows += records.length;
    if (this.format === 'ndjson') {
      let text = '';
      for (const r of records) text += snakeJson(r) + '\n';
      if (text) await this.write(text);
    } else {
      for (const r of records) {
        this.rowGroup.append(r);
        if (this.rowGroup.length >= this.rowGroupRows) await this.flushArrow();
      }
    }
  }

  async close(): Promise<ShardInfo[]> {
    if (this.format === 'arrow') {
      await this.flushArrow();
      // An empty output is still a valid stream: schema, then end of stream.
      if (!this.schemaWritten) await this.write(this.schema());
      await this.write(END_OF_STREAM);
    }
    return [{ file: '-', rows: this.rows, bytes: this.bytes }];
  }

  async abort(): Promise<void> {
    this.rowGroup.clear();
  }
}
