import { parseElement, type JsonValue, type RawRange } from './json-splitter.js';

/**
 * Batches of unparsed JSON elements, the unit of work handed to a read
 * worker: the main thread only finds where elements start and end and where
 * their raw fields lie (the cheap part of reading); parsing, the source's
 * handler and encoding for the join (the expensive part) happen wherever the
 * batch goes, without scanning the bytes again.
 */
export interface ElementBatch {
  /** The file's place in the run (its number in the fragment codec's tables). */
  file: number;
  /** The top-level key the elements sit under (null: a top-level array). */
  key: string | null;
  /** Array index of the first element. */
  firstIndex: number;
  /** Number of elements. */
  count: number;
  /** Offset in the file of each element's first byte. */
  offsets: Float64Array;
  /** Where each element starts in `bytes` (it ends where the next starts, the last at `length`). */
  starts: Uint32Array;
  /** Per element: the raw field's index in `rawNames` and its byte range inside the element; -1 when none. */
  rawWhich: Int32Array;
  rawStarts: Int32Array;
  rawEnds: Int32Array;
  rawNames: string[];
  /** Bytes [0, length) are used. */
  bytes: Uint8Array;
  length: number;
}

const EMPTY = Buffer.alloc(0);

/** Collects elements into batches of about `targetBytes`. */
export class ElementBatcher {
  private bytes: Buffer;
  private length = 0;
  /** Per element, growing with the batch and copied out (to their exact length) when it is taken. */
  private offsets = new Float64Array(1024);
  private starts = new Uint32Array(1024);
  private rawWhich = new Int32Array(1024);
  private rawStarts = new Int32Array(1024);
  private rawEnds = new Int32Array(1024);
  private count = 0;
  private rawNames: string[] = [];
  private key: string | null = null;
  private firstIndex = -1;
  private nextIndex = -1;

  constructor(
    private readonly file: number,
    private readonly targetBytes = 1 << 20,
  ) {
    // Allocated when the first element arrives: a file may never send a batch.
    this.bytes = EMPTY;
  }

  /** Elements in the batch being collected. */
  get pending(): number {
    return this.count;
  }

  /**
   * Add one element, `source[start, end)` (copied); returns the batch it
   * completed, if any.
   */
  add(key: string | null, index: number, offset: number, source: Buffer, start: number, end: number, raw: RawRange | null): ElementBatch | null {
    let done: ElementBatch | null = null;
    // A batch holds consecutive elements of one array.
    if (this.count && (key !== this.key || index !== this.nextIndex)) done = this.take();
    if (!this.count) {
      this.key = key;
      this.firstIndex = index;
    }
    const size = end - start;
    this.ensure(size);
    if (this.count === this.offsets.length) this.growLists();
    const n = this.count++;
    this.starts[n] = this.length;
    this.offsets[n] = offset;
    if (raw === null) {
      this.rawWhich[n] = -1;
      this.rawStarts[n] = -1;
      this.rawEnds[n] = -1;
    } else {
      let which = this.rawNames.indexOf(raw.name);
      if (which < 0) which = this.rawNames.push(raw.name) - 1;
      this.rawWhich[n] = which;
      this.rawStarts[n] = raw.start;
      this.rawEnds[n] = raw.end;
    }
    source.copy(this.bytes, this.length, start, end);
    this.length += size;
    this.nextIndex = index + 1;
    if (this.length >= this.targetBytes) return done ?? this.take();
    return done;
  }

  /** The batch in progress, if it holds anything. */
  flush(): ElementBatch | null {
    return this.count ? this.take() : null;
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.bytes.length * 2, this.targetBytes + 1024, this.length + extra + 1024));
    this.bytes.copy(bigger, 0, 0, this.length);
    this.bytes = bigger;
  }

  private growLists(): void {
    const n = this.offsets.length * 2;
    const grow = <T extends Float64Array | Uint32Array | Int32Array>(a: T, make: new (n: number) => T): T => {
      const b = new make(n);
      b.set(a);
      return b;
    };
    this.offsets = grow(this.offsets, Float64Array);
    this.starts = grow(this.starts, Uint32Array);
    this.rawWhich = grow(this.rawWhich, Int32Array);
    this.rawStarts = grow(this.rawStarts, Int32Array);
    this.rawEnds = grow(this.rawEnds, Int32Array);
  }

  private take(): ElementBatch {
    const n = this.count;
    const batch: ElementBatch = {
      file: this.file,
      key: this.key,
      firstIndex: this.firstIndex,
      count: n,
      // Copies of their own (slice): a batch may be transferred to a worker, and the lists are used again.
      offsets: this.offsets.slice(0, n),
      starts: this.starts.slice(0, n),
      rawWhich: this.rawWhich.slice(0, n),
      rawStarts: this.rawStarts.slice(0, n),
      rawEnds: this.rawEnds.slice(0, n),
      rawNames: this.rawNames,
      // The batch owns its buffer (it may be transferred to a worker): start a new one.
      bytes: this.bytes,
      length: this.length,
    };
    this.bytes = EMPTY;
    this.length = 0;
    this.count = 0;
    this.rawNames = [];
    return batch;
  }
}

/** The ArrayBuffers a batch can hand over to another thread without copying. */
export function batchTransferList(b: ElementBatch): ArrayBuffer[] {
  return [b.bytes, b.offsets, b.starts, b.rawWhich, b.rawStarts, b.rawEnds].map((a) => a.buffer as ArrayBuffer);
}

/**
 * Parse a batch and give each element to `onValue` as the file's own
 * splitter would have: same key, index, offset and raw fields, and a syntax
 * error names the file, the element and its byte offset in the file.
 */
export function forEachBatchValue(batch: ElementBatch, file: string, onValue: (v: JsonValue) => void): void {
  const all = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.length);
  for (let j = 0; j < batch.count; j++) {
    const end = j + 1 < batch.count ? batch.starts[j + 1]! : batch.length;
    const which = batch.rawWhich[j]!;
    const offset = batch.offsets[j]!;
    const index = batch.firstIndex + j;
    const { value, raw } = parseElement(all.subarray(batch.starts[j]!, end), which < 0 ? null : batch.rawNames[which]!, batch.rawStarts[j]!, batch.rawEnds[j]!, file, offset, batch.key, index);
    onValue({ key: batch.key, index, value, offset, raw });
  }
}
