import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PREPARED_SCHEMA_VERSION } from '../src/write/schema.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, VG_DIR, duckdb, runPrepare } from './helpers.js';

describe('Parquet shards', () => {
  it('are read back by DuckDB with every row, nested columns intact, and rotate by row count', async () => {
    const { result, out } = await runPrepare({
      sources: [
        { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
        { kind: 'coco-instances', paths: [COCO_INSTANCES] },
        { kind: 'vg', paths: [VG_DIR] },
      ],
      images: COCO_IMAGES,
      keepMissing: true,
      rowsPerShard: 30,
      rowGroupRows: 10,
    });
    expect(result.counts.images).toBe(84);
    const names = (await readdir(out)).sort();
    expect(names).toEqual(['manifest.json', 'part-0-00000.parquet', 'part-0-00001.parquet', 'part-0-00002.parquet', 'rejects.jsonl']);
    const glob = `'${out}/part-*.parquet'`;
    const [count] = await duckdb<{ n: string }>(`select count(*)::varchar as n from ${glob}`);
    expect(count!.n).toBe('84');

    const [row] = await duckdb<{ image: string; width: number; ncap: string; nbox: string; first_label: string; persons: string; poly_len: string }>(
      `select image, width, len(captions)::varchar as ncap, len(boxes)::varchar as nbox, boxes[1].label as first_label,
              len(list_filter(boxes, b -> b.label = 'person'))::varchar as persons,
              json_array_length(boxes[1].mask.polygons::JSON, '$[0]')::varchar as poly_len
       from ${glob} where image = '000000397133.jpg'`,
    );
    const truth = JSON.parse(readFileSync(COCO_INSTANCES, 'utf8')) as { annotations: { image_id: number; segmentation: number[][] }[] };
    const firstAnn = truth.annotations.find((a) => a.image_id === 397133)!;
    expect(row).toMatchObject({ image: '000000397133.jpg', width: 640, ncap: '5', nbox: '19', persons: '2', poly_len: String(firstAnn.segmentation[0]!.length) });

    const vg = await duckdb<{ label: string; attrs: string[] }>(
      `select b.label, b.attributes as attrs from (select unnest(boxes) as b from ${glob} where image = 'VG_100K_2/1.jpg') where b.source_id = '1058498'`,
    );
    expect(vg).toEqual([{ label: 'clock', attrs: ['green', 'tall'] }]);

    const [crowd] = await duckdb<{ n: string }>(`select count(*)::varchar as n from (select unnest(boxes) as b from ${glob}) where b.iscrowd and b.mask.format = 'rle' and b.mask.rle is not null`);
    expect(crowd!.n).toBe('5');

    // Every shard, not just the first, is zstd with the schema version in its metadata.
    for (const name of names.filter((n) => n.endsWith('.parquet'))) {
      const codecs = await duckdb<{ compression: string }>(`select distinct compression from parquet_metadata('${out}/${name}')`);
      expect(codecs).toEqual([{ compression: 'ZSTD' }]);
      const meta = await duckdb<{ key: string; value: string }>(`select decode(key) as key, decode(value) as value from parquet_kv_metadata('${out}/${name}')`);
      expect(meta.find((m) => m.key === 'instructify.schema')?.value).toBe(PREPARED_SCHEMA_VERSION);
    }
    // Min and max are kept for the top-level columns a reader filters row
    // groups by, and left out of the nested ones (no query uses them there).
    const stats = await duckdb<{ col: string; lo: string | null; hi: string | null; n: string }>(
      `select path_in_schema as col, stats_min_value as lo, stats_max_value as hi, row_group_num_rows::varchar as n from parquet_metadata('${out}/part-0-00000.parquet') where row_group_id = 0`,
    );
    const groupRows = Number(stats[0]!.n);
    const firstGroup = await duckdb<{ lo: string; hi: string }>(`select min(image) as lo, max(image) as hi from read_parquet('${out}/part-0-00000.parquet', file_row_number = true) where file_row_number < ${groupRows}`);
    expect(groupRows).toBe(10);
    expect(stats.find((c) => c.col === 'image')).toMatchObject(firstGroup[0]!);
    expect(stats.find((c) => c.col === 'width')!.lo).not.toBeNull();
    const nested = stats.filter((c) => c.col.includes(','));
    expect(nested.length).toBeGreaterThan(10);
    expect(nested.filter((c) => c.lo !== null || c.hi !== null)).toEqual([]);
    const groups = await duckdb<{ n: string }>(`select count(distinct row_group_id)::varchar as n from parquet_metadata('${out}/part-0-00000.parquet')`);
    expect(groups).toEqual([{ n: '3' }]);

    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ status: 'complete', schema: PREPARED_SCHEMA_VERSION, counts: { images: 84 } });
    expect(manifest.shards.map((s: { rows: number }) => s.rows)).toEqual([30, 30, 24]);
    expect(manifest.inputs.find((i: { file: string }) => i.file === COCO_INSTANCES)).toMatchObject({ size: readFileSync(COCO_INSTANCES).length, kind: 'coco-instances' });
    expect(manifest.per_source['coco-captions']).toEqual({ fragments: 79 + 395, images: 79 });
  });
});
