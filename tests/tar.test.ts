import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTarParser, type TarEntry } from '../src/read/tar.js';
import { rng } from '../src/util/random.js';
import { tmpDir } from './helpers.js';

describe('tar entries', () => {
  it('reads what GNU tar wrote, whatever the chunk sizes: names (long ones too), bytes and header offsets', async () => {
    const dir = await tmpDir();
    const long = `${'deep/'.repeat(25)}000000007.json`;
    const files: Record<string, Buffer> = { '000000000.jpg': Buffer.alloc(1000, 7), '000000000.json': Buffer.from('{"url":"u"}'), [long]: Buffer.from('x'.repeat(513)), 'empty.txt': Buffer.alloc(0) };
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      writeFileSync(path.join(dir, name), data);
    }
    const archive = path.join(dir, 'a.tar');
    execFileSync('tar', ['--format=gnu', '-cf', archive, '-C', dir, ...Object.keys(files)]);
    const bytes = readFileSync(archive);
    const r = rng(3);
    for (const maxChunk of [1, 7, 511, 513, 100_000]) {
      const got: TarEntry[] = [];
      const p = createTarParser((e) => got.push(e));
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + Math.floor(r() * maxChunk);
        p.push(bytes.subarray(at, at + n));
        at += n;
      }
      p.end();
      expect(got.map((e) => e.name)).toEqual(Object.keys(files));
      for (const e of got) {
        expect(e.data.equals(files[e.name]!)).toBe(true);
        // The offset points at the entry's header (or, for a long name, the header of the name record).
        expect(bytes.toString('latin1', e.offset, e.offset + 100)).toMatch(/^(000000000\.jpg|000000000\.json|empty\.txt|\.\/\.\/@LongLink|deep\/)/);
      }
    }
    const cut = createTarParser(() => {});
    cut.push(bytes.subarray(0, 700));
    expect(() => cut.end()).toThrow(/ends inside an entry/);
  });
});
