/**
 * The typed records that flow between stages, defined in one place.
 *
 * Flow: source files -> Fragment (one source's facts about one image, in that
 * source's units) -> ImageGroup (all fragments of one image, after the join)
 * -> ImageRecord (normalised, validated, one row of a prepared shard).
 */

/** A mask as the dataset gave it. Coordinates are pixels of the annotated image. */
export interface Mask {
  /**
   * 'polygon': `polygons` is the JSON text of a list of flat [x0,y0,x1,y1,...]
   * rings, exactly as the dataset wrote it (no float rounding, and no cost of
   * parsing coordinates before the tree stage needs them);
   * 'rle': `rle` holds a COCO compressed RLE string.
   */
  format: 'polygon' | 'rle';
  polygons: string | null;
  rle: string | null;
  /** Size of the mask grid (RLE) or of the image the polygon was drawn on (may be 0 when unknown). */
  height: number;
  width: number;
}

/** A box as a source reports it: pixels, top-left origin, x/y/width/height. */
export interface RawBox {
  /** Null while the label is only known by category id (COCO: categories come last). */
  label: string | null;
  categoryId: number | null;
  x: number;
  y: number;
  w: number;
  h: number;
  attributes: string[];
  relations: string[];
  mask: Mask | null;
  iscrowd: boolean;
  /** The dataset's own id for this object, for provenance. */
  sourceId: string | null;
  /** x, y, w, h are fractions of the image (0..1) rather than pixels (datasets that give them so). */
  normalized?: boolean;
}

export interface RawRegion {
  text: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface QAPair {
  question: string;
  /** The answer to train on (VQA: the most common of its answers). */
  answer: string;
  /** Every answer the dataset has for the question (VQA v2: all ten). */
  answers: string[];
  source: string;
}

/** Where a fragment came from, so a reject can name the file and byte. */
export interface Provenance {
  file: string;
  offset: number;
}

/**
 * One source's facts about one image. `ref` is the canonical identity used to
 * join (e.g. `coco:397133`, `vg:1`), aliases already resolved.
 */
export interface Fragment {
  ref: string;
  source: string;
  /** The image family of the source ('coco', 'vg'): boxes are in the pixel space of that family's copy of the image. */
  family: string;
  /** A catalog fragment comes from a dataset's image table: it names the file and/or its size. */
  catalog: boolean;
  /** Relative file name as the dataset's image table gives it (COCO `file_name`, VG url tail). */
  path: string | null;
  width: number | null;
  height: number | null;
  /**
   * When set, this fragment is only valid if a catalog fragment from the named
   * source exists for the same image (a COCO annotation whose image_id is not in
   * its file's `images` is an annotation for an unknown image).
   */
  requiresCatalogFrom: string | null;
  captions: string[];
  /**
   * Ready-made statements a dataset gives besides captions and QA: OCR text
   * ("The text in the image reads ..."), rationales, explanations, counts
   * ("There are 3 dogs."), existing instruction turns.
   */
  facts: string[];
  boxes: RawBox[];
  qa: RawQA[];
  regions: RawRegion[];
  /** Category ids the dataset says are not in the image (LVIS `neg_category_ids`), named at assembly. */
  absentCategoryIds: number[];
  /** Category ids whose instances the dataset did not all annotate (LVIS `not_exhaustive_category_ids`): never counted. */
  uncountedCategoryIds: number[];
  /** State this source's box labels as a fact, "This image contains ..." (LVIS, whose names come at assembly). */
  labelSentence: boolean;
  prov: Provenance;
}

/**
 * A question and/or its answers as one file gives them. VQA v2 keeps
 * questions and answers in separate files; the assembler pairs them by `id`.
 */
export interface RawQA {
  id: string | null;
  question: string | null;
  answer: string | null;
  answers: string[];
}

/** All fragments of one image, in a deterministic order. */
export interface ImageGroup {
  ref: string;
  fragments: Fragment[];
}

export interface Caption {
  text: string;
  source: string;
}

/** A box in the output: corners normalised to 0..1, top-left origin. */
export interface Box {
  label: string;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  attributes: string[];
  relations: string[];
  source: string;
  iscrowd: boolean;
  sourceId: string | null;
  mask: Mask | null;
}

export interface Region {
  text: string;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  source: string;
}

/** One row of a prepared shard: everything known about one image. */
export interface ImageRecord {
  /** Path relative to the image root; the join key users see. */
  image: string;
  width: number | null;
  height: number | null;
  /** The identity the sources were joined on (`coco:397133`, `vg:1`). */
  ref: string;
  sources: string[];
  captions: Caption[];
  /** Statements a dataset gives besides captions and QA (see Fragment.facts), each once. */
  facts: Caption[];
  boxes: Box[];
  qa: QAPair[];
  regions: Region[];
  /** Labels a dataset says are not in the image (LVIS negative categories); never guessed. */
  absent: string[];
  /**
   * Labels whose boxes are some of the objects, not all (LVIS
   * `not_exhaustive_category_ids`): never counted, never said absent.
   * Missing in shards of schema version 3 and older: read as none.
   */
  uncounted?: string[];
  /**
   * The ASCII tree of the image's objects (METHOD.md section 3), or with
   * `--no-tree` the flat `[label, x1, y1, x2, y2]` list; null when the image
   * has no boxes.
   */
  tree: string | null;
  /** The tree's nodes in print order; `parent` indexes this list (-1: a root). */
  treeNodes: TreeNodeRow[];
}

export interface TreeNodeRow {
  /** Primary label first, then the other names the merged boxes had. */
  labels: string[];
  /** Normalised corners, top-left origin. */
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** Mask's median position, 0..1, y up. */
  cx: number;
  cy: number;
  /** Mask's share of the image, in percent. */
  pixelPct: number;
  /** Depth layers under the mask, 0 = closest; null without a depth map. */
  depths: number[] | null;
  parent: number;
  /** How many input boxes the node stands for. */
  merged: number;
}

/** Why a record or part of one was set aside. Stable strings: they appear in manifests. */
export type RejectReason =
  | 'bad-box'
  | 'box-outside-image'
  | 'image-size-unknown'
  | 'mask-outside-box'
  | 'unknown-category'
  | 'unknown-image'
  | 'missing-image'
  | 'unreadable-image'
  | 'path-escape'
  | 'bad-record'
  | 'depth-unreadable'
  /** An img2dataset record whose download failed: no image to use. */
  | 'not-downloaded'
  /** Two images to compose side by side, one of which cannot be read. */
  | 'pair-unreadable';

export interface Reject {
  reason: RejectReason;
  detail: string;
  source: string | null;
  file: string | null;
  offset: number | null;
  image: string | null;
}
