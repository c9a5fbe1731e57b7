import { InstructifyError } from '../errors.js';

/**
 * Splits a JSON document into its bulk values without parsing the whole file:
 *
 * - a top-level array: every element is one value (`key` null);
 * - a top-level object: for each key whose value is an array, every element
 *   of that array is one value (`key` = that key); any other value (a header
 *   such as COCO `info`, or a GQA record keyed by id) is one value whole.
 *
 * Each value's bytes are handed to `JSON.parse`. Scanning bytes for structure
 * and parsing per element measured about 3-4x faster than a token-level
 * streaming parser on this machine (see bench/prepare), with memory bounded
 * by the largest single element.
 *
 * The factory returns plain functions (`push`, `end`); the Node stream
 * wrapper lives in transforms/json-values.ts.
 */
export interface JsonValue {
  /** The top-level key the value sits under; null for a top-level array. */
  key: string | null;
  /** Position in its array, or -1 for a whole top-level value. */
  index: number;
  value: unknown;
  /** Byte offset of the value's first byte in the file. */
  offset: number;
  /** Fields named in `rawKeys`, as their JSON text (the parsed value holds null there). */
  raw: Record<string, string> | null;
}

export interface SplitterOptions {
  /** File name used in error messages. */
  file: string;
  /**
   * Keys whose non-array values are not wanted: they are skipped without
   * parsing. Keys not listed are parsed.
   */
  skipKeys?: ReadonlySet<string>;
  /**
   * Object fields of each split element kept as JSON text instead of being
   * parsed (COCO `segmentation`: most of the bytes of an instances file are
   * polygon coordinates, and nothing before the tree stage needs them as
   * numbers). Only array values are taken raw; they are checked to hold
   * nothing but numbers, commas and brackets.
   */
  rawKeys?: ReadonlySet<string>;
  /**
   * Elements for which this returns true are not parsed: their bytes go to
   * `onDeferred` instead (to be parsed elsewhere, e.g. in a worker thread).
   * Asked once per split element, with its key and index.
   */
  defer?: (key: string | null, index: number) => boolean;
  /**
   * Receives deferred elements: the element is `source[start, end)`. The
   * buffer and `raw` are only valid during the call (copy what you keep):
   * most elements lie whole in the chunk being split, and a view and a raw
   * range object made for each was a third of what the splitting thread
   * allocated.
   */
  onDeferred?: (key: string | null, index: number, offset: number, source: Buffer, start: number, end: number, raw: RawRange | null) => void;
}

/** What a raw numeric array may contain. */
const NUMERIC_ARRAY_TEXT = /^[\[\]\s\d.,eE+-]*$/;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** Bytes that matter inside a captured container: quotes and brackets. */
const STRUCTURAL = new Uint8Array(256);
for (const c of [QUOTE, LBRACE, RBRACE, LBRACKET, RBRACKET]) STRUCTURAL[c] = 1;
const WHITESPACE = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WHITESPACE[c] = 1;

const enum Top {
  /** Before the first non-whitespace byte. */
  Start,
  /** Inside a top-level array. */
  Array,
  /** Inside a top-level object. */
  Object,
  /** After the top-level value closed. */
  Done,
}

/** Where we are between values at the level we split on. */
const enum Expect {
  /** A value (or the container's close) may come next. */
  Value,
  /** A comma or the container's close must come next. */
  CommaOrClose,
  /** Object level: a key string (or close) must come next. */
  Key,
  /** Object level: the colon after a key. */
  Colon,
}

export interface JsonSplitter {
  /** Feed the next chunk of the file; values found are passed to `onValue`. */
  push(chunk: Buffer): void;
  /** Signal end of input; throws if the document is incomplete. */
  end(): void;
  /** Bytes consumed so far. */
  readonly bytes: number;
}

/**
 * Where JSON.parse stopped, from a message that quotes the text around the
 * fault instead of giving a position: `Unexpected token ':', ..."ab":: 1, "c"...`
 * shows 10 characters either side of the token (fewer at the ends of the
 * text). -1 when the message does not say.
 */
