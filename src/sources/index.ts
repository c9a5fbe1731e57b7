import { cocoCaptions, cocoInstances } from './coco.js';
import { gqa } from './gqa.js';
import { lvis } from './lvis.js';
import type { SourceKind } from './types.js';
import { visualGenome } from './visual-genome.js';
import { vqav2 } from './vqa.js';
import { refcoco, refcocoPlus, refcocog } from './refcoco.js';
import { textcaps, textvqa } from './text-vqa.js';
import { aokvqa, okvqa, vqaE } from './knowledge-vqa.js';
import { chartqa, docvqa, infovqa, scienceqa, tallyqa, visual7w } from './choice-qa.js';
import { flickr30k, localizedNarratives } from './flickr30k.js';
import { custom, hfParquet, llava } from './custom.js';
import { conceptualCaptions, hrrsd, image2paragraph, remoteclip, visualNews, vsr } from './captions-more.js';
import { img2dataset } from './img2dataset.js';
import { diorRsvg, docowl, llavar, ocrVqa, stVqa, visualMrc } from './text-sets.js';
import { imageEditing, levirCc, spotTheDiff } from './pairs.js';

/** Every loader, by the name used in `--source KIND=PATHS`. */
export const SOURCE_KINDS: ReadonlyMap<string, SourceKind> = new Map(
  [
    cocoCaptions,
    cocoInstances,
    lvis,
    visualGenome,
    vqav2,
    gqa,
    refcoco,
    refcocoPlus,
    refcocog,
    textvqa,
    textcaps,
    okvqa,
    aokvqa,
    visual7w,
    tallyqa,
    vqaE,
    scienceqa,
    docvqa,
    infovqa,
    chartqa,
    flickr30k,
    localizedNarratives,
    vsr,
    image2paragraph,
    conceptualCaptions,
    img2dataset,
    ocrVqa,
    stVqa,
    visualMrc,
    llavar,
    docowl,
    visualNews,
    diorRsvg,
    hrrsd,
    remoteclip,
    levirCc,
    spotTheDiff,
    imageEditing,
    llava,
    hfParquet,
    custom,
  ].map((k) => [k.kind, k]),
);
