import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Reject } from '../src/types.js';
import { COCO_CAPTIONS, COCO_IMAGES, COCO_INSTANCES, runPrepare, tmpDir } from './helpers.js';

const instancesText = readFileSync(COCO_INSTANCES, 'utf8');

async function manifestOf(out: string): Promise<{ status: string; error?: { code: string; message: string }; rejects?: Record<string, number> }> {
  return JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
}

async function failingRun(sources: { kind: string; paths: string[] }[]) {
  const out = await tmpDir();
  const err = await runPrepare({ sources, out }).then(
    () => {
      throw new Error('expected prepare to fail');
    },
    (e: unknown) => e as { code: string; message: string; file?: string; offset?: number },
  );
  return { err, out };
}

describe('malformed and truncated files', () => {
  it('a truncated file fails naming the file and byte, and leaves nothing that looks complete', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'instances_truncated.json');
    const cut = Math.floor(instancesText.length * 0.6);
    await writeFile(file, instancesText.slice(0, cut));
    const { err, out } = await failingRun([{ kind: 'coco-instances', paths: [file] }]);
    expect(err.code).toBe('E_JSON_TRUNCATED');
    expect(err.file).toBe(file);
    expect(err.offset).toBe(Buffer.byteLength(instancesText.slice(0, cut)));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/inside "annotations" element \d+/);
    const m = await manifestOf(out);
    expect(m.status).toBe('failed');
    expect(m.error?.code).toBe('E_JSON_TRUNCATED');
    expect((await readdir(out)).filter((n) => n.startsWith('part-'))).toEqual([]);
  });

  it('malformed JSON inside an annotation names the byte offset of the fault', async () => {
    const dir = await tmpDir();
    const file = path.join(dir, 'instances_broken.json');
    const at = instancesText.indexOf('"iscrowd": 0', instancesText.indexOf('"annotations"') + 5000);
    const broken = instancesText.slice(0, at) + '"iscrowd": 0 0' + instancesText.slice(at + '"iscrowd": 0'.length);
    await writeFile(file, broken);
    const { err, out } = await failingRun([{ kind: 'coco-instances', paths: [file] }]);
    expect(err.code).toBe('E_JSON_SYNTAX');
    expect(err.file).toBe(file);
    expect(err.offset).toBe(at + '"iscrowd": 0 '.length);
    expect((await manifestOf(out)).status).toBe('failed');
  });

  it('captions given as instances says which keys it expected and what the file looks like', async () => {
    const { err } = await failingRun([{ kind: 'coco-instances', paths: [COCO_CAPTIONS] }]);
    expect(err.code).toBe('E_WRONG_KIND');
    expect(err.message).toContain('bbox, category_id');
    expect(err.message).toContain('looks like a COCO captions file');
    expect(err.message).toContain(COCO_CAPTIONS);
  });

  it('instances given as captions is caught too', async () => {
    const { err } = await failingRun([{ kind: 'coco-captions', paths: [COCO_INSTANCES] }]);
    expect(err.code).toBe('E_WRONG_KIND');
    expect(err.message).toContain('looks like a COCO instances file');
  });

  it('a Visual Genome file given as COCO says the top level is wrong', async () => {
    const { err } = await failingRun([{ kind: 'coco-captions', paths: [path.join(COCO_INSTANCES, '..', '..', '..', 'visual_genome', 'objects.json')] }]);
    expect(err.code).toBe('E_WRONG_KIND');
    expect(err.message).toContain('top-level array');
  });
});

