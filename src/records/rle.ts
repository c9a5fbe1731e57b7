/**
 * COCO run-length encoding. Counts alternate runs of 0s and 1s in
 * column-major order, starting with 0s. The compressed string form is
 * COCO's: each count (after the third, as a delta from the count two
 * before) in 5-bit groups, 0x20 marks "more groups follow", offset by 48.
 * We store every RLE in the compressed form: lossless and several times
 * smaller than the count list.
 */
export function encodeRleCounts(counts: ArrayLike<number>): string {
  const out: number[] = [];
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out.push(c + 48);
    }
  }
  // fromCharCode takes its codes as call arguments: go in slices to stay under the argument limit.
  let s = '';
  for (let i = 0; i < out.length; i += 8192) s += String.fromCharCode(...out.slice(i, i + 8192));
  return s;
}

export function decodeRleString(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    let c = 0;
    while (more) {
      if (p >= s.length) throw new Error('RLE string ends inside a count');
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}
