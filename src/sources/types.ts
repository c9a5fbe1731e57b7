import type { JsonValue } from '../read/json-splitter.js';
import type { Fragment, Mask, RawBox, Reject } from '../types.js';

/** Image families: datasets that share image identities. */
export type Family = string;

/**
 * Shared state that sources build while reading and the record assembler
 * reads afterwards: small tables only (ids and names), never annotations.
 */
export interface IngestState {
  /** Visual Genome image id -> COCO image id, from VG image_data `coco_id`. */
  vgToCoco: Map<number, number>;
  /** Per source name, COCO-style category id -> name. */
  categories: Map<string, Map<number, string>>;
  /** Per source, boxes by annotation id, for files that refer to another file's boxes (RefCOCO refs -> instances). Ingest only. */
  annotationBoxes: Map<string, Map<number, number[]>>;
  /** Per source, the same annotations' segmentations as masks (RefCOCO alone gets its objects' masks from its instances.json). */
  annotationMasks: Map<string, Map<number, Mask>>;
}

export function createIngestState(): IngestState {
  return { vgToCoco: new Map(), categories: new Map(), annotationBoxes: new Map(), annotationMasks: new Map() };
}

/** What a source's file handler may do with what it reads. */
export interface SourceSink {
  emit(fragment: Fragment): void;
  reject(r: Reject): void;
}

/** Handles the values of one input file, one at a time. */
export interface FileHandler {
  /** How the file is read (default 'json': elements of its top-level arrays and objects). */
  format?: import('../../transforms/record-values.js').InputFormat;
  /** Parquet: only these columns are read. */
  columns?: string[];
  /** Top-level keys that hold nothing this handler needs: skipped unparsed. */
  skipKeys?: ReadonlySet<string>;
  /** Fields of each element to receive as JSON text (see SplitterOptions.rawKeys). */
  rawKeys?: ReadonlySet<string>;
  /**
   * Split arrays (by top-level key; null for a top-level array) whose
   * elements this handler treats one by one: each element's fragments are
   * emitted while it is handled, with `prov.offset` = the element's offset,
   * and nothing but `ctx.state` is read. Elements after the first may then
   * be handled by a copy of the handler in a worker thread (made with a copy
   * of `ctx.state`) while the main thread scans on.
   */
  parallelKeys?: ReadonlySet<string | null>;
  onValue(v: JsonValue): void;
  /** Called after the last value: checks that the file had what it should. */
  finish(): void;
  /**
   * Work the handler started and must see done (composing two-image pairs
   * with sharp): a promise while too much is in flight, or, with `all`,
   * until every piece is done; undefined when nothing waits.
   */
  pending?(all: boolean): Promise<void> | undefined;
}

/** One input file of a source, and the role it plays (e.g. VG `objects`). */
export interface PlannedFile {
  path: string;
  role: string;
  /** Settings the loader read at planning time (the custom loader's mapping). */
  config?: unknown;
  /** Read before all other files of the run: image tables that define aliases. */
  first?: boolean;
}

export interface SourceKind {
  kind: string;
  family: Family;
  /** What files it expects, for `--help` and error messages. */
  expects: string;
  /** Turn the user's paths (files or folders) into files with roles. */
  plan(paths: string[]): Promise<PlannedFile[]>;
  handler(file: PlannedFile, ctx: HandlerContext): FileHandler;
}

export interface HandlerContext {
  source: string;
  family: Family;
  state: IngestState;
  sink: SourceSink;
  /** How COCO images are named on disk when no image table names them. */
  cocoNaming: '2017' | '2014';
  /** The image root (--images), where sources with embedded image bytes write them; null when not given. */
  images: string | null;
  /** --image-dir: the folder under the root holding a family's images. */
  imageDirs?: Partial<Record<string, string>>;
  /** Something the user should know about how the input was read (said once per message; main thread only). */
  note?: (message: string) => void;
}

export function emptyFragment(ref: string, ctx: HandlerContext, file: string, offset: number): Fragment {
  return {
    ref,
    source: ctx.source,
    family: ctx.family,
    catalog: false,
    path: null,
    width: null,
    height: null,
    requiresCatalogFrom: null,
    captions: [],
    facts: [],
    boxes: [],
    qa: [],
    regions: [],
    absentCategoryIds: [],
    uncountedCategoryIds: [],
    labelSentence: false,
    prov: { file, offset },
  };
}

export function rawBox(label: string | null, x: number, y: number, w: number, h: number): RawBox {
  return { label, categoryId: null, x, y, w, h, attributes: [], relations: [], mask: null, iscrowd: false, sourceId: null };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A finite number, or NaN when the value is not one (validated later, with the image size at hand). */
export function num(v: unknown): number {
  return typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
}

export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

/** Describe an element's keys for wrong-kind messages. */
export function keysOf(v: unknown): string {
  return isObject(v) ? Object.keys(v).slice(0, 8).join(', ') || '(no keys)' : Array.isArray(v) ? '(an array)' : `(a ${typeof v})`;
}
