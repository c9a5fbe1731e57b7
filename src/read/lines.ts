/**
 * Splits bytes into lines (LF or CRLF) and reports each with the byte offset
 * where it starts. Works on bytes, so a multi-byte character cut between two
 * chunks is never decoded in halves. The stream wrappers live in
 * transforms/record-values.ts.
 */
export interface LineSplitter {
  push(chunk: Buffer): void;
  end(): void;
}

export function splitLines(onLine: (line: string, offset: number) => void): LineSplitter {
  let carry: Buffer | null = null;
  let carryOffset = 0;
  let consumed = 0;
  const emit = (buf: Buffer, start: number, end: number, offset: number) => {
    if (end > start && buf[end - 1] === 0x0d) end--;
    onLine(buf.toString('utf8', start, end), offset);
  };
  return {
    push(chunk) {
      const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
      const base = carry ? carryOffset : consumed;
      let start = 0;
      for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
        emit(buf, start, nl, base + start);
        start = nl + 1;
      }
      carry = start < buf.length ? buf.subarray(start) : null;
      carryOffset = base + start;
      consumed += chunk.length;
    },
    end() {
      if (carry && carry.length) emit(carry, 0, carry.length, carryOffset);
      carry = null;
    },
  };
}
