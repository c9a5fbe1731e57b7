import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from '../src/commands/heap-growth.js';
import { ROOT } from './helpers.js';

/**
 * The heap growth is a V8 setting for the whole process, so it is tried in
 * child processes (from the build, as the CLI runs it): one keeps ~30 MB of
 * objects alive while replacing them, as prepare's stages do, and reports
 * the largest heap V8 held.
 */
function peakHeapMB(percent: number): number {
  const script = `
    import v8 from 'node:v8';
    import { setHeapGrowth } from ${JSON.stringify(path.join(ROOT, 'dist', 'src', 'commands', 'heap-growth.js'))};
    setHeapGrowth(${percent});
    const ring = new Array(300000).fill(null);
    let peak = 0;
    for (let i = 0; i < 6000000; i++) {
      ring[i % ring.length] = { a: i, b: 'x' + i, c: [i, i + 1] };
      if ((i & 0xffff) === 0) peak = Math.max(peak, v8.getHeapStatistics().total_heap_size);
    }
    process.stdout.write(String(peak / 1048576));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  return Number(r.stdout);
}

describe('heap growth', () => {
  it('holds a smaller heap at the default growth than when V8 chooses (0)', () => {
    const own = peakHeapMB(0);
    const capped = peakHeapMB(DEFAULT_HEAP_GROWTH_PERCENT);
    expect(own).toBeGreaterThan(0);
    // Measured 229 MB against 139-142 MB.
    expect(capped).toBeLessThan(0.8 * own);
  });

  it('takes whole percents from 0 to 1000 only, with a clear error', () => {
    for (const bad of [-1, 2.5, 1001, NaN]) expect(() => setHeapGrowth(bad)).toThrow(/heap growth must be a whole number of percent from 0 to 1000/);
  });
});
