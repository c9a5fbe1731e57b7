import { stat } from 'node:fs/promises';
import { writeSyntheticCoco } from '../src/sources/synthetic.js';

/**
 * Seeded COCO-instances-like files for the benchmarks: about 2 KB of
 * annotations per image (7 objects with 24-vertex polygons on average),
 * close to real COCO's shape. Reused when already made.
 */
export const BYTES_PER_IMAGE = 1950;

export async function cocoLikeFile(file: string, targetBytes: number, seed = 42): Promise<number> {
  const existing = await stat(file).catch(() => null);
  if (existing && Math.abs(existing.size - targetBytes) / targetBytes < 0.25) return existing.size;
  await writeSyntheticCoco({ instancesFile: file, count: Math.round(targetBytes / BYTES_PER_IMAGE), seed, objects: [3, 10], polygonPoints: 24 });
  return (await stat(file)).size;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, mb] = process.argv.slice(2);
  const size = await cocoLikeFile(file!, Number(mb) * 1e6);
  process.stdout.write(`${file}: ${(size / 1e6).toFixed(1)} MB\n`);
}
