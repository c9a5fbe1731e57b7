import bytes from 'bytes';
import type { PrepareResult } from './prepare.js';

/** The end-of-run summary people read on stderr. */
export function formatSummary(r: PrepareResult): string {
  const lines = [
    `prepared ${r.counts.images} images in ${r.seconds}s -> ${r.out}`,
    `  boxes ${r.counts.boxes} (masks ${r.counts.masks}), captions ${r.counts.captions}, qa ${r.counts.qa}, regions ${r.counts.regions}`,
    `  shards ${r.shards.length} (${bytes(r.shards.reduce((s, x) => s + x.bytes, 0))})`,
    `  per source: ${Object.entries(r.perSource)
      .map(([k, v]) => `${k} ${v.images} images / ${v.fragments} fragments`)
      .join('; ')}`,
    `  rejects: ${
      Object.entries(r.rejects)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
    `  time per stage: ${Object.entries(r.stages)
      .map(([k, v]) => `${k} ${v.seconds}s`)
      .join(', ')}`,
  ];
  if (r.join.spills) lines.push(`  join spilled ${r.join.spills} times (${bytes(r.join.spilledBytes)}) to stay under the memory budget`);
  if (r.read.batches) {
    const share = r.join.fragments ? Math.round((100 * r.read.fragments) / r.join.fragments) : 0;
    lines.push(`  read workers: ${r.read.workers} parsed ${r.read.batches} batches (${r.read.elements} elements, ${share}% of fragments) while the main thread scanned`);
  }
  return lines.join('\n');
}

