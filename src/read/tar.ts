/**
 * A tar archive read as it streams (webdataset shards): each file entry is
 * handed on whole, with its name and the byte offset of its header. Plain
 * ustar headers, GNU long names and pax `path` records; directories, links
 * and other entries are skipped.
 */
export interface TarEntry {
  name: string;
  data: Buffer;
  offset: number;
}

const BLOCK = 512;

function octal(b: Buffer, from: number, len: number): number {
  const s = b.toString('latin1', from, from + len).replace(/\0.*$/, '').trim();
  return s ? parseInt(s, 8) : 0;
}

function cString(b: Buffer, from: number, len: number): string {
  const end = b.indexOf(0, from);
  return b.toString('utf8', from, end >= from && end < from + len ? end : from + len);
}

/** A push parser: feed chunks in order, get the entries each completes. */
export function createTarParser(onEntry: (e: TarEntry) => void): { push(chunk: Buffer): void; end(): void } {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let offset = 0;
  // The entry being read: its header's facts, and how many bytes (data plus padding) it spans.
  let entry: { name: string; type: string; size: number; at: number } | null = null;
  let longName: string | null = null;
  let ended = false;

  const take = (n: number): Buffer => {
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    pending = rest.length ? [rest] : [];
    pendingBytes = rest.length;
    offset += n;
    return out;
  };

  const step = (): boolean => {
    if (entry === null) {
      if (pendingBytes < BLOCK) return false;
      const at = offset;
      const h = take(BLOCK);
      if (h.every((x) => x === 0)) {
        ended = true;
        return true;
      }
      const prefix = h.toString('latin1', 257, 263).startsWith('ustar') ? cString(h, 345, 155) : '';
      const base = cString(h, 0, 100);
      entry = { name: longName ?? (prefix ? `${prefix}/${base}` : base), type: String.fromCharCode(h[156] || 48), size: octal(h, 124, 12), at };
      longName = null;
      return true;
    }
    const padded = Math.ceil(entry.size / BLOCK) * BLOCK;
    if (pendingBytes < padded) return false;
    const data = Buffer.from(take(padded).subarray(0, entry.size));
    const e = entry;
    entry = null;
    if (e.type === 'L') longName = cString(data, 0, data.length);
    else if (e.type === 'x') longName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8'))?.[1] ?? null;
    else if (e.type === '0' || e.type === '\0' || e.type === '7') onEntry({ name: e.name, data, offset: e.at });
    return true;
  };

  return {
    push(chunk) {
      if (ended) return;
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (!ended && step());
    },
    end() {
      if (!ended && (entry !== null || pendingBytes > 0)) throw new Error(`the tar archive ends inside an entry (byte ${offset})`);
    },
  };
}
