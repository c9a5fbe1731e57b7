import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { COCO_CAPTIONS, COCO_INSTANCES, ROOT, tmpDir } from './helpers.js';

const BIN = path.join(ROOT, 'bin', 'instructify');
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run a shell pipeline; report every command's exit code. */
function sh(pipeline: string) {
  const r = spawnSync('bash', ['-c', `${pipeline}; echo "codes \${PIPESTATUS[*]}" >&2`], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
  const codes = /codes ([\d ]+)/.exec(r.stderr)?.[1]?.trim().split(' ').map(Number) ?? [];
  return { stdout: r.stdout, stderr: r.stderr.replace(/codes [\d ]+\n?$/, ''), codes };
}

describe('pipes', () => {
  it('reads a source from stdin and streams NDJSON to stdout; `| head -1` ends it quietly with exit 0', () => {
    const r = sh(`cat ${q(COCO_INSTANCES)} | ${q(BIN)} prepare --source coco-instances=- --out - -q | head -1`);
    expect(r.codes).toEqual([0, 0, 0]);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0]!) as { image: string; boxes: unknown[]; tree: string };
    expect(rec.image).toMatch(/^0+\d+\.jpg$/);
    expect(rec.boxes.length).toBeGreaterThan(0);
  });

  it('NDJSON on stdout holds the same records as JSONL shards in a folder', async () => {
    const out = await tmpDir();
    const folder = sh(`${q(BIN)} prepare --source coco-instances=${q(COCO_INSTANCES)} --source coco-captions=${q(COCO_CAPTIONS)} --out ${q(out)} --format jsonl -q`);
    expect(folder.codes).toEqual([0]);
    const stream = sh(`${q(BIN)} prepare --source coco-instances=${q(COCO_INSTANCES)} --source coco-captions=- --out - < ${q(COCO_CAPTIONS)}`);
    expect(stream.codes).toEqual([0]);
    // Logs and the summary go to stderr only.
    expect(stream.stderr).toMatch(/prepared 79 images in [\d.]+s -> stdout\n/);
    // Streamed records have no shards to report.
    expect(stream.stderr).not.toContain('shards');
    const shards = (await readdir(out)).filter((n) => n.startsWith('part-')).sort();
    let text = '';
    for (const s of shards) text += await readFile(path.join(out, s), 'utf8');
    // The stdin file is named '-' in provenance; nothing else differs.
    expect(stream.stdout).toBe(text);
  });

  it('streams an Arrow IPC stream that apache-arrow reads back', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'records.arrows');
    const r = sh(`${q(BIN)} prepare --source coco-instances=${q(COCO_INSTANCES)} --out - --format arrow --row-group-rows 20 -q > ${q(file)}`);
    expect(r.codes).toEqual([0]);
    const table = tableFromIPC(readFileSync(file));
    expect(table.numRows).toBe(79);
    expect(table.schema.fields.map((f) => f.name)).toContain('tree_nodes');
    const images = table.getChild('image')!.toArray() as string[];
    const at = images.indexOf('000000397133.jpg');
    expect((table.getChild('boxes')!.get(at) as { length: number }).length).toBe(19);
    expect(String(table.getChild('tree')!.get(at))).toContain('Object Counts:');
  });

  it('writes Arrow IPC file shards (.arrow) in a folder', async () => {
    const out = await tmpDir();
    const r = sh(`${q(BIN)} prepare --source coco-instances=${q(COCO_INSTANCES)} --out ${q(out)} --format arrow --rows-per-shard 50 -q`);
    expect(r.codes).toEqual([0]);
    const shards = (await readdir(out)).filter((n) => n.endsWith('.arrow')).sort();
    expect(shards).toEqual(['part-0-00000.arrow', 'part-0-00001.arrow']);
    const rows = shards.map((s) => tableFromIPC(readFileSync(path.join(out, s))).numRows);
    expect(rows).toEqual([50, 29]);
    // The file format: starts and ends with the ARROW1 magic.
    const bytes = readFileSync(path.join(out, shards[0]!));
    expect(bytes.subarray(0, 6).toString()).toBe('ARROW1');
    expect(bytes.subarray(-6).toString()).toBe('ARROW1');
  });

  it('says what is wrong with stdin misuse', () => {
    const vg = sh(`${q(BIN)} prepare --source vg=- --out - < /dev/null`);
    expect(vg.codes[0]).toBe(2);
    expect(vg.stderr).toContain('cannot read stdin');
    const two = sh(`${q(BIN)} prepare --source coco-instances=- --source coco-captions=- --out - < /dev/null`);
    expect(two.codes[0]).toBe(2);
    expect(two.stderr).toContain('only one input can be read from stdin');
    const parquet = sh(`${q(BIN)} prepare --source coco-instances=${q(COCO_INSTANCES)} --out - --format parquet`);
    expect(parquet.stderr).toContain('--out - streams ndjson or arrow');
  });
});

describe('generate --in -', () => {
  it('reads the records prepare streams to stdout, and says which line is bad', async () => {
    const out = await tmpDir();
    const r = sh(`${q(BIN)} prepare --source coco-captions=${q(COCO_CAPTIONS)} --source coco-instances=${q(COCO_INSTANCES)} --out - -q | ${q(BIN)} generate --in - --out ${q(out)} -q`);
    expect(r.codes).toEqual([0, 0]);
    const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as { images: number; conversations: number; status: string };
    expect(manifest).toMatchObject({ status: 'complete', images: 79 });
    expect(manifest.conversations).toBeGreaterThan(79);
    const bad = sh(`printf '{"image": "x.jpg"}\\nnot json\\n' | ${q(BIN)} generate --in - --out ${q(await tmpDir())} -q`);
    expect(bad.codes[1]).toBe(1);
    expect(bad.stderr).toContain('line 2 of stdin is not a JSON record');
  });
});
