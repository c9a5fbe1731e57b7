import { describe, expect, it } from 'vitest';
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { ImageRecord, Reject } from '../src/types.js';
import { COCO_IMAGES, VQA_ANNOTATIONS, VQA_QUESTIONS, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

/** A tiny COCO captions file naming the given files, sizes optional. */
async function captionsFile(dir: string, images: { id: number; file_name: string; width?: number; height?: number }[]): Promise<string> {
  const file = path.join(dir, 'captions.json');
  await writeFile(
    file,
    JSON.stringify({
      images,
      annotations: images.map((i) => ({ image_id: i.id, id: i.id, caption: `caption of ${i.file_name}` })),
    }),
  );
  return file;
}

async function rejectsOf(out: string): Promise<Reject[]> {
  const text = await readFile(path.join(out, 'rejects.jsonl'), 'utf8');
  return text.trim() ? text.trim().split('\n').map((l) => JSON.parse(l) as Reject) : [];
}

describe('image checks', () => {
  it('reads sizes the annotations lack from the image header with sharp', async () => {
    // VQA v2 gives no sizes: put a real COCO image under the name VQA expects.
    const root = await tmpDir();
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(root, '000000006818.jpg'));
    const { result, out } = await runPrepare({ sources: [{ kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] }], images: root, format: 'jsonl' });
    const rows = await readJsonlShards<ImageRecord>(out, result);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ image: '000000006818.jpg', width: 640, height: 427 });
    expect(result.rejects['missing-image']).toBe(12);
  });

  it('sets aside missing images, or keeps them when asked', async () => {
    const root = await tmpDir();
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(root, 'a.jpg'));
    const ann = await captionsFile(root, [
      { id: 1, file_name: 'a.jpg', width: 640, height: 427 },
      { id: 2, file_name: 'gone.jpg', width: 100, height: 100 },
    ]);
    const dropped = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [ann] }], images: root, format: 'jsonl' });
    expect((await readJsonlShards<ImageRecord>(dropped.out, dropped.result)).map((r) => r.image)).toEqual(['a.jpg']);
    expect(await rejectsOf(dropped.out)).toEqual([expect.objectContaining({ reason: 'missing-image', image: 'gone.jpg', detail: expect.stringContaining('no file gone.jpg') })]);
    const kept = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [ann] }], images: root, format: 'jsonl', keepMissing: true });
    expect((await readJsonlShards<ImageRecord>(kept.out, kept.result)).map((r) => r.image).sort()).toEqual(['a.jpg', 'gone.jpg']);
  });

  it('rejects paths that leave the image root: "..", absolute, and symlinks pointing out', async () => {
    const parent = await tmpDir();
    const root = path.join(parent, 'root');
    await mkdir(root);
    await copyFile(path.join(COCO_IMAGES, '000000397133.jpg'), path.join(parent, 'outside.jpg'));
    await symlink(path.join(parent, 'outside.jpg'), path.join(root, 'link.jpg'));
    const ann = await captionsFile(parent, [
      { id: 1, file_name: '../outside.jpg', width: 640, height: 427 },
      { id: 2, file_name: '/etc/hostname', width: 640, height: 427 },
      { id: 3, file_name: 'link.jpg', width: 640, height: 427 },
      { id: 4, file_name: 'sub/../../outside.jpg', width: 640, height: 427 },
    ]);
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [ann] }], images: root, format: 'jsonl', keepMissing: true });
    expect(result.counts.images).toBe(0);
    const rejects = await rejectsOf(out);
    expect(rejects.map((r) => r.reason)).toEqual(['path-escape', 'path-escape', 'path-escape', 'path-escape']);
    expect(rejects.find((r) => r.image === 'link.jpg')?.detail).toContain('resolves outside the image root');
  });

  it('an unreadable image without sizes in the annotation is set aside as unreadable', async () => {
    const root = await tmpDir();
    await writeFile(path.join(root, 'broken.jpg'), 'this is not a jpeg');
    const ann = await captionsFile(path.join(root), [{ id: 1, file_name: 'broken.jpg' }]);
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [ann] }], images: root, format: 'jsonl' });
    expect(result.counts.images).toBe(0);
    expect(await rejectsOf(out)).toEqual([expect.objectContaining({ reason: 'unreadable-image', image: 'broken.jpg' })]);
  });

  it('uses the stored size of an EXIF orientation-6 image, the pixel space boxes are drawn in', async () => {
    const root = await tmpDir();
    await sharp({ create: { width: 40, height: 20, channels: 3, background: '#888' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toFile(path.join(root, 'rotated.jpg'));
    const meta = await sharp(path.join(root, 'rotated.jpg')).metadata();
    expect(meta.orientation).toBe(6);
    const ann = await captionsFile(root, [{ id: 1, file_name: 'rotated.jpg' }]);
    const { result, out } = await runPrepare({ sources: [{ kind: 'coco-captions', paths: [ann] }], images: root, format: 'jsonl' });
    expect((await readJsonlShards<ImageRecord>(out, result))[0]).toMatchObject({ width: 40, height: 20 });
  });
});
