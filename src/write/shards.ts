import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import path from 'node:path';
import { RecordBatchFileWriter, tableToIPC, type RecordBatch, type Schema } from 'apache-arrow';
import { TableBuilder } from './columns.js';
import { snakeJson } from './plain.js';
import { parquetWasm, type ParquetWasm } from './parquet-wasm.js';
import { preparedSchema } from './schema.js';
import { InstructifyError, ioError } from '../errors.js';


/**
 * A test hook, for machines where a test cannot mount a small file system:
 * with INSTRUCTIFY_TEST_ENOSPC_AFTER_BYTES set, each shard file fails as a
 * full disk would once that many bytes were written to it.
 */
function testDiskLimit(): number {
  const n = Number(process.env.INSTRUCTIFY_TEST_ENOSPC_AFTER_BYTES);
  return n > 0 ? n : Infinity;
}

function fullDisk(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

/**
 * zstd, row groups of `rowGroupRows`, the schema version in the file's own
 * key-value metadata (Arrow schema metadata only reaches Parquet inside
 * ARROW:schema). Built fresh per file: parquet-wasm takes ownership of the
 * properties it is given, and a reused object silently means "defaults",
 * i.e. uncompressed.
 *
 * No dictionary encoding: on long unique text (polygons, captions, trees)
 * it doubled encoding time for 2% smaller files, and parquet-wasm cannot
 * turn it on for single nested columns (it reads a column path as one name,
 * so `boxes.list.item.label` names no column; only top-level ones match).
 *
 * Statistics (min and max) only for the top-level columns a reader may
 * filter row groups by: computed per page for every column, as by default,
 * they cost 5-15% of encoding (string comparisons over every polygon) and
 * serve no query on nested lists.
 */
export const STATISTICS_COLUMNS = ['image', 'width', 'height'] as const;

export function writerProperties(pq: ParquetWasm, rowGroupRows: number, metadata: [string, string][]): import('parquet-wasm/esm').WriterProperties {
  let b = new pq.WriterPropertiesBuilder()
    .setCompression(pq.Compression.ZSTD)
    .setMaxRowGroupSize(rowGroupRows)
    .setDictionaryEnabled(false)
    .setStatisticsEnabled(pq.EnabledStatistics.None)
    .setCreatedBy('instructify')
    .setKeyValueMetadata(new Map(metadata));
  for (const col of STATISTICS_COLUMNS) b = b.setColumnStatisticsEnabled(col, pq.EnabledStatistics.Chunk);
  return b.build();
}

/**
 * One Parquet file written a row group at a time through parquet-wasm's
 * streaming writer: memory holds one row group, not the whole shard.
 */
class ParquetFileStream {
  private ctrl!: ReadableStreamDefaultController<unknown>;
  private readonly input: ReadableStream<unknown>;
  private wake: (() => void) | null = null;
  private output: Promise<number> | null = null;
  private error: unknown = null;

  constructor(
    private readonly pq: ParquetWasm,
    private readonly tmp: string,
    private readonly props: import('parquet-wasm/esm').WriterProperties,
  ) {
    this.input = new ReadableStream(
      {
        start: (c) => {
          this.ctrl = c;
        },
        pull: () => this.wakeUp(),
      },
      { highWaterMark: 1 },
    );
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Add one row group; waits while the encoder is behind. */
  async write(ipc: Uint8Array): Promise<void> {
    for (const batch of this.pq.Table.fromIPCStream(ipc).recordBatches()) {
      while ((this.ctrl.desiredSize ?? 1) <= 0 && this.error === null) await new Promise<void>((r) => (this.wake = r));
      if (this.error !== null) throw this.error;
      this.ctrl.enqueue(batch);
      // The writer reads the first batch for the schema before it returns, so start it only now.
      if (this.output === null) {
        this.output = this.drain();
        this.output.catch((err: unknown) => {
          this.error = err;
          this.wakeUp();
        });
      }
    }
  }

  private async drain(): Promise<number> {
    const out = await this.pq.transformParquetStream(this.input, this.props);
    const file = this.tmp.replace(/\.tmp$/, '');
    const fh = await open(this.tmp, 'w').catch((err: NodeJS.ErrnoException) => {
      throw ioError(err, file, 'open');
    });
    const limit = testDiskLimit();
    let bytes = 0;
    try {
      for await (const chunk of out as unknown as AsyncIterable<Uint8Array>) {
        if (bytes + chunk.length > limit) throw fullDisk();
        await fh.write(chunk);
        bytes += chunk.length;
      }
      await fh.sync();
    } catch (err) {
      // A write error names no file ("ENOSPC: no space left on device, write"): this one's is said, with what to do.
      throw ioError(err as NodeJS.ErrnoException, file, 'write');
    } finally {
      await fh.close();
    }
    return bytes;
  }

  /** Finish the file; resolves to its size. */
  async finish(): Promise<number> {
    this.ctrl.close();
    return this.output ?? 0;
  }
}
/**
 * A shard file written as it fills (JSONL lines, Arrow IPC bytes), so a lane
 * holds at most what the disk has not taken yet, not the whole shard: with
 * 10,000 rows a shard, holding JSONL shards whole had a 300 MB prepare peak
 * at 594 MB instead of 268. Flushed to disk before it closes. export
 * writes its JSON / JSONL files and its rejects through it too.
 */
export class FileSink {
  private readonly out: WriteStream;
  private readonly closed: Promise<void>;
  private error: unknown = null;

  constructor(tmp: string) {
    this.out = createWriteStream(tmp, { flush: true });
    // Resolves on close whatever happened; the error, if any, is kept in `error`.
    this.closed = new Promise((resolve) => this.out.once('close', () => resolve()));
    // A write error names no file ("ENOSPC: no space left on device, write"): this one's is said, with what to do.
    this.out.on('error', (err) => (this.error ??= ioError(err, tmp.replace(/\.tmp$/, ''), 'write')));
  }

  private readonly failAfterBytes = testDiskLimit();
  private queued = 0;

  /** Queue bytes or text; waits while the disk is behind. */
  async write(chunk: string | Uint8Array): Promise<void> {
    if (this.error !== null) throw this.error;
    this.queued += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    if (this.queued > this.failAfterBytes) {
      this.error = ioError(fullDisk(), this.out.path.toString().replace(/\.tmp$/, ''), 'write');
      this.out.destroy();
      throw this.error;
    }
    if (!this.out.write(chunk)) await Promise.race([once(this.out, 'drain'), this.closed]);
    if (this.error !== null) throw this.error;
  }

  /** Write what is queued, flush and close; resolves to the file's size. */
  async finish(): Promise<number> {
    this.out.end();
    await this.closed;
    if (this.error !== null) throw this.error;
    return this.out.bytesWritten;
  }

  /** Stop without finishing (the caller removes the file). */
  async abort(): Promise<void> {
    this.out.destroy();
    await this.closed;
  }
}

/**
 * An Arrow IPC file streamed to disk. apache-arrow's file writer keeps every
 * byte it produced until something reads them, so a loop copies them to the
 * file from the start, and after each row group the writer waits for a copy
 * the disk held up. (Not the writer's own Node stream: a pipe that fails or
 * is cut short leaves a rejected read inside apache-arrow that nothing
 * handles.)
 */
class ArrowFileStream {
  private readonly writer = new RecordBatchFileWriter();
  private readonly sink: FileSink;
  private readonly done: Promise<void>;
  /** The copy in progress, while it waits for the disk. */
  private copying: Promise<void> | null = null;
  private aborted = false;
  private error: unknown = null;

  constructor(tmp: string) {
    this.sink = new FileSink(tmp);
    this.done = this.copyToFile();
  }

  private async copyToFile(): Promise<void> {
    // The queue is read to its end whatever happens, so the writer never writes into a closed queue.
    for await (const chunk of this.writer) {
      if (this.aborted || this.error !== null) continue;
      this.copying = this.sink.write(chunk);
      await this.copying.catch((err: unknown) => (this.error ??= err));
      this.copying = null;
    }
  }

  async write(batches: Iterable<RecordBatch>): Promise<void> {
    if (this.error !== null) throw this.error;
    for (const batch of batches) this.writer.write(batch);
    if (this.copying !== null) await this.copying.catch(() => undefined);
    if (this.error !== null) throw this.error;
  }

  /** Write the footer, flush and close; resolves to the file's size. */
  async finish(): Promise<number> {
    this.writer.finish();
    await this.done;
    if (this.error !== null) {
      await this.sink.abort();
      throw this.error;
    }
    return this.sink.finish();
  }

  /** Stop without finishing (the caller removes the file). */
  async abort(): Promise<void> {
    this.aborted = true;
    this.writer.close();
    await this.done;
    await this.sink.abort();
  }
}

export type ShardFormat = 'parquet' | 'jsonl' | 'arrow';

export interface ShardWriterOptions {
  dir: string;
  /** File name stem: shards are `<prefix>-00000.<ext>`. */
  prefix: string;
  format: ShardFormat;
  /** Start a new shard after this many rows. */
  rowsPerShard: number;
  /** Parquet row group size in rows. */
  rowGroupRows?: number;
  /** Key-value metadata for every Parquet file. */
  metadata: [string, string][];
  /** The rows' schema (default: prepared records). */
  schema?: Schema;
  /** Number of the first shard (a resumed run goes on after the shards it kept). */
  firstIndex?: number;
}

export interface ShardInfo {
  file: string;
  rows: number;
  bytes: number;
}

export const SHARD_EXTENSIONS: Record<ShardFormat, string> = { parquet: '.parquet', jsonl: '.jsonl', arrow: '.arrow' };

/**
 * Cuts an ordered stream of records into shards of exactly `rowsPerShard`
 * rows (the last may be smaller), one Arrow table and one Parquet encode per
 * shard. Each shard is written under `<name>.tmp` and renamed only once
 * complete, so a reader (or a resumed run) never sees a partial shard under
 * its final name.
 */
export class ShardWriter {
  readonly shards: ShardInfo[] = [];
  /**
   * Parquet and Arrow: the row group being filled, as column bytes (records
   * are appended as they come and not kept); every full row group goes to
   * the shard's file at once, so at most one is held.
   */
  private readonly rowGroup: TableBuilder;
  /** The shard being written, under its `.tmp` name; null between shards. */
  private file: ParquetFileStream | ArrowFileStream | FileSink | null = null;
  /** JSONL: lines not yet handed to the file. */
  private text = '';
  private pendingRows = 0;
  private index = 0;
  private current: string | null = null;
  private readonly opts: Required<ShardWriterOptions>;

  constructor(opts: ShardWriterOptions) {
    if (!Number.isInteger(opts.rowsPerShard) || opts.rowsPerShard < 1) {
      throw new InstructifyError('E_OPTION', `rows per shard must be a positive integer, got ${opts.rowsPerShard}`);
    }
    this.opts = { rowGroupRows: 1000, schema: preparedSchema, firstIndex: 0, ...opts };
    this.index = this.opts.firstIndex;
    this.rowGroup = new TableBuilder(this.opts.schema);
  }

  /** Add records in output order; writes every shard that fills up. */
  async add(records: readonly object[]): Promise<void> {
    for (const r of records) {
      if (this.opts.format === 'jsonl') {
        this.text += snakeJson(r) + '\n';
        if (this.text.length >= TEXT_FLUSH_CHARS) await this.flushText();
      } else {
        // Parquet and Arrow: a row group at a time.
        this.rowGroup.append(r);
        if (this.rowGroup.length >= this.opts.rowGroupRows) await this.flushRowGroup();
      }
      if (++this.pendingRows >= this.opts.rowsPerShard) await this.cut();
    }
    if (this.opts.format === 'jsonl') await this.flushText();
  }

  private shardName(index: number): string {
    return path.join(this.opts.dir, `${this.opts.prefix}-${String(index).padStart(5, '0')}${SHARD_EXTENSIONS[this.opts.format]}`);
  }

  /** The current shard's file, opened under its temporary name on first use. */
  private async openFile(): Promise<ParquetFileStream | ArrowFileStream | FileSink> {
    if (this.file !== null) return this.file;
    const tmp = `${this.shardName(this.index)}.tmp`;
    this.current = tmp;
    if (this.opts.format === 'jsonl') this.file = new FileSink(tmp);
    else if (this.opts.format === 'arrow') this.file = new ArrowFileStream(tmp);
    else {
      const pq = await parquetWasm();
      this.file = new ParquetFileStream(pq, tmp, writerProperties(pq, this.opts.rowGroupRows, this.opts.metadata));
    }
    return this.file;
  }

  private async flushText(): Promise<void> {
    if (!this.text) return;
    const text = this.text;
    this.text = '';
    await ((await this.openFile()) as FileSink).write(text);
  }

  private async flushRowGroup(): Promise<void> {
    if (!this.rowGroup.length) return;
    const file = await this.openFile();
    // Batches, not a table: writing a table to a file writer twice fails.
    if (file instanceof ArrowFileStream) await file.write(this.rowGroup.take().batches);
    else await (file as ParquetFileStream).write(tableToIPC(this.rowGroup.take(), 'stream'));
  }

  /** Finish the current shard with everything pending. */
  private async cut(): Promise<void> {
    // What is still buffered first: it opens the file under this shard's name if nothing did yet.
    if (this.opts.format === 'jsonl') await this.flushText();
    else await this.flushRowGroup();
    const rows = this.pendingRows;
    this.pendingRows = 0;
    const final = this.shardName(this.index++);
    const bytes = await this.file!.finish();
    this.file = null;
    await rename(`${final}.tmp`, final);
    this.current = null;
    this.shards.push({ file: path.basename(final), rows, bytes });
  }

  /** Write what is buffered. */
  async close(): Promise<ShardInfo[]> {
    if (this.pendingRows) await this.cut();
    return this.shards;
  }

  /** After a failure: drop what is buffered and remove an unfinished `.tmp` file. Finished shards stay; the manifest says the run failed. */
  async abort(): Promise<void> {
    this.rowGroup.clear();
    this.text = '';
    this.pendingRows = 0;
    const file = this.file;
    this.file = null;
    if (file instanceof ParquetFileStream) await file.finish().catch(() => 0);
    else if (file) await file.abort();
    if (this.current) await rm(this.current, { force: true });
  }
}

/** JSONL text handed to the file in pieces of about this many characters. */
const TEXT_FLUSH_CHARS = 1 << 20;

export async function fileSizeAndMtime(file: string): Promise<{ size: number; mtime: string }> {
  const st = await stat(file);
  return { size: st.size, mtime: st.mtime.toISOString() };
}