describe('bad records are set aside, counted, and fatal only in strict mode', () => {
  /** The real file with five planted faults, each in its own annotation. */
  async function plantedFile(): Promise<{ file: string; faults: Record<string, number> }> {
    const data = JSON.parse(instancesText) as { annotations: Record<string, unknown>[] };
    const base = data.annotations[0]!; // image 453302, 640 wide
    const plant = (id: number, patch: Record<string, unknown>) => data.annotations.push({ ...base, id, ...patch });
    plant(900000001, { bbox: [null, 10, 20, 20] });
    plant(900000002, { bbox: [-50, 10, 20, 20] });
    plant(900000003, { bbox: [600, 10, 200, 20] });
    plant(900000004, { category_id: 9999 });
    plant(900000005, { image_id: 123 });
    const dir = await tmpDir();
    const file = path.join(dir, 'instances_planted.json');
    await writeFile(file, JSON.stringify(data));
    return { file, faults: { 'bad-box': 2, 'box-outside-image': 1, 'unknown-category': 1, 'unknown-image': 1 } };
  }

  it('writes each bad record to rejects.jsonl with its reason, file and offset, and goes on', async () => {
    const { file, faults } = await plantedFile();
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }], images: COCO_IMAGES });
    expect(result.counts.images).toBe(79);
    expect(result.counts.boxes).toBe(624);
    expect(result.rejects).toEqual(faults);
    const rejects = (await readFile(path.join(out, 'rejects.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Reject);
    expect(rejects).toHaveLength(5);
    const text = readFileSync(file);
    for (const r of rejects) {
      expect(r.file).toBe(file);
      expect(r.source).toBe('coco-instances');
      // The offset points at the annotation itself (a polygon annotation has no inner braces).
      const from = text.subarray(r.offset!).toString('utf8', 0, 20_000);
      expect(from.startsWith('{')).toBe(true);
      expect(from.slice(0, from.indexOf('}'))).toMatch(/"id":90000000\d$/);
    }
    expect(rejects.find((r) => r.reason === 'unknown-category')!.detail).toContain('9999');
    const img = (JSON.parse(instancesText) as { images: { id: number; width: number; height: number }[] }).images.find((i) => i.id === 453302)!;
    expect(rejects.find((r) => r.reason === 'box-outside-image')!.detail).toContain(`${img.width}x${img.height}`);
    const m = await manifestOf(out);
    expect(m.status).toBe('complete');
    expect(m.rejects).toEqual(faults);
  });

  it('--strict stops at the first bad record with an error naming it', async () => {
    const { file } = await plantedFile();
    const out = await tmpDir();
    const err = (await runPrepare({ sources: [{ kind: 'coco-instances', paths: [file] }], out, strict: true }).catch((e: unknown) => e)) as {
      code: string;
      file: string;
      message: string;
    };
    expect(err.code).toBe('E_BAD_RECORD');
    expect(err.file).toBe(file);
    expect(err.message).toMatch(/strict/);
    expect((await manifestOf(out)).status).toBe('failed');
  });
});

describe('options are checked before anything is read', () => {
  it('rejects unknown kinds, empty sources and bad numbers with E_OPTION', async () => {
    const out = await tmpDir();
    await expect(runPrepare({ sources: [{ kind: 'nope', paths: ['x'] }], out })).rejects.toMatchObject({ code: 'E_OPTION', message: expect.stringContaining('known kinds: coco-captions') });
    await expect(runPrepare({ sources: [], out })).rejects.toMatchObject({ code: 'E_OPTION' });
    await expect(runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }], out, rowsPerShard: 0 })).rejects.toMatchObject({ code: 'E_OPTION' });
    await expect(runPrepare({ sources: [{ kind: 'coco-captions', paths: ['/no/such/file.json'] }], out })).rejects.toMatchObject({ code: 'E_IO' });
    expect(await readdir(out)).toEqual([]);
  });

  it('a wrong --images is E_OPTION and leaves an earlier run\'s output in the folder as it was', async () => {
    const { out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }], images: COCO_IMAGES });
    const before = (await readdir(out)).sort();
    expect(before).toContain('manifest.json');
    const wrong = path.join(COCO_IMAGES, 'no-such-folder');
    await expect(runPrepare({ sources: [{ kind: 'coco-captions', paths: [COCO_CAPTIONS] }], images: wrong, out })).rejects.toMatchObject({
      code: 'E_OPTION',
      message: `${wrong}: --images: no such folder (ENOENT): is the path right?`,
    });
    expect((await readdir(out)).sort()).toEqual(before);
    expect((await manifestOf(out)).status).toBe('complete');
  });
});
