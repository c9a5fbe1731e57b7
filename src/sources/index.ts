import { cocoCaptions, cocoInstances } from './coco.js';
import { gqa } from './gqa.js';
import { lvis } from './lvis.js';
import type { SourceKind } from './types.js';
import { visualGenome } from './visual-genome.js';
import { vqav2 } from './vqa.js';

/** Every loader, by the name used in `--source KIND=PATHS`. */
export const SOURCE_KINDS: ReadonlyMap<string, SourceKind> = new Map(
  [cocoCaptions, cocoInstances, lvis, visualGenome, vqav2, gqa].map((k) => [k.kind, k]),
);
