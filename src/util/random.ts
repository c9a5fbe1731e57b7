/**
 * Seeded randomness shared by the generated data (sources/synthetic.ts) and
 * the generate loop's draws: both must give the same sequence on every machine.
 */

/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same data everywhere. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
