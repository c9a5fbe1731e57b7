/**
 * Strings up to this long are copied by a loop while they are ASCII:
 * `Buffer.write` costs about 100 ns a call whatever the length, the loop
 * about 30 ns for a label-sized string, and most strings the join and the
 * Arrow columns write are labels, sources and ids.
 */
const SHORT = 32;

/**
 * Write `s` as UTF-8 at `pos` (the caller has made room: 3 bytes per
 * character); returns the bytes written, which equal `s.length` exactly
 * when `s` is ASCII.
 */
export function writeUtf8(buf: Buffer, s: string, pos: number): number {
  const n = s.length;
  if (n > SHORT) return buf.write(s, pos, 'utf8');
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return buf.write(s, pos, 'utf8');
    buf[pos + i] = c;
  }
  return n;
}