export function positionFromContext(message: string, text: string): number {
  const c = /^Unexpected token '(.+?)', (\.\.\.)?"(.*)"(\.\.\.)? is not valid JSON$/s.exec(message);
  if (!c) return -1;
  const [, token, before, context, after] = c as unknown as [string, string, string | undefined, string, string | undefined];
  const CONTEXT = 10;
  if (before) {
    for (let i = text.indexOf(context); i >= 0; i = text.indexOf(context, i + 1)) if (text.startsWith(token, i + CONTEXT)) return i + CONTEXT;
    return -1;
  }
  if (after && text.startsWith(context)) return context.length - CONTEXT;
  return -1;
}

/** A raw field's name and its byte range inside the element. */
export interface RawRange {
  name: string;
  start: number;
  end: number;
}

/**
 * Parse one element's bytes; a raw field's bytes [rawStart, rawEnd) are
 * checked to be numbers only and returned as text (the value holds null
 * there). Errors name the file, the element and the byte in the file.
 */
export function parseElement(
  bytes: Buffer,
  rawName: string | null,
  rawStart: number,
  rawEnd: number,
  file: string,
  offset: number,
  key: string | null,
  index: number,
): { value: unknown; raw: Record<string, string> | null } {
  let value: unknown;
  let raw: Record<string, string> | null = null;
  let text: string;
  let prefixChars = -1;
  if (rawName !== null && rawEnd > rawStart) {
    const rawText = bytes.toString('latin1', rawStart, rawEnd);
    if (!NUMERIC_ARRAY_TEXT.test(rawText)) {
      const bad = rawText.search(/[^\[\]\s\d.,eE+-]/);
      throw new InstructifyError('E_JSON_SYNTAX', `malformed JSON in "${rawName}": only numbers may appear here`, { file, offset: offset + rawStart + bad });
    }
    raw = { [rawName]: rawText };
    const prefix = bytes.toString('utf8', 0, rawStart);
    prefixChars = prefix.length;
    text = prefix + 'null' + bytes.toString('utf8', rawEnd);
  } else {
    text = bytes.toString('utf8');
  }
  try {
    value = JSON.parse(text);
  } catch (err) {
    // V8 reports "... at position N" (in characters), or quotes the text around the fault; map it to a byte offset.
    const m = /position (\d+)/.exec(String((err as Error).message));
    const pos = m ? Number(m[1]) : positionFromContext(String((err as Error).message), text);
    let at = offset;
    if (pos >= 0) {
      at += prefixChars >= 0 && pos > prefixChars ? rawEnd + Buffer.byteLength(text.slice(prefixChars + 4, pos)) : Buffer.byteLength(text.slice(0, pos));
    }
    const where = key !== null ? `in "${key}"${index >= 0 ? ` element ${index}` : ''}` : `in element ${index}`;
    throw new InstructifyError('E_JSON_SYNTAX', `malformed JSON ${where}: ${(err as Error).message}`, {
      file,
      offset: at,
      cause: err,
    });
  }
  return { value, raw };
}

/** Whether `buf` holds `key` at `at`. */
function bytesAt(buf: Buffer, at: number, key: Buffer): boolean {
  for (let i = 0; i < key.length; i++) if (buf[at + i] !== key[i]) return false;
  return true;
}

/**
 * The splitter's state is this object's fields: where it is in the document
 * (top, expect, depth), which container it splits, and the element it is
 * cutting out, which may span chunks. `push` dispatches on the structural
 * bytes; inside a captured container it skips straight to the next one.
 */
class ChunkedJsonSplitter implements JsonSplitter {
  private readonly file: string;
  private readonly skipKeys: ReadonlySet<string> | undefined;
  private readonly rawKeys: { name: string; bytes: Buffer }[] | null;
  private readonly defer: SplitterOptions['defer'];
  private readonly onDeferred: SplitterOptions['onDeferred'];

  private top: Top = Top.Start;
  private expect: Expect = Expect.Value;
  /** Open containers: 1 inside the top-level container. */
  private depth = 0;
  /** Chunk base offset in the file. */
  private base = 0;

  // Top-level object state.
  private currentKey: string | null = null;
  /** The key whose array we are splitting, when depth >= 2 inside it. */
  private arrayKey: string | null = null;
  private arrayIndex = 0;
  /** Depth of the container whose children we split on (1 for top array, 2 for a keyed array). */
  private splitDepth = 1;

  // Key capture (top-level object keys).
  private inKey = false;
  private keyParts: Buffer[] = [];
  private keyStart = 0;

