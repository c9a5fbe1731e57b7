import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { RecordBatchFileWriter, tableToIPC, type Schema } from 'apache-arrow';
import { TableBuilder } from './arrow/columns.js';
import { parquetWasm, type ParquetWasm } from './arrow/parquet-wasm.js';
import { preparedSchema } from './schema.js';

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
    const fh = await open(this.tmp, 'w');
    let bytes = 0;
    try {
      for await (const chunk of out as unknown as AsyncIterable<Uint8Array>) {
        await fh.write(chunk);
        bytes += chunk.length;
      }
      await fh.sync();
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
import { InstructifyError } from './errors.js';

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
   * the shard's streaming encoder at once, so at most one is held. JSONL:
   * the shard's lines.
   */
  private readonly rowGroup: TableBuilder;
  private file: ParquetFileStream | null = null;
  /** Arrow IPC file format: batches collect in the writer until the shard is cut. */
  private arrowFile: RecordBatchFileWriter | null = null;
  private lines: string[] = [];
  private pendingRows = 0;
  private index = 0;
  private current: string | null = null;
  private readonly opts: Required<ShardWriterOptions>;

  constructor(opts: ShardWriterOptions) {
    if (!Number.isInteger(opts.rowsPerShard) || opts.rowsPerShard < 1) {
      throw new InstructifyError('E_OPTION', `rows per shard must be a positive integer, got ${opts.rowsPerShard}`);
    }
    this.opts = { rowGroupRows: 1000, schema: preparedSchema, ...opts };
    this.rowGroup = new TableBuilder(this.opts.schema);
  }

  /** Add records in output order; writes every shard that fills up. */
  async add(records: readonly object[]): Promise<void> {
    for (const r of records) {
      if (this.opts.format === 'jsonl') this.lines.push(JSON.stringify(r));
      else {
        // Parquet and Arrow: a row group at a time.
        this.rowGroup.append(r);
        if (this.rowGroup.length >= this.opts.rowGroupRows) await this.flushRowGroup();
      }
      if (++this.pendingRows >= this.opts.rowsPerShard) await this.cut();
    }
  }

  private shardName(index: number): string {
    return path.join(this.opts.dir, `${this.opts.prefix}-${String(index).padStart(5, '0')}${SHARD_EXTENSIONS[this.opts.format]}`);
  }

  private async flushRowGroup(): Promise<void> {
    if (!this.rowGroup.length) return;
    if (this.opts.format === 'arrow') {
      this.arrowFile ??= new RecordBatchFileWriter();
      // Batches, not a table: writing a table to a file writer twice fails.
      for (const batch of this.rowGroup.take().batches) this.arrowFile.write(batch);
      return;
    }
    if (this.file === null) {
      this.current = `${this.shardName(this.index)}.tmp`;
      const pq = await parquetWasm();
      this.file = new ParquetFileStream(pq, this.current, writerProperties(pq, this.opts.rowGroupRows, this.opts.metadata));
    }
    await this.file.write(tableToIPC(this.rowGroup.take(), 'stream'));
  }

  /** Finish the current shard with everything pending. */
  private async cut(): Promise<void> {
    // The last row group first: it opens the file under this shard's name if nothing did yet.
    if (this.opts.format !== 'jsonl') await this.flushRowGroup();
    const rows = this.pendingRows;
    this.pendingRows = 0;
    const final = this.shardName(this.index++);
    const tmp = `${final}.tmp`;
    this.current = tmp;
    let bytes: number;
    if (this.opts.format === 'jsonl') {
      const text = this.lines.join('\n') + '\n';
      this.lines = [];
      await writeComplete(tmp, final, text);
      bytes = Buffer.byteLength(text);
    } else if (this.opts.format === 'arrow') {
      const writer = this.arrowFile!;
      this.arrowFile = null;
      writer.finish();
      const data = writer.toUint8Array(true);
      await writeComplete(tmp, final, data);
      bytes = data.length;
    } else {
      bytes = await this.file!.finish();
      this.file = null;
      await rename(tmp, final);
    }
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
    this.lines = [];
    this.pendingRows = 0;
    this.arrowFile = null;
    if (this.file) await this.file.finish().catch(() => 0);
    this.file = null;
    if (this.current) await rm(this.current, { force: true });
  }
}

/** Write a whole file under its temporary name, flush it to disk, then give it its final name. */
async function writeComplete(tmp: string, final: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(tmp, 'w');
  try {
    if (typeof data === 'string') await fh.write(data);
    else await fh.write(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, final);
}

export async function fileSizeAndMtime(file: string): Promise<{ size: number; mtime: string }> {
  const st = await stat(file);
  return { size: st.size, mtime: st.mtime.toISOString() };
}
