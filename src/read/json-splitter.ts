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

export function createJsonSplitter(opts: SplitterOptions, onValue: (v: JsonValue) => void): JsonSplitter {
  const file = opts.file;
  const skipKeys = opts.skipKeys;
  const rawKeys = opts.rawKeys && opts.rawKeys.size ? [...opts.rawKeys].map((k) => ({ name: k, bytes: Buffer.from(k) })) : null;

  let top: Top = Top.Start;
  let expect: Expect = Expect.Value;
  /** Open containers: 1 inside the top-level container. */
  let depth = 0;
  /** Chunk base offset in the file. */
  let base = 0;

  // Top-level object state.
  let currentKey: string | null = null;
  /** The key whose array we are splitting, when depth >= 2 inside it. */
  let arrayKey: string | null = null;
  let arrayIndex = 0;
  /** Depth of the container whose children we split on (1 for top array, 2 for a keyed array). */
  let splitDepth = 1;

  // Key capture (top-level object keys).
  let inKey = false;
  let keyParts: Buffer[] = [];
  let keyStart = 0;

  // Value capture.
  let capturing = false;
  /** Whether the value being captured is a container (ends at its close) or a scalar. */
  let captureIsContainer = false;
  let captureStart = 0;
  let captureOffset = 0;
  let captureParts: Buffer[] = [];
  /** Bytes of the current value held in captureParts (earlier chunks). */
  let capturedBefore = 0;
  // A raw field inside the current value: element-relative byte range, and the depth it closes at.
  let rawName: string | null = null;
  let rawStart = -1;
  let rawEnd = -1;
  let rawDepth = -1;
  /** Start of a string directly inside the captured object (a possible raw key), or -1. */
  let strStartRel = -1;
  /**
   * A raw key was just read: if the next structural byte at this depth opens
   * an array, that array is the raw value. (The ':' between them is skipped
   * by the fast path; JSON.parse of the rest checks it is there.)
   */
  let rawPending: string | null = null;
  let captureIsObject = false;
  let captureKey: string | null = null;
  let captureIndex = -1;
  let captureSkip = false;
  /** The element being captured is deferred: its bytes are handed over unparsed. */
  let captureDeferred = false;
  const defer = opts.defer;
  const onDeferred = opts.onDeferred;

  // String state carried across chunks.
  let inString = false;
  let pendingEscape = false;

  function syntax(msg: string, at: number): InstructifyError {
    return new InstructifyError('E_JSON_SYNTAX', msg, { file, offset: at });
  }

  function finishCapture(buf: Buffer, endExclusive: number): void {
    capturing = false;
    if (captureSkip) {
      captureParts = [];
      return;
    }
    // The element is source[start, end): in this chunk, or joined from the chunks it spans.
    let source = buf;
    let start = captureStart;
    let end = endExclusive;
    if (captureParts.length) {
      captureParts.push(buf.subarray(start, end));
      source = Buffer.concat(captureParts);
      captureParts = [];
      start = 0;
      end = source.length;
    }
    if (captureDeferred) {
      onDeferred!(captureKey, captureIndex, captureOffset, source, start, end, deferredRaw());
      return;
    }
    const bytes = start === 0 && end === source.length ? source : source.subarray(start, end);
    const { value, raw } = parseElement(bytes, rawName, rawStart, rawEnd, file, captureOffset, captureKey, captureIndex);
    onValue({ key: captureKey, index: captureIndex, value, offset: captureOffset, raw });
  }

  /** The one raw range object handed to `onDeferred`, filled anew for each element. */
  const rawRange: RawRange = { name: '', start: 0, end: 0 };
  function deferredRaw(): RawRange | null {
    if (rawName === null || rawEnd <= rawStart) return null;
    rawRange.name = rawName;
    rawRange.start = rawStart;
    rawRange.end = rawEnd;
    return rawRange;
  }

  function startCapture(i: number, isContainer: boolean, key: string | null, index: number, isObject = false): void {
    capturing = true;
    captureIsObject = isObject;
    captureIsContainer = isContainer;
    captureStart = i;
    captureOffset = base + i;
    captureKey = key;
    captureIndex = index;
    captureSkip = key !== null && skipKeys !== undefined && skipKeys.has(key);
    captureDeferred = index >= 0 && defer !== undefined && defer(key, index);
    capturedBefore = 0;
    rawName = null;
    rawPending = null;
    rawStart = rawEnd = rawDepth = strStartRel = -1;
  }

  /** Bytes [from, to) of the value being captured, counted from its first byte. */
  function capturedBytes(buf: Buffer, from: number, to: number): Buffer {
    if (from >= capturedBefore) return buf.subarray(captureStart + from - capturedBefore, captureStart + to - capturedBefore);
    return Buffer.concat([...captureParts, buf.subarray(captureStart, captureStart + to - capturedBefore)]).subarray(from, to);
  }

  /** A string directly inside the captured object ended (closing quote at `q`): is it a raw key? */
  function rawKeyCandidateEnded(buf: Buffer, q: number): void {
    const from = strStartRel;
    strStartRel = -1;
    const to = capturedBefore + (q - captureStart);
    for (const k of rawKeys!) {
      if (k.bytes.length !== to - from) continue;
      // Compared in place when the key lies in this chunk (nearly always): a
      // view and a native compare per element cost more than the key's bytes.
      const same = from >= capturedBefore ? bytesAt(buf, captureStart + from - capturedBefore, k.bytes) : capturedBytes(buf, from, to).equals(k.bytes);
      if (same) {
        rawPending = k.name;
        return;
      }
    }
  }

  // Position of the next backslash in the current chunk (-1: none left), cached
  // so that strings without escapes never rescan the rest of the chunk.
  let bsBuf: Buffer | null = null;
  let bsPos = -2;

  /** Skip to the end of a string starting after its opening quote at `i`; returns index after closing quote or -1 if the chunk ended. */
  function skipString(buf: Buffer, i: number): number {
    const len = buf.length;
    if (pendingEscape) {
      pendingEscape = false;
      i++;
    }
    if (bsBuf !== buf) {
      bsBuf = buf;
      bsPos = -2;
    }
    while (i < len) {
      const q = buf.indexOf(QUOTE, i);
      if (bsPos !== -1 && bsPos < i) bsPos = buf.indexOf(BACKSLASH, i);
      if (bsPos !== -1 && (q === -1 || bsPos < q)) {
        // An escape: skip the backslash and the byte it escapes.
        if (bsPos + 1 >= len) {
          pendingEscape = true;
          return -1;
        }
        i = bsPos + 2;
        continue;
      }
      if (q === -1) return -1;
      return q + 1;
    }
    return -1;
  }

  function push(buf: Buffer): void {
    const len = buf.length;
    let i = 0;

    if (inString) {
      const after = skipString(buf, 0);
      if (after === -1) {
        carry(buf);
        base += len;
        return;
      }
      inString = false;
      if (inKey) endKey(buf, after - 1);
      else if (strStartRel >= 0) rawKeyCandidateEnded(buf, after - 1);
      i = after;
      endStringScalar(buf, i);
    }

    while (i < len) {
      // Fast path: inside a captured container only quotes and brackets matter.
      if (capturing && captureIsContainer) {
        while (i < len && STRUCTURAL[buf[i]!] === 0) i++;
        if (i >= len) break;
      }
      const c = buf[i]!;

      if (c === QUOTE) {
        const atSplitLevel = depth === splitDepth && !capturing;
        if (top === Top.Object && depth === 1 && expect === Expect.Key) {
          inKey = true;
          keyStart = i + 1;
          keyParts = [];
        } else if (atSplitLevel || (top === Top.Object && depth === 1 && expect === Expect.Value)) {
          beginValue(i, false);
        } else if (!capturing && depth <= splitDepth) {
          throw syntax(`unexpected string`, base + i);
        } else if (rawKeys !== null && captureIsObject && rawName === null && depth === splitDepthFor() + 1) {
          rawPending = null;
          strStartRel = capturedBefore + (i + 1 - captureStart);
        }
        const after = skipString(buf, i + 1);
        if (after === -1) {
          inString = true;
          break;
        }
        if (inKey) endKey(buf, after - 1);
        else if (strStartRel >= 0) rawKeyCandidateEnded(buf, after - 1);
        i = after;
        endStringScalar(buf, i);
        continue;
      }

      if (c === LBRACE || c === LBRACKET) {
        if (top === Top.Start) {
          top = c === LBRACKET ? Top.Array : Top.Object;
          expect = c === LBRACKET ? Expect.Value : Expect.Key;
          depth = 1;
          splitDepth = 1;
          i++;
          continue;
        }
        if (top === Top.Done) throw syntax('unexpected data after the end of the JSON document', base + i);
        if (capturing) {
          if (rawPending !== null) {
            if (c === LBRACKET && depth === splitDepthFor() + 1) {
              rawName = rawPending;
              rawStart = capturedBefore + (i - captureStart);
              rawDepth = depth;
            }
            rawPending = null;
          }
        } else {
          if (top === Top.Object && depth === 1) {
            if (expect !== Expect.Value) throw syntax(`expected ${expectName()}`, base + i);
            if (c === LBRACKET) {
              // A keyed array: split its elements.
              arrayKey = currentKey;
              arrayIndex = 0;
              splitDepth = 2;
              depth = 2;
              expect = Expect.Value;
              i++;
              continue;
            }
            startCapture(i, true, currentKey, -1, c === LBRACE);
          } else if (depth === splitDepth) {
            beginValue(i, true, c === LBRACE);
          } else {
            throw syntax('unexpected bracket', base + i);
          }
        }
        depth++;
        i++;
        continue;
      }

      if (c === RBRACE || c === RBRACKET) {
        if (!capturing) {
          // Closing the container we split on: fine after a value, or when empty.
          const inTopObject = top === Top.Object && depth === 1;
          const ok = expect === Expect.CommaOrClose || (inTopObject ? expect === Expect.Key : expect === Expect.Value);
          if (!ok) throw syntax(`expected ${expectName()}`, base + i);
        }
        depth--;
        i++;
        if (capturing) {
          rawPending = null;
          if (depth === rawDepth && rawEnd < 0) rawEnd = capturedBefore + (i - captureStart);
          if (captureIsContainer && depth === splitDepthFor()) {
            finishCapture(buf, i);
            afterValue();
          } else if (!captureIsContainer && depth < splitDepthFor()) {
            // A scalar closed by its container's bracket.
            finishCapture(buf, i - 1);
            closeLevel(c, i - 1);
          }
          continue;
        }
        closeLevel(c, i - 1);
        continue;
      }

      if (c === COMMA) {
        if (capturing && !captureIsContainer) {
          finishCapture(buf, i);
          afterValue();
        }
        if (!capturing) {
          if (expect !== Expect.CommaOrClose) throw syntax(`expected ${expectName()}`, base + i);
          expect = top === Top.Object && depth === 1 ? Expect.Key : Expect.Value;
        }
        i++;
        continue;
      }

      if (WHITESPACE[c] === 1) {
        if (capturing && !captureIsContainer) {
          finishCapture(buf, i);
          afterValue();
        }
        i++;
        continue;
      }

      if (c === COLON && !capturing) {
        if (!(top === Top.Object && depth === 1 && expect === Expect.Colon)) throw syntax(`unexpected ':'`, base + i);
        expect = Expect.Value;
        i++;
        continue;
      }

      // Any other byte starts or continues a scalar (number, true, false, null).
      if (!capturing) {
        if (top === Top.Start || top === Top.Done) throw syntax('expected a JSON object or array', base + i);
        if (depth === splitDepth || (top === Top.Object && depth === 1)) beginValue(i, false);
        else throw syntax('unexpected value', base + i);
      }
      i++;
    }

    carry(buf);
    base += len;
  }

  /** A string that is itself the captured value ends at its closing quote. */
  function endStringScalar(buf: Buffer, i: number): void {
    if (capturing && !captureIsContainer) {
      finishCapture(buf, i);
      afterValue();
    }
  }

  /** The depth at which the current capture's parent sits. */
  function splitDepthFor(): number {
    return captureIndex < 0 ? 1 : splitDepth;
  }

  function beginValue(i: number, isContainer: boolean, isObject = false): void {
    if (expect !== Expect.Value) throw syntax(`expected ${expectName()}`, base + i);
    if (top === Top.Object && depth === 1) startCapture(i, isContainer, currentKey, -1, isObject);
    else startCapture(i, isContainer, top === Top.Array ? null : arrayKey, arrayIndex++, isObject);
  }

  function afterValue(): void {
    expect = Expect.CommaOrClose;
  }

  function closeLevel(c: number, at: number): void {
    if (depth === 0) {
      if ((top === Top.Array) !== (c === RBRACKET)) throw syntax('mismatched bracket', base + at);
      top = Top.Done;
    } else if (top === Top.Object && depth === 1) {
      if (c !== RBRACKET) throw syntax('mismatched bracket', base + at);
      // A keyed array closed: back to the object's keys.
      arrayKey = null;
      splitDepth = 1;
      expect = Expect.CommaOrClose;
    }
  }

  function endKey(buf: Buffer, quoteAt: number): void {
    inKey = false;
    keyParts.push(buf.subarray(keyStart, quoteAt));
    currentKey = JSON.parse('"' + Buffer.concat(keyParts).toString('utf8') + '"') as string;
    keyParts = [];
    expect = Expect.Colon;
  }

  function expectName(): string {
    switch (expect) {
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
  function carry(buf: Buffer): void {
    if (inKey) {
      keyParts.push(buf.subarray(keyStart));
      keyStart = 0;
    }
    if (capturing) {
      const part = captureStart === 0 ? buf : buf.subarray(captureStart);
      captureParts.push(part);
      capturedBefore += part.length;
      captureStart = 0;
    }
  }

  function end(): void {
    if (top === Top.Start) throw new InstructifyError('E_JSON_TRUNCATED', 'file is empty (expected a JSON object or array)', { file, offset: base });
    if (top !== Top.Done || inString || capturing) {
      const where = capturing
        ? captureKey !== null
          ? ` inside "${captureKey}"${captureIndex >= 0 ? ` element ${captureIndex}` : ''} (started at byte ${captureOffset})`
          : ` inside element ${captureIndex} (started at byte ${captureOffset})`
        : arrayKey !== null
          ? ` inside "${arrayKey}" after element ${arrayIndex - 1}`
          : '';
      throw new InstructifyError('E_JSON_TRUNCATED', `unexpected end of file${where}: the file is truncated or incomplete`, {
        file,
        offset: base,
      });
    }
  }

  return {
    push,
    end,
    get bytes() {
      return base;
    },
  };
}