  // Value capture.
  private capturing = false;
  /** Whether the value being captured is a container (ends at its close) or a scalar. */
  private captureIsContainer = false;
  private captureStart = 0;
  private captureOffset = 0;
  private captureParts: Buffer[] = [];
  /** Bytes of the current value held in captureParts (earlier chunks). */
  private capturedBefore = 0;
  // A raw field inside the current value: element-relative byte range, and the depth it closes at.
  private rawName: string | null = null;
  private rawStart = -1;
  private rawEnd = -1;
  private rawDepth = -1;
  /** Start of a string directly inside the captured object (a possible raw key), or -1. */
  private strStartRel = -1;
  /**
   * A raw key was just read: if the next structural byte at this depth opens
   * an array, that array is the raw value. (The ':' between them is skipped
   * by the fast path; JSON.parse of the rest checks it is there.)
   */
  private rawPending: string | null = null;
  private captureIsObject = false;
  private captureKey: string | null = null;
  private captureIndex = -1;
  private captureSkip = false;
  /** The element being captured is deferred: its bytes are handed over unparsed. */
  private captureDeferred = false;

  // String state carried across chunks.
  private inString = false;
  private pendingEscape = false;

  constructor(
    opts: SplitterOptions,
    private readonly onValue: (v: JsonValue) => void,
  ) {
    this.file = opts.file;
    this.skipKeys = opts.skipKeys;
    this.rawKeys = opts.rawKeys && opts.rawKeys.size ? [...opts.rawKeys].map((k) => ({ name: k, bytes: Buffer.from(k) })) : null;
    this.defer = opts.defer;
    this.onDeferred = opts.onDeferred;
  }

  /** Bytes consumed so far. */
  get bytes(): number {
    return this.base;
  }

  private syntax(msg: string, at: number): InstructifyError {
    return new InstructifyError('E_JSON_SYNTAX', msg, { file: this.file, offset: at });
  }

  private finishCapture(buf: Buffer, endExclusive: number): void {
    this.capturing = false;
    if (this.captureSkip) {
      this.captureParts = [];
      return;
    }
    // The element is source[start, stop): in this chunk, or joined from the chunks it spans.
    let source = buf;
    let start = this.captureStart;
    let stop = endExclusive;
    if (this.captureParts.length) {
      this.captureParts.push(buf.subarray(start, stop));
      source = Buffer.concat(this.captureParts);
      this.captureParts = [];
      start = 0;
      stop = source.length;
    }
    if (this.captureDeferred) {
      this.onDeferred!(this.captureKey, this.captureIndex, this.captureOffset, source, start, stop, this.deferredRaw());
      return;
    }
    const bytes = start === 0 && stop === source.length ? source : source.subarray(start, stop);
    const { value, raw } = parseElement(bytes, this.rawName, this.rawStart, this.rawEnd, this.file, this.captureOffset, this.captureKey, this.captureIndex);
    this.onValue({ key: this.captureKey, index: this.captureIndex, value, offset: this.captureOffset, raw });
  }

  /** The one raw range object handed to `onDeferred`, filled anew for each element. */
  private readonly rawRange: RawRange = { name: '', start: 0, end: 0 };
  private deferredRaw(): RawRange | null {
    if (this.rawName === null || this.rawEnd <= this.rawStart) return null;
    this.rawRange.name = this.rawName;
    this.rawRange.start = this.rawStart;
    this.rawRange.end = this.rawEnd;
    return this.rawRange;
  }

  private startCapture(i: number, isContainer: boolean, key: string | null, index: number, isObject = false): void {
    this.capturing = true;
    this.captureIsObject = isObject;
    this.captureIsContainer = isContainer;
    this.captureStart = i;
    this.captureOffset = this.base + i;
    this.captureKey = key;
    this.captureIndex = index;
    this.captureSkip = key !== null && this.skipKeys !== undefined && this.skipKeys.has(key);
    this.captureDeferred = index >= 0 && this.defer !== undefined && this.defer(key, index);
    this.capturedBefore = 0;
    this.rawName = null;
    this.rawPending = null;
    this.rawStart = this.rawEnd = this.rawDepth = this.strStartRel = -1;
  }

