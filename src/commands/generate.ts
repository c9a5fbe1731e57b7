import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { generate } from '../generate/generate.js';
import { parseShard } from '../read/sharding.js';
import { parseNonNegative, parsePositiveInt, repeated } from './options.js';
import { stopOnSignals } from './terminal.js';
import { formatGenerateSummary } from './format.js';

/** `instructify generate`: prepared records in, conversations out. */
export function addGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('Generate instruction conversations from prepared records with an OpenAI-compatible LLM server (vLLM, SGLang, llama.cpp, Ollama, TGI).')
    .requiredOption('--in <dir>', "a prepare output folder, or '-' for the NDJSON records `prepare --out -` writes")
    .requiredOption('-o, --out <dir>', 'output folder for conversation shards, manifest.json, rejects.jsonl and the answer cache')
    .option('--llm-url <url>', 'server base URL, e.g. http://127.0.0.1:8000/v1 (repeat for several servers); without it, conversations are built from the facts alone', repeated, [] as string[])
    .option('--model <name>', 'model name the server knows (needed with --llm-url)')
    .option('--api-key-env <name>', 'environment variable holding the API key', 'OPENAI_API_KEY')
    .option('--distribution <name|file>', 'prompt mix: llava, instructify-mix, or a JSON file', 'instructify-mix')
    .option('--prompts <dir>', 'a folder of your own prompt files (repeatable; same name replaces a built-in)', repeated, [] as string[])
    .option('--temperature <t>', 'sampling temperature', parseNonNegative, 0.2)
    .option('--max-tokens <n>', 'most new tokens per answer', parsePositiveInt, 1000)
    .option('--seed <n>', 'seed for drawing prompt types (and sent to the server)', parsePositiveInt)
    .option('--max-concurrency <n>', 'requests in flight at most, over all servers', parsePositiveInt, 256)
    .option('--max-rounds <n>', 'rounds per image', parsePositiveInt, 10)
    .option('--min-info-chars <n>', 'stop an image when less information than this is left', parseNonNegative, 10)
    .option('--max-fails <n>', 'stop an image after this many rounds in a row with nothing kept', parseNonNegative, 3)
    .option('--parse-tries <n>', 'asks per prompt when the answer does not parse', parsePositiveInt, 3)
    .option('--stop-used-share <x>', 'stop an image once this share of its information is used', parseNonNegative, 0.85)
    .option('--no-filter', 'keep every parsed conversation: no check, no reduce')
    .option('--no-speculate', 'never ask checks and reduce at once, not even when slots are free at the end of a run')
    .option('--no-tree', 'do not use the ASCII tree as information')
    .option('--cache <file>', 'SQLite answer cache (default: <out>/cache.sqlite)')
    .option('--no-cache', 'ask the servers every time')
    .addOption(new Option('--format <format>', 'shard format').choices(['parquet', 'jsonl']).default('parquet'))
    .option('--max-failure-rate <x>', 'exit non-zero when more than this share of images fail', parseNonNegative, 0.01)
    .option('--shard <K/N|N>', 'process only shard K of N (N alone: K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)', (v: string) => parseShard(v))
    .option('--force', 'replace a run in --out that was made with other settings')
    .option('--limit <n>', 'only the first N images of the input: a trial run on a big input', parsePositiveInt)
    .option('--json', 'print the summary as JSON on stdout')
    .option('-q, --quiet', 'no progress and no summary')
    .action(async (opts) => {
      const showProgress = !opts.quiet && process.stderr.isTTY === true;
      const bar = showProgress
        ? new cliProgress.SingleBar(
            {
              stream: process.stderr,
              hideCursor: true,
              clearOnComplete: true,
              format: 'generating {bar} {percentage}% | {value}/{total} images | {inflight} in flight | {rps} req/s | {tps} tokens/s | {accepted} kept ({rate} accepted) | ETA {eta_formatted}',
            },
            cliProgress.Presets.shades_classic,
          )
        : null;
      const t0 = Date.now();
      let started = false;
      // Images in flight finish and everything is written.
      const stop = stopOnSignals('finishing the images in flight');
      const result = await generate({
        signal: stop.signal,
        input: opts.in,
        out: opts.out,
        llm: opts.llmUrl.length === 0 ? undefined : {
          endpoints: opts.llmUrl,
          model: opts.model,
          apiKeyEnv: opts.apiKeyEnv,
          maxConcurrency: opts.maxConcurrency,
          sampling: { temperature: opts.temperature, maxTokens: opts.maxTokens, seed: opts.seed ?? null },
        },
        distribution: opts.distribution,
        promptDirs: opts.prompts,
        loop: {
          filtering: opts.filter,
          useTree: opts.tree,
          maxRounds: opts.maxRounds,
          minInfoChars: opts.minInfoChars,
          maxFails: opts.maxFails,
          parseTries: opts.parseTries,
          stopUsedShare: opts.stopUsedShare,
          seed: opts.seed ?? 0,
        },
        cache: opts.cache === false ? null : typeof opts.cache === 'string' ? opts.cache : undefined,
        format: opts.format,
        maxFailureRate: opts.maxFailureRate,
        speculate: opts.speculate,
        shard: opts.shard ?? null,
        force: opts.force ?? false,
        limit: opts.limit,
        onProgress: (p) => {
          if (!bar) return;
          if (!started) {
            bar.start(Math.max(p.total, p.done, 1), 0, { inflight: 0, rps: 0, tps: 0, accepted: 0, rate: '-' });
            started = true;
          }
          const secs = (Date.now() - t0) / 1000 || 1e-3;
          if (p.total === 0) bar.setTotal(Math.max(p.done, 1));
          bar.update(p.done, {
            inflight: p.inFlight,
            rps: Math.round(p.requests / secs),
            tps: Math.round(p.tokens / secs),
            accepted: p.accepted,
            rate: p.generated ? `${Math.round((100 * p.accepted) / p.generated)}%` : '-',
          });
        },
      }).finally(() => bar?.stop());
      if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else if (!opts.quiet) process.stderr.write(formatGenerateSummary(result, opts.out) + '\n');
      stop.dispose();
      // 130: stopped by a signal, as shells report it; the output is consistent but not finished.
      if (result.interrupted) process.exitCode = 130;
    });
}
