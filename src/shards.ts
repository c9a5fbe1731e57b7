import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { encodeParquetShard, recordsToIpc } from './emit.js';
import { InstructifyError } from './errors.js';
import type { ImageRecord } from './types.js';

export type ShardFormat = 'parquet' | 'jsonl';

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
}

export interface ShardInfo {
  file: string;
  rows: number;
  bytes: number;
}

export const SHARD_EXTENSIONS: Record<ShardFormat, string> = { parquet: '.parquet', jsonl: '.jsonl' };

/**
 * Cuts an ordered stream of records into shards of exactly `rowsPerShard`
 * rows (the last may be smaller), one Arrow table and one Parquet encode per
 * shard. Each shard is written under `<name>.tmp` and renamed only once
 * complete, so a reader (or a resumed run) never sees a partial shard under
 * its final name.
 */
export class ShardWriter {
  readonly shards: ShardInfo[] = [];
  private pending: ImageRecord[] = [];
  private index = 0;
  private current: string | null = null;
  private readonly opts: Required<ShardWriterOptions>;

  constructor(opts: ShardWriterOptions) {
    if (!Number.isInteger(opts.rowsPerShard) || opts.rowsPerShard < 1) {
      throw new InstructifyError('E_OPTION', `rows per shard must be a positive integer, got ${opts.rowsPerShard}`);
    }
    this.opts = { rowGroupRows: 1000, ...opts };
  }

  /** Add records in output order; writes every shard that fills up. Returns the time spent writing (ms). */
  async add(records: readonly ImageRecord[]): Promise<number> {
    for (const r of records) this.pending.push(r);
    let ms = 0;
    while (this.pending.length >= this.opts.rowsPerShard) {
      const t = performance.now();
      await this.cut(this.opts.rowsPerShard);
      ms += performance.now() - t;
    }
    return ms;
  }

  private async cut(n: number): Promise<void> {
    const rows = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    const final = path.join(this.opts.dir, `${this.opts.prefix}-${String(this.index++).padStart(5, '0')}${SHARD_EXTENSIONS[this.opts.format]}`);
    const tmp = `${final}.tmp`;
    this.current = tmp;
    let bytes: number;
    if (this.opts.format === 'jsonl') {
      let text = '';
      for (const r of rows) text += JSON.stringify(r) + '\n';
      const fh = await open(tmp, 'w');
      try {
        await fh.write(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      bytes = Buffer.byteLength(text);
    } else {
      bytes = await encodeParquetShard({ ipc: recordsToIpc(rows), tmp, final, rowGroupRows: this.opts.rowGroupRows, metadata: this.opts.metadata });
    }
    this.current = null;
    this.shards.push({ file: path.basename(final), rows: rows.length, bytes });
  }

  /** Write what is buffered. */
  async close(): Promise<ShardInfo[]> {
    if (this.pending.length) await this.cut(this.pending.length);
    return this.shards;
  }

  /** After a failure: drop what is buffered and remove an unfinished `.tmp` file. Finished shards stay; the manifest says the run failed. */
  async abort(): Promise<void> {
    this.pending = [];
    if (this.current) await rm(this.current, { force: true });
  }
}

export async function fileSizeAndMtime(file: string): Promise<{ size: number; mtime: string }> {
  const st = await stat(file);
  return { size: st.size, mtime: st.mtime.toISOString() };
}