  /** Bytes [from, to) of the value being captured, counted from its first byte. */
  private capturedBytes(buf: Buffer, from: number, to: number): Buffer {
    if (from >= this.capturedBefore) return buf.subarray(this.captureStart + from - this.capturedBefore, this.captureStart + to - this.capturedBefore);
    return Buffer.concat([...this.captureParts, buf.subarray(this.captureStart, this.captureStart + to - this.capturedBefore)]).subarray(from, to);
  }

  /** A string directly inside the captured object ended (closing quote at `q`): is it a raw key? */
  private rawKeyCandidateEnded(buf: Buffer, q: number): void {
    const from = this.strStartRel;
    this.strStartRel = -1;
    const to = this.capturedBefore + (q - this.captureStart);
    for (const k of this.rawKeys!) {
      if (k.bytes.length !== to - from) continue;
      // Compared in place when the key lies in this chunk (nearly always): a
      // view and a native compare per element cost more than the key's bytes.
      const same = from >= this.capturedBefore ? bytesAt(buf, this.captureStart + from - this.capturedBefore, k.bytes) : this.capturedBytes(buf, from, to).equals(k.bytes);
      if (same) {
        this.rawPending = k.name;
        return;
      }
    }
  }

  // Position of the next backslash in the current chunk (-1: none left), cached
  // so that strings without escapes never rescan the rest of the chunk.
  private bsBuf: Buffer | null = null;
  private bsPos = -2;

  /** Skip to the end of a string starting after its opening quote at `i`; returns index after closing quote or -1 if the chunk ended. */
  private skipString(buf: Buffer, i: number): number {
    const len = buf.length;
    if (this.pendingEscape) {
      this.pendingEscape = false;
      i++;
    }
    if (this.bsBuf !== buf) {
      this.bsBuf = buf;
      this.bsPos = -2;
    }
    while (i < len) {
      const q = buf.indexOf(QUOTE, i);
      if (this.bsPos !== -1 && this.bsPos < i) this.bsPos = buf.indexOf(BACKSLASH, i);
      if (this.bsPos !== -1 && (q === -1 || this.bsPos < q)) {
        // An escape: skip the backslash and the byte it escapes.
        if (this.bsPos + 1 >= len) {
          this.pendingEscape = true;
          return -1;
        }
        i = this.bsPos + 2;
        continue;
      }
      if (q === -1) return -1;
      return q + 1;
    }
    return -1;
  }

  push(buf: Buffer): void {
    const len = buf.length;
    let i = 0;

    if (this.inString) {
      const after = this.skipString(buf, 0);
      if (after === -1) {
        this.carry(buf);
        this.base += len;
        return;
      }
      this.inString = false;
      if (this.inKey) this.endKey(buf, after - 1);
      else if (this.strStartRel >= 0) this.rawKeyCandidateEnded(buf, after - 1);
      i = after;
      this.endStringScalar(buf, i);
    }

    while (i < len) {
      // Fast path: inside a captured container only quotes and brackets matter.
      if (this.capturing && this.captureIsContainer) {
        while (i < len && STRUCTURAL[buf[i]!] === 0) i++;
        if (i >= len) break;
      }
      const c = buf[i]!;
      if (c === QUOTE) {
        i = this.onQuote(buf, i);
        // The string goes on in the next chunk.
        if (i === -1) break;
      } else if (c === LBRACE || c === LBRACKET) {
        this.onOpen(c, i);
        i++;
      } else if (c === RBRACE || c === RBRACKET) {
        this.onClose(buf, c, i);
        i++;
      } else if (c === COMMA) {
        this.onComma(buf, i);
        i++;
      } else if (WHITESPACE[c] === 1) {
        if (this.capturing && !this.captureIsContainer) {
          this.finishCapture(buf, i);
          this.afterValue();
        }
        i++;
      } else if (c === COLON && !this.capturing) {
        if (!(this.top === Top.Object && this.depth === 1 && this.expect === Expect.Colon)) throw this.syntax(`unexpected ':'`, this.base + i);
        this.expect = Expect.Value;
        i++;
      } else {
        // Any other byte starts or continues a scalar (number, true, false, null).
        if (!this.capturing) {
          if (this.top === Top.Start || this.top === Top.Done) throw this.syntax('expected a JSON object or array', this.base + i);
          if (this.depth === this.splitDepth || (this.top === Top.Object && this.depth === 1)) this.beginValue(i, false);
          else throw this.syntax('unexpected value', this.base + i);
        }
        i++;
      }
    }

    this.carry(buf);
    this.base += len;
  }

