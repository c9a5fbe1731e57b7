import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFile, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { generate, readShards, type Conversation } from '../src/generate/generate.js';
import { parseShard } from '../src/read/sharding.js';
import type { ImageRecord } from '../src/types.js';
import { verify } from '../src/inspect/verify.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, ROOT, VG_DIR, VQA_ANNOTATIONS, VQA_QUESTIONS, runPrepare, tmpDir } from './helpers.js';

const sources = [
  { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
  { kind: 'coco-instances', paths: [COCO_INSTANCES] },
  { kind: 'vg', paths: [VG_DIR] },
  { kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] },
];

async function images(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const r of readShards<ImageRecord>(dir)) out.push(r.image);
  return out;
}

describe('sharded runs', () => {
  it('reads K/N, or N with K from a Kubernetes Indexed Job or a Slurm array', () => {
    expect(parseShard('3/8')).toEqual({ k: 3, n: 8 });
    expect(parseShard('8', { JOB_COMPLETION_INDEX: '2' })).toEqual({ k: 2, n: 8 });
    expect(parseShard('4', { SLURM_ARRAY_TASK_ID: '3' })).toEqual({ k: 3, n: 4 });
    expect(() => parseShard('4', {})).toThrowError(/JOB_COMPLETION_INDEX/);
    expect(() => parseShard('8/8')).toThrowError(/from 0 to N-1/);
    expect(() => parseShard('a/b')).toThrowError(/K\/N/);
  });

  it('four shards of prepare cover every image exactly once, and verify says so', async () => {
    const whole = await runPrepare({ sources, keepMissing: true, images: COCO_IMAGES });
    const all = (await images(whole.out)).sort();
    expect(all.length).toBe(whole.result.counts.images);
    expect(all.length).toBeGreaterThan(90);
    const dirs: string[] = [];
    const parts: string[][] = [];
    for (let k = 0; k < 4; k++) {
      const r = await runPrepare({ sources, keepMissing: true, images: COCO_IMAGES, shard: { k, n: 4 } });
      dirs.push(r.out);
      parts.push(await images(r.out));
      expect((await readdir(r.out)).filter((n) => n.startsWith('part-')).every((n) => n.startsWith(`part-s${k}of4-`))).toBe(true);
    }
    expect(parts.every((p) => p.length > 10)).toBe(true);
    expect(parts.flat().sort()).toEqual(all);
    expect(new Set(parts.flat()).size).toBe(all.length);
    expect(await verify(dirs)).toMatchObject({ ok: true, duplicates: { count: 0 }, missingShards: [] });

    // A missing shard, a duplicated shard file and an unfinished one are all reported.
    const three = await verify(dirs.slice(0, 3));
    expect(three.missingShards).toEqual([{ n: 4, missing: [3] }]);
    const shard0 = (await readdir(dirs[0]!)).find((n) => n.startsWith('part-'))!;
    await copyFile(path.join(dirs[0]!, shard0), path.join(dirs[1]!, shard0));
    await copyFile(path.join(dirs[0]!, shard0), path.join(dirs[2]!, `${shard0}.tmp`));
    const broken = await verify(dirs);
    expect(broken.ok).toBe(false);
    expect(broken.duplicates.count).toBe(parts[0]!.length);
    expect(broken.folders[1]!.problems).toContain(`${shard0} is not in the manifest`);
    expect(broken.folders[2]!.problems).toContain(`unfinished file ${shard0}.tmp`);
    const cli = spawnSync(path.join(ROOT, 'bin', 'instructify'), ['verify', ...dirs], { encoding: 'utf8' });
    expect(cli.status).toBe(1);
    expect(cli.stdout).toContain('not complete');
  });

  it('generate shards split the images of one prepared folder the same way', async () => {
    const prepared = await runPrepare({ sources: sources.slice(0, 2), images: COCO_IMAGES });
    const whole = await tmpDir();
    await generate({ input: prepared.out, out: whole, distribution: 'instructify-mix' });
    const ids = async (dir: string) => {
      const out: string[] = [];
      for await (const c of readShards<Conversation>(dir)) out.push(c.id);
      return out;
    };
    const halves = [await tmpDir(), await tmpDir()];
    for (const [k, dir] of halves.entries()) await generate({ input: prepared.out, out: dir, distribution: 'instructify-mix', shard: { k, n: 2 } });
    const [a, b] = [await ids(halves[0]!), await ids(halves[1]!)];
    expect([...a, ...b].sort()).toEqual((await ids(whole)).sort());
    expect(a.length).toBeGreaterThan(0);
    expect(b.length).toBeGreaterThan(0);
    expect((await verify(halves)).ok).toBe(true);
  });

  it('takes the shard index from the scheduler on the command line', async () => {
    const out = await tmpDir();
    const r = spawnSync(path.join(ROOT, 'bin', 'instructify'), ['prepare', '--source', `coco-instances=${COCO_INSTANCES}`, '--out', out, '--shard', '2', '-q'], {
      encoding: 'utf8',
      env: { ...process.env, SLURM_ARRAY_TASK_ID: '1' },
    });
    expect(r.status).toBe(0);
    expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).shard).toEqual({ k: 1, n: 2 });
    await rm(out, { recursive: true });
    const bad = spawnSync(path.join(ROOT, 'bin', 'instructify'), ['prepare', '--source', `coco-instances=${COCO_INSTANCES}`, '--out', out, '--shard', '2'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('JOB_COMPLETION_INDEX');
  });
});
