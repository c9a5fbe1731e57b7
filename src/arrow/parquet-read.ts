import { openAsBlob } from 'node:fs';
import { createRequire } from 'node:module';
import { tableFromIPC, type Table } from 'apache-arrow';
import { InstructifyError } from '../errors.js';

const require = createRequire(import.meta.url);

/**
 * A Parquet file as Arrow tables, one row group at a time (parquet-wasm reads
 * the ranges it needs from the file): memory holds one row group whatever
 * the file's size. A file that is not Parquet is an E_PARQUET error naming it.
 */
export async function* parquetRowGroups(file: string, columns?: string[]): AsyncGenerator<Table> {
  // parquet-wasm's Node entry is CommonJS and loads its wasm synchronously.
  const pw = require('parquet-wasm/node') as typeof import('parquet-wasm/node');
  let pf: import('parquet-wasm/node').ParquetFile;
  try {
    pf = await pw.ParquetFile.fromFile(await openAsBlob(file));
  } catch (err) {
    throw new InstructifyError('E_PARQUET', `not a readable Parquet file: ${(err as Error).message ?? String(err)}`, { file, cause: err });
  }
  const groups = pf.metadata().numRowGroups();
  for (let g = 0; g < groups; g++) {
    yield tableFromIPC((await pf.read({ rowGroups: [g], ...(columns ? { columns } : {}) })).intoIPCStream());
  }
}