  /** A string opens at `i`: a key, a value, or a string inside a captured value. Returns where to go on, or -1 when the chunk ends inside it. */
  private onQuote(buf: Buffer, i: number): number {
    const atSplitLevel = this.depth === this.splitDepth && !this.capturing;
    if (this.top === Top.Object && this.depth === 1 && this.expect === Expect.Key) {
      this.inKey = true;
      this.keyStart = i + 1;
      this.keyParts = [];
    } else if (atSplitLevel || (this.top === Top.Object && this.depth === 1 && this.expect === Expect.Value)) {
      this.beginValue(i, false);
    } else if (!this.capturing && this.depth <= this.splitDepth) {
      throw this.syntax(`unexpected string`, this.base + i);
    } else if (this.rawKeys !== null && this.captureIsObject && this.rawName === null && this.depth === this.splitDepthFor() + 1) {
      this.rawPending = null;
      this.strStartRel = this.capturedBefore + (i + 1 - this.captureStart);
    }
    const after = this.skipString(buf, i + 1);
    if (after === -1) {
      this.inString = true;
      return -1;
    }
    if (this.inKey) this.endKey(buf, after - 1);
    else if (this.strStartRel >= 0) this.rawKeyCandidateEnded(buf, after - 1);
    this.endStringScalar(buf, after);
    return after;
  }

  /** `{` or `[` at `i`: the document's start, a keyed array to split, a value to capture, or a level inside one. */
  private onOpen(c: number, i: number): void {
    if (this.top === Top.Start) {
      this.top = c === LBRACKET ? Top.Array : Top.Object;
      this.expect = c === LBRACKET ? Expect.Value : Expect.Key;
      this.depth = 1;
      this.splitDepth = 1;
      return;
    }
    if (this.top === Top.Done) throw this.syntax('unexpected data after the end of the JSON document', this.base + i);
    if (this.capturing) {
      if (this.rawPending !== null) {
        if (c === LBRACKET && this.depth === this.splitDepthFor() + 1) {
          this.rawName = this.rawPending;
          this.rawStart = this.capturedBefore + (i - this.captureStart);
          this.rawDepth = this.depth;
        }
        this.rawPending = null;
      }
    } else if (this.top === Top.Object && this.depth === 1) {
      if (this.expect !== Expect.Value) throw this.syntax(`expected ${this.expectName()}`, this.base + i);
      if (c === LBRACKET) {
        // A keyed array: split its elements.
        this.arrayKey = this.currentKey;
        this.arrayIndex = 0;
        this.splitDepth = 2;
        this.depth = 2;
        this.expect = Expect.Value;
        return;
      }
      this.startCapture(i, true, this.currentKey, -1, c === LBRACE);
    } else if (this.depth === this.splitDepth) {
      this.beginValue(i, true, c === LBRACE);
    } else {
      throw this.syntax('unexpected bracket', this.base + i);
    }
    this.depth++;
  }

  /** `}` or `]` at `i`: it may end the captured value, a scalar before it, or a level. */
  private onClose(buf: Buffer, c: number, i: number): void {
    if (!this.capturing) {
      // Closing the container we split on: fine after a value, or when empty.
      const inTopObject = this.top === Top.Object && this.depth === 1;
      const ok = this.expect === Expect.CommaOrClose || (inTopObject ? this.expect === Expect.Key : this.expect === Expect.Value);
      if (!ok) throw this.syntax(`expected ${this.expectName()}`, this.base + i);
    }
    this.depth--;
    const after = i + 1;
    if (!this.capturing) {
      this.closeLevel(c, i);
      return;
    }
    this.rawPending = null;
    if (this.depth === this.rawDepth && this.rawEnd < 0) this.rawEnd = this.capturedBefore + (after - this.captureStart);
    if (this.captureIsContainer && this.depth === this.splitDepthFor()) {
      this.finishCapture(buf, after);
      this.afterValue();
    } else if (!this.captureIsContainer && this.depth < this.splitDepthFor()) {
      // A scalar closed by its container's bracket.
      this.finishCapture(buf, i);
      this.closeLevel(c, i);
    }
  }

