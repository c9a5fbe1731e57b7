import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, duckdb, tmpDir } from './helpers.js';

const BIN = path.join(ROOT, 'bin', 'instructify');

function run(args: string[], cwd = ROOT) {
  const r = spawnSync(BIN, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bin/instructify', () => {
  it('--help lists the commands and prepare --help its options', () => {
    const top = run(['--help']);
    expect(top.code).toBe(0);
    for (const c of ['prepare', 'demo', 'sources']) expect(top.stdout).toContain(c);
    const prep = run(['prepare', '--help']);
    for (const o of ['--source', '--images', '--memory-budget', '--rows-per-shard', '--format', '--strict', '--workers']) expect(prep.stdout).toContain(o);
  });

  it('prepares the real COCO slice, prints a JSON summary on stdout and no progress when stderr is not a terminal', async () => {
    const out = await tmpDir();
    const r = run(['prepare', '--images', COCO_IMAGES, '--source', `coco-captions=${COCO_CAPTIONS}`, '--source', `coco-instances=${COCO_INSTANCES}`, '--out', out, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const summary = JSON.parse(r.stdout) as { counts: { images: number; captions: number; boxes: number } };
    expect(summary.counts).toMatchObject({ images: 79, captions: 395, boxes: 624 });
    const [row] = await duckdb<{ n: string }>(`select count(*)::varchar as n from '${out}/part-*.parquet'`);
    expect(row!.n).toBe('79');
  });

  it('a human summary goes to stderr: images, boxes, rejects and time per stage', async () => {
    const out = await tmpDir();
    const r = run(['prepare', '--source', `coco-instances=${COCO_INSTANCES}`, '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/prepared 79 images/);
    expect(r.stderr).toMatch(/boxes 624/);
    expect(r.stderr).toMatch(/rejects: none/);
    expect(r.stderr).toMatch(/time per stage: parse [\d.]+s/);
  });

  // `script` runs the CLI on a pseudo-terminal, as a person at a terminal would see it.
  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!hasScript)('shows progress (bytes read, rate, ETA) on a terminal', async () => {
    const out = await tmpDir();
    const cmd = [BIN, 'prepare', '--source', `coco-instances=${COCO_INSTANCES}`, '--source', `coco-captions=${COCO_CAPTIONS}`, '--out', out].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const screen = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\x1b[78]/g, '');
    expect(screen).toMatch(/reading \S+ \d+% \| [\d.]+[KM]?B of [\d.]+[KM]?B \| /);
    expect(screen).toMatch(/writing \S+ 100% \| 79 images \| \d+ images\/s \| ETA \d+s/);
    expect(screen).toContain('prepared 79 images');
  });

  it('a truncated file exits 1 with the error code, file and byte, and no stack trace', async () => {
    const dir = await tmpDir();
    const bad = path.join(dir, 'instances.json');
    const text = readFileSync(COCO_INSTANCES, 'utf8');
    await writeFile(bad, text.slice(0, 100_000));
    const r = run(['prepare', '--source', `coco-instances=${bad}`, '--out', path.join(dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_JSON_TRUNCATED');
    expect(r.stderr).toContain(`${bad} at byte 100000`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(JSON.parse(readFileSync(path.join(dir, 'out', 'manifest.json'), 'utf8')).status).toBe('failed');
  });

  it('usage mistakes exit non-zero with a message that says what is expected', () => {
    const unknown = run(['prepare', '--source', 'cocoo=x.json', '--out', '/tmp/x']);
    // Exit 2 for every usage mistake, commander's own included, with a pointer to --help rather than the whole help.
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown source kind "cocoo"');
    expect(unknown.stderr).toContain('(add --help to see the options)');
    expect(unknown.stderr.split('\n').length).toBeLessThan(6);
    expect(run(['prepar']).stderr).toContain('Did you mean prepare?');
    expect(run(['prepar']).code).toBe(2);
    expect(run(['prepare', '--help']).code).toBe(0);
    const noSource = run(['prepare', '--out', '/tmp/instructify-none']);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toContain('add at least one --source');
    const badSize = run(['prepare', '--source', `coco-captions=${COCO_CAPTIONS}`, '--out', '/tmp/x', '--memory-budget', 'lots']);
    expect(badSize.code).not.toBe(0);
    expect(badSize.stderr).toContain('is not a size');
    const badGrowth = run(['prepare', '--source', `coco-captions=${COCO_CAPTIONS}`, '--out', '/tmp/x', '--heap-growth', '2.5']);
    expect(badGrowth.code).not.toBe(0);
    expect(badGrowth.stderr).toContain('"2.5" is not a heap growth in whole percent (0 to 1000)');
  });

  it('warns when no image was prepared and records were set aside (a wrong mapping, most often)', async () => {
    const { writeFile } = await import('node:fs/promises');
    const dir = await tmpDir();
    await writeFile(path.join(dir, 'data.jsonl'), '{"img": "a.jpg", "text": "A cat."}\n{"img": "b.jpg", "text": "A dog."}\n');
    await writeFile(path.join(dir, 'my.mapping.json'), JSON.stringify({ image: 'picture', captions: 'text' }));
    const source = `custom=${path.join(dir, 'my.mapping.json')},${path.join(dir, 'data.jsonl')}`;
    const wrong = run(['prepare', '--source', source, '--out', path.join(dir, 'out'), '--format', 'jsonl']);
    // Exit 3 (E_EMPTY): a script must not go on from an empty output as if it were a success.
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('warning: no images prepared, and 2 records were set aside (bad-record): see rejects.jsonl for why');
    expect(wrong.stderr).toContain(`instructify: E_EMPTY: no record was prepared: all 2 were set aside (bad-record); see ${path.join(dir, 'out', 'rejects.jsonl')}`);
    await writeFile(path.join(dir, 'my.mapping.json'), JSON.stringify({ image: 'img', captions: 'text' }));
    const right = run(['prepare', '--source', source, '--out', path.join(dir, 'out'), '--format', 'jsonl']);
    expect(right.stderr).toContain('prepared 2 images');
    expect(right.stderr).not.toContain('warning:');
  });

  it('a file system error gets the E_IO code and the path, without a stack trace', async () => {
    const { writeFile } = await import('node:fs/promises');
    const file = path.join(await tmpDir(), 'a-file');
    await writeFile(file, 'not a folder');
    const r = run(['demo', '--out', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`instructify: E_IO: ENOTDIR: not a directory, mkdir '${file}/sample/images'; a file was given where a folder is needed (or a file is in the way of a folder): check the path\n`);
  });

  it('demo makes a sample dataset and prepares it with no server or network', async () => {
    const dir = await tmpDir();
    const r = run(['demo', '--out', path.join(dir, 'demo'), '--images', '12']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('made 12 sample images');
    const [row] = await duckdb<{ n: string; boxes: string }>(`select count(*)::varchar as n, sum(len(boxes))::varchar as boxes from '${dir}/demo/prepared/part-*.parquet'`);
    expect(row!.n).toBe('12');
    expect(Number(row!.boxes)).toBeGreaterThan(12);
    // And the conversations it generated, from the facts.
    const [conv] = await duckdb<{ images: string; gens: string; marked: string; n: string }>(
      `select count(distinct image)::varchar as images, string_agg(distinct generator, ',') as gens,
              count(*) filter (where starts_with(conversations[1].value, '<image>'))::varchar as marked, count(*)::varchar as n
       from '${dir}/demo/conversations/part-*.parquet'`,
    );
    expect(conv).toMatchObject({ images: '12', gens: 'facts' });
    expect(conv!.marked).toBe(conv!.n);
    expect(r.stdout).toMatch(/conversation \(facts-[a-z-]+\):\n  human: <image> \| /);
    // It ends with the report: its path printed last, a card per image, each with its picture.
    const printed = /report: 12 images with their boxes, trees and conversations -> (.+index\.html)\n$/.exec(r.stdout);
    expect(printed?.[1]).toBe(path.resolve(dir, 'demo', 'report', 'index.html'));
    const page = readFileSync(printed![1]!, 'utf8');
    expect(page.match(/<article class="card"/g)).toHaveLength(12);
    expect(page.match(/<img src="thumbs\/[0-9a-f]{16}\.jpg"/g)).toHaveLength(12);
  });
  it('--limit N: generate, run and preview take only the first N images, and stats says how many were worked on', async () => {
    const dir = await tmpDir();
    const sources = ['--source', `coco-captions=${COCO_CAPTIONS}`, '--source', `coco-instances=${COCO_INSTANCES}`];
    const ran = run(['run', ...sources, '--out', path.join(dir, 'run'), '--limit', '3']);
    expect(ran.code).toBe(0);
    // The run ends, and says so: generate stopping early must not leave prepare waiting (node would
    // then exit 0 on an empty event loop with nothing printed).
    expect(ran.stderr).toMatch(/generated \d+ conversations for 3 of 3 images worked on/);
    expect(JSON.parse(readFileSync(path.join(dir, 'run', 'manifest.json'), 'utf8'))).toMatchObject({ status: 'complete', images: 3, limit: 3 });
    const [runRows] = await duckdb<{ images: string }>(`select count(distinct image)::varchar as images from '${dir}/run/part-*.parquet'`);
    expect(runRows!.images).toBe('3');
    expect(run(['prepare', ...sources, '--out', path.join(dir, 'prepared'), '-q']).code).toBe(0);
    const gen = run(['generate', '--in', path.join(dir, 'prepared'), '--out', path.join(dir, 'gen'), '--limit', '2']);
    expect(gen.code).toBe(0);
    expect(gen.stderr).toMatch(/for 2 of 2 images worked on/);
    const stats = run(['stats', path.join(dir, 'gen')]);
    expect(stats.stdout).toMatch(/^generate output, complete: 2 images worked on, 2 with conversations, \d+ conversations kept\n  0 requests to servers, 0 answers replayed from the cache/);
    const preview = run(['preview', '--in', path.join(dir, 'prepared'), '--limit', '1']);
    expect(preview.code).toBe(0);
    // One image: one title line naming a .jpg (the other rules name prompts).
    expect(preview.stdout.split('\n').filter((l) => /^── \S+\.jpg /.test(l))).toHaveLength(1);
  });
});
