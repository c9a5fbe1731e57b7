import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { tableToIPC, type Schema } from 'apache-arrow';
import { rowsToTable } from './arrow/columns.js';
import { InstructifyError } from './errors.js';

// parquet-wasm's Node entry is CommonJS and loads its wasm synchronously.
const require = createRequire(import.meta.url);
const parquet = require('parquet-wasm/node') as typeof import('parquet-wasm/node');

export type ShardFormat = 'parquet' | 'jsonl';

export interface ShardWriterOptions {
  dir: string;
  /** File name stem: shards are `<prefix>-00000.<ext>`. */
  prefix: string;
  format: ShardFormat;
  schema: Schema;
  /** Start a new shard after this many rows. */
  rowsPerShard: number;
  /** Parquet row group size in rows. */
  rowGroupRows?: number;
}

export interface ShardInfo {
  file: string;
  rows: number;
  bytes: number;
}

export const SHARD_EXTENSIONS: Record<ShardFormat, string> = { parquet: '.parquet', jsonl: '.jsonl' };

/**
 * Writes rows into rotating shards. Each shard is written under `<name>.tmp`
 * and renamed only once complete, so a reader (or a resumed run) never sees
 * a partial shard under its final name.
 */
export class ShardWriter {
  readonly shards: ShardInfo[] = [];
  private rows: object[] = [];
  private jsonl: { fh: FileHandle; tmp: string; final: string; rows: number; bytes: number } | null = null;
  private index = 0;
  private readonly opts: Required<ShardWriterOptions>;
  private readonly props: import('parquet-wasm/node').WriterProperties | null;

  constructor(opts: ShardWriterOptions) {
    if (!Number.isInteger(opts.rowsPerShard) || opts.rowsPerShard < 1) {
      throw new InstructifyError('E_OPTION', `rows per shard must be a positive integer, got ${opts.rowsPerShard}`);
    }
    this.opts = { rowGroupRows: 1000, ...opts };
    this.props =
      opts.format === 'parquet'
        ? new parquet.WriterPropertiesBuilder()
            .setCompression(parquet.Compression.ZSTD)
            .setMaxRowGroupSize(this.opts.rowGroupRows)
            .setCreatedBy('instructify')
            // Arrow schema metadata only reaches Parquet inside ARROW:schema; copy it to the
            // file's own key-value metadata so any Parquet reader sees the schema version.
            .setKeyValueMetadata(new Map(opts.schema.metadata))
            .build()
        : null;
  }

  private nextName(): { tmp: string; final: string } {
    const final = path.join(this.opts.dir, `${this.opts.prefix}-${String(this.index++).padStart(5, '0')}${SHARD_EXTENSIONS[this.opts.format]}`);
    return { final, tmp: `${final}.tmp` };
  }

  async write(row: object): Promise<void> {
    if (this.opts.format === 'jsonl') {
      if (!this.jsonl) {
        const { tmp, final } = this.nextName();
        this.jsonl = { fh: await open(tmp, 'w'), tmp, final, rows: 0, bytes: 0 };
      }
      const line = JSON.stringify(row) + '\n';
      await this.jsonl.fh.write(line);
      this.jsonl.rows++;
      this.jsonl.bytes += Buffer.byteLength(line);
      if (this.jsonl.rows >= this.opts.rowsPerShard) await this.closeJsonl();
      return;
    }
    this.rows.push(row);
    if (this.rows.length >= this.opts.rowsPerShard) await this.flushParquet();
  }

  private async closeJsonl(): Promise<void> {
    const j = this.jsonl;
    if (!j) return;
    this.jsonl = null;
    await j.fh.close();
    await rename(j.tmp, j.final);
    this.shards.push({ file: path.basename(j.final), rows: j.rows, bytes: j.bytes });
  }

  private async flushParquet(): Promise<void> {
    if (!this.rows.length) return;
    const rows = this.rows;
    this.rows = [];
    const table = rowsToTable(this.opts.schema, rows);
    const wasmTable = parquet.Table.fromIPCStream(tableToIPC(table, 'stream'));
    const bytes = parquet.writeParquet(wasmTable, this.props);
    const { tmp, final } = this.nextName();
    const fh = await open(tmp, 'w');
    try {
      await fh.write(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
    this.shards.push({ file: path.basename(final), rows: rows.length, bytes: bytes.length });
  }

  /** Write what is buffered and finish the last shard. */
  async close(): Promise<ShardInfo[]> {
    if (this.opts.format === 'jsonl') await this.closeJsonl();
    else await this.flushParquet();
    return this.shards;
  }

  /** After a failure: remove the unfinished shard. Finished shards stay; the manifest says the run failed. */
  async abort(): Promise<void> {
    this.rows = [];
    if (this.jsonl) {
      const j = this.jsonl;
      this.jsonl = null;
      await j.fh.close().catch(() => {});
      await rm(j.tmp, { force: true });
    }
  }
}

export async function fileSizeAndMtime(file: string): Promise<{ size: number; mtime: string }> {
  const st = await stat(file);
  return { size: st.size, mtime: st.mtime.toISOString() };
}
