import { PassThrough } from 'node:stream';
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { generate, type GenerateOptions, type GenerateResult } from '../generate/generate.js';
import { prepare, type PrepareOptions, type PrepareResult } from '../prepare/prepare.js';
import type { ImageRecord } from '../types.js';
import type { Command } from 'commander';
import type { SourceSpec } from '../prepare/prepare.js';
import { parseShard } from '../read/sharding.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from './heap-growth.js';
import { collectImageDir, collectSource, HEAP_GROWTH_HELP, parseHeapGrowth, parseNonNegative, parsePositiveInt, repeated } from './options.js';
import { formatGenerateSummary, formatSummary } from './format.js';

/**
 * `run`: prepare and generate in one streaming pipeline. Records leave
 * prepare's main-thread lane into a bounded object stream that generate
 * reads as it goes; nothing is written in between. When generate falls
 * behind, the stream fills and prepare waits.
 */
export interface RunOptions {
  prepare: Omit<PrepareOptions, 'out' | 'recordStream'>;
  generate: Omit<GenerateOptions, 'input'>;
  /** Records waiting between the two, at most. */
  buffer?: number;
}

export async function run(o: RunOptions): Promise<{ prepared: PrepareResult; generated: GenerateResult }> {
  await mkdir(o.generate.out, { recursive: true });
  const channel = new PassThrough({ objectMode: true, highWaterMark: o.buffer ?? 512 });
  // generate may stop reading early (--limit): the channel must then stay open, and what prepare
  // still sends is drained below, or prepare would wait forever on a closed channel.
  const records = channel.iterator({ destroyOnReturn: false }) as AsyncIterable<ImageRecord>;
  // Errors reach generate through its iterator; this listener only keeps an
  // error raised before it starts reading from being "unhandled".
  channel.on('error', () => {});
  const prepared = prepare({ ...o.prepare, out: '-', rejects: o.prepare.rejects ?? path.join(o.generate.out, 'prepare-rejects.jsonl'), recordStream: channel });
  // If prepare fails, generate must not wait for records that will never come.
  prepared.catch((err: Error) => channel.destroy(err));
  const generated = generate({ ...o.generate, input: records });
  generated.then(
    () => channel.resume(),
    () => channel.destroy(),
  );
  const [p, g] = await Promise.allSettled([prepared, generated]);
  // A failing generate closes the channel, which prepare then reports: the first cause is the one to show.
  if (g.status === 'rejected') throw g.reason;
  if (p.status === 'rejected') throw p.reason;
  return { prepared: p.value, generated: g.value };
}

/** `instructify run`: prepare and generate in one process. */
export function addRunCommand(program: Command): void {
  program
    .command('run')
    .description('prepare and generate in one stream: annotation files in, conversation shards out, nothing in between.')
    .requiredOption('-o, --out <dir>', 'output folder for conversation shards')
    .option('--images <dir>', 'image root (as for prepare)')
    .option('-s, --source <kind=paths>', 'an input, as for prepare (repeatable)', collectSource, [] as SourceSpec[])
    .option('--image-dir <family=dir>', 'as for prepare (repeatable)', collectImageDir, {})
    .option('--llm-url <url>', 'server base URL (repeatable); without it, conversations come from the facts', repeated, [] as string[])
    .option('--model <name>', 'model name, with --llm-url')
    .option('--api-key-env <name>', 'environment variable holding the API key', 'OPENAI_API_KEY')
    .option('--distribution <name|file>', 'prompt mix', 'instructify-mix')
    .option('--max-concurrency <n>', 'requests in flight at most', parsePositiveInt, 256)
    .option('--seed <n>', 'seed for drawing prompt types', parsePositiveInt)
    .option('--no-tree', 'no ASCII tree')
    .option('--no-speculate', 'as for generate')
    .option('--max-failure-rate <x>', 'exit non-zero past this share of failed images', parseNonNegative, 0.01)
    .option('--shard <K/N|N>', 'process only shard K of N (N alone: K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)', (v: string) => parseShard(v))
    .option('--heap-growth <percent>', HEAP_GROWTH_HELP, parseHeapGrowth, DEFAULT_HEAP_GROWTH_PERCENT)
    .option('--limit <n>', 'only the first N images: a trial run', parsePositiveInt)
    .option('-q, --quiet', 'no summary')
    .action(async (opts) => {
      setHeapGrowth(opts.heapGrowth);
      const r = await run({
        prepare: { sources: opts.source, images: opts.images ?? null, imageDirs: opts.imageDir, tree: { mode: opts.tree === false ? 'flat' : 'tree' }, shard: opts.shard ?? null },
        generate: {
          out: opts.out,
          llm: opts.llmUrl.length ? { endpoints: opts.llmUrl, model: opts.model, apiKeyEnv: opts.apiKeyEnv, maxConcurrency: opts.maxConcurrency, sampling: { seed: opts.seed ?? null } } : undefined,
          distribution: opts.distribution,
          loop: { useTree: opts.tree, seed: opts.seed ?? 0 },
          maxFailureRate: opts.maxFailureRate,
          speculate: opts.speculate,
          limit: opts.limit,
          // prepare already kept only this shard's images.
        },
      });
      if (!opts.quiet) {
        process.stderr.write(formatSummary(r.prepared, 'generate (in this process)') + '\n');
        process.stderr.write(formatGenerateSummary(r.generated, opts.out) + '\n');
      }
    });
}
