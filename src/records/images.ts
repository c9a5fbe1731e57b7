import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadSharp } from './sharp.js';
import { InstructifyError } from '../errors.js';
import type { Size } from './assemble.js';
import type { RejectReason } from '../types.js';

/** The image root as `probeImage` needs it (symlinks resolved); a usage error when it is not there. */
export async function resolveImageRoot(root: string): Promise<string> {
  return realpath(root).catch((err: NodeJS.ErrnoException) => {
    throw new InstructifyError('E_OPTION', `--images: no such folder (${err.code ?? err.message}): is the path right?`, { file: root, cause: err });
  });
}

export type ProbeResult = { ok: true; size: Size | null } | { ok: false; reason: Extract<RejectReason, 'missing-image' | 'unreadable-image' | 'path-escape'>; detail: string };

/**
 * Checks that an image exists inside the root and, when `needSize`, reads
 * its size from the header with sharp (no pixels decoded).
 *
 * Sizes are the stored width and height, before any EXIF rotation: COCO and
 * Visual Genome boxes are given in that pixel space, so boxes from any
 * source line up with what sharp reports here.
 */
export async function probeImage(root: string, realRoot: string, rel: string, needSize: boolean): Promise<ProbeResult> {
  const file = path.join(root, rel);
  let st;
  try {
    st = await stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: 'missing-image', detail: code === 'ENOENT' ? `no file ${rel} under the image root` : `cannot read ${rel}: ${code}` };
  }
  if (!st.isFile()) return { ok: false, reason: 'missing-image', detail: `${rel} is not a file` };
  // A symlink inside the root may point outside it.
  const real = await realpath(file);
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
    return { ok: false, reason: 'path-escape', detail: `${rel} resolves outside the image root` };
  }
  if (!needSize) return { ok: true, size: null };
  try {
    const sharp = await loadSharp();
    const meta = await sharp(file).metadata();
    if (!meta.width || !meta.height) return { ok: false, reason: 'unreadable-image', detail: `${rel}: no width/height in the image header` };
    return { ok: true, size: { width: meta.width, height: meta.height } };
  } catch (err) {
    return { ok: false, reason: 'unreadable-image', detail: `${rel}: ${(err as Error).message}` };
  }
}
