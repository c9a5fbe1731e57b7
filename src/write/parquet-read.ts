import { openAsBlob } from 'node:fs';
import { tableFromIPC, type Table } from 'apache-arrow';
import { InstructifyError } from '../errors.js';
import { parquetWasm } from './parquet-wasm.js';

/**
 * A Parquet file as Arrow tables, one row group at a time (parquet-wasm reads
 * the ranges it needs from the file): memory holds one row group whatever
 * the file's size. A file that is not Parquet is an E_PARQUET error naming it.
 * `columns` reads only those leaf columns; `skip` reads all but those under
 * the given dotted paths (skipping unread bytes is most of the saving).
 */
export async function* parquetRowGroups(file: string, columns?: string[], skip?: readonly string[]): AsyncGenerator<Table> {
  const pw = await parquetWasm();
  let pf: import('parquet-wasm/esm').ParquetFile;
  try {
    pf = await pw.ParquetFile.fromFile(await openAsBlob(file));
  } catch (err) {
    throw new InstructifyError('E_PARQUET', `not a readable Parquet file: ${(err as Error).message ?? String(err)}`, { file, cause: err });
  }
  const groups = pf.metadata().numRowGroups();
  if (skip?.length && groups > 0) {
    // Leaf columns by dotted path (`boxes.list.item.mask.polygons`); nested ones can be left out too.
    const leaves = pf.metadata().rowGroup(0).columns().map((c) => c.columnPath().join('.'));
    columns = leaves.filter((p) => !skip.some((s) => p === s || p.startsWith(s + '.')));
  }
  for (let g = 0; g < groups; g++) {
    yield tableFromIPC((await pf.read({ rowGroups: [g], ...(columns ? { columns } : {}) })).intoIPCStream());
  }
}
