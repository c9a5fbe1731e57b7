import bytes from 'bytes';
import type { PrepareResult } from '../prepare/prepare.js';
import type { GenerateResult } from '../generate/generate.js';
import { unusableSummary } from '../generate/generate.js';
import { formatPromptTable } from '../inspect/inspect.js';

/**
 * The end-of-run summary people read on stderr. Records streamed rather than
 * written to a folder (`--out -`, or `run` handing them to generate) have no
 * shards to report: `streamedTo` names where they went.
 */
export function formatSummary(r: PrepareResult, streamedTo = 'stdout'): string {
  const streamed = r.out === '-';
  const lines = [
    `prepared ${r.counts.images} images in ${r.seconds}s -> ${streamed ? streamedTo : r.out}`,
    `  boxes ${r.counts.boxes} (masks ${r.counts.masks}), captions ${r.counts.captions}, qa ${r.counts.qa}, regions ${r.counts.regions}`,
    ...(streamed ? [] : [`  shards ${r.shards.length} (${bytes(r.shards.reduce((s, x) => s + x.bytes, 0))})`]),
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
  const setAside = Object.values(r.rejects).reduce((a, b) => a + b, 0);
  // An empty output with every record set aside is most often a wrong mapping or source kind, not an empty dataset.
  if (r.counts.images === 0 && setAside > 0) {
    lines.push(`warning: no images prepared, and ${setAside} records were set aside (${Object.keys(r.rejects).join(', ')}): see ${r.out === '-' ? 'the rejects file' : 'rejects.jsonl'} for why`);
  }
  return lines.join('\n');
}


/**
 * generate's summary: images worked on and those that got conversations,
 * requests and cache replays as separate figures, and every prompt type
 * with what it asked, parsed, kept and could not use.
 */
export function formatGenerateSummary(r: GenerateResult, out: string): string {
  const td = Object.entries(r.treeDescriptions);
  const rejects = Object.entries(r.rejects);
  const lines = [
    `generated ${r.conversations} conversations for ${r.imagesWithConversations} of ${r.images} images worked on, in ${r.seconds}s -> ${out}`,
    `  ${r.requests} requests to servers (${r.retries} retried), ${r.cacheHits} answers replayed from the cache, ${r.speculativeUnused} asked ahead and unused; tokens ${r.promptTokens} in / ${r.completionTokens} out`,
    ...formatPromptTable(Object.fromEntries(Object.entries(r.perPromptType).map(([k, v]) => [k, { ...v, kept: v.accepted }]))).map((l) => `  ${l}`),
    ...(td.length ? [`  tree descriptions: ${td.map(([k, v]) => `${k} ${v}`).join(', ')}`] : []),
    `  set aside: ${rejects.map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
  ];
  if (r.unusableImages) lines.push(`warning: for ${r.unusableImages} of ${r.images} images no answer of the model could be used (${unusableSummary(r.perPromptType)})`);
  return lines.join('\n');
}