  /** `,` at `i`: ends a scalar being captured, or separates values at the split level. */
  private onComma(buf: Buffer, i: number): void {
    if (this.capturing && !this.captureIsContainer) {
      this.finishCapture(buf, i);
      this.afterValue();
    }
    if (!this.capturing) {
      if (this.expect !== Expect.CommaOrClose) throw this.syntax(`expected ${this.expectName()}`, this.base + i);
      this.expect = this.top === Top.Object && this.depth === 1 ? Expect.Key : Expect.Value;
    }
  }

  /** A string that is itself the captured value ends at its closing quote. */
  private endStringScalar(buf: Buffer, i: number): void {
    if (this.capturing && !this.captureIsContainer) {
      this.finishCapture(buf, i);
      this.afterValue();
    }
  }

  /** The depth at which the current capture's parent sits. */
  private splitDepthFor(): number {
    return this.captureIndex < 0 ? 1 : this.splitDepth;
  }

  private beginValue(i: number, isContainer: boolean, isObject = false): void {
    if (this.expect !== Expect.Value) throw this.syntax(`expected ${this.expectName()}`, this.base + i);
    if (this.top === Top.Object && this.depth === 1) this.startCapture(i, isContainer, this.currentKey, -1, isObject);
    else this.startCapture(i, isContainer, this.top === Top.Array ? null : this.arrayKey, this.arrayIndex++, isObject);
  }

  private afterValue(): void {
    this.expect = Expect.CommaOrClose;
  }

  private closeLevel(c: number, at: number): void {
    if (this.depth === 0) {
      if ((this.top === Top.Array) !== (c === RBRACKET)) throw this.syntax('mismatched bracket', this.base + at);
      this.top = Top.Done;
    } else if (this.top === Top.Object && this.depth === 1) {
      if (c !== RBRACKET) throw this.syntax('mismatched bracket', this.base + at);
      // A keyed array closed: back to the object's keys.
      this.arrayKey = null;
      this.splitDepth = 1;
      this.expect = Expect.CommaOrClose;
    }
  }

  private endKey(buf: Buffer, quoteAt: number): void {
    this.inKey = false;
    this.keyParts.push(buf.subarray(this.keyStart, quoteAt));
    this.currentKey = JSON.parse('"' + Buffer.concat(this.keyParts).toString('utf8') + '"') as string;
    this.keyParts = [];
    this.expect = Expect.Colon;
  }

  private expectName(): string {
    switch (this.expect) {
      case Expect.Value:
        return 'a value';
      case Expect.CommaOrClose:
        return "',' or a closing bracket";
      case Expect.Key:
        return 'a key';
      case Expect.Colon:
        return "':'";
    }
  }

  /** Keep the unfinished parts of a key or value for the next chunk. */
  private carry(buf: Buffer): void {
    if (this.inKey) {
      this.keyParts.push(buf.subarray(this.keyStart));
      this.keyStart = 0;
    }
    if (this.capturing) {
      const part = this.captureStart === 0 ? buf : buf.subarray(this.captureStart);
      this.captureParts.push(part);
      this.capturedBefore += part.length;
      this.captureStart = 0;
    }
  }

  end(): void {
    if (this.top === Top.Start) throw new InstructifyError('E_JSON_TRUNCATED', 'file is empty (expected a JSON object or array)', { file: this.file, offset: this.base });
    if (this.top !== Top.Done || this.inString || this.capturing) {
      const where = this.capturing
        ? this.captureKey !== null
          ? ` inside "${this.captureKey}"${this.captureIndex >= 0 ? ` element ${this.captureIndex}` : ''} (started at byte ${this.captureOffset})`
          : ` inside element ${this.captureIndex} (started at byte ${this.captureOffset})`
        : this.arrayKey !== null
          ? ` inside "${this.arrayKey}" after element ${this.arrayIndex - 1}`
          : '';
      throw new InstructifyError('E_JSON_TRUNCATED', `unexpected end of file${where}: the file is truncated or incomplete`, {
        file: this.file,
        offset: this.base,
      });
    }
  }
}

export function createJsonSplitter(opts: SplitterOptions, onValue: (v: JsonValue) => void): JsonSplitter {
  return new ChunkedJsonSplitter(opts, onValue);
}
