import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import bytes from 'bytes';
import cliProgress from 'cli-progress';
import { InstructifyError, ioRemedy } from './errors.js';
import { runHardStop } from './hard-stop.js';
import { DEFAULT_MEMORY_BUDGET, DEFAULT_ROWS_PER_SHARD, prepare, type PrepareProgress, type PrepareResult, type SourceSpec } from './prepare.js';
import { SOURCE_KINDS } from './sources/index.js';
import { VERSION } from './version.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, isHeapGrowthPercent, setHeapGrowth } from './heap.js';
import { runDemo } from './demo.js';
import { generate } from './generate/generate.js';
import { run } from './run.js';
import path from 'node:path';
import { EXPORT_FORMATS, exportConversations } from './export.js';
import { folderStats, formatStats, preview } from './inspect.js';
import { parseShard } from './sharding.js';
import { formatVerify, verify } from './verify.js';
import { formatGenerateSummary, formatSummary } from './cli-format.js';
import { benchStages, formatStageBench } from './throughput/stages.js';
import { benchLlm, formatLlmBench } from './throughput/llm.js';

/**
 * The first Ctrl-C (or SIGTERM) asks the command to stop cleanly through
 * the returned signal; a second one exits at once, with 130 as shells do.
 */
function stopOnSignals(what: string): { signal: AbortSignal; dispose: () => void } {
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) {
      // Stop at once, but leave the folder consistent: no .tmp file, the manifest says "interrupted", no lock.
      runHardStop();
      process.exit(130);
    }
    process.stderr.write(`instructify: stopping: ${what} (again to stop at once)\n`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** For commands that only print: when the reader of stdout leaves (`| head`), stop quietly. */
function quietOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

/** For options given several times (`--llm-url A --llm-url B`): every value, in order. */
function repeated(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function parseSize(v: string): number {
  const n = bytes.parse(v);
  if (n === null || !(n > 0)) throw new InvalidArgumentError(`"${v}" is not a size (try 256MB or 1GB)`);
  return n;
}

function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`"${v}" is not a positive whole number`);
  return n;
}

function parseWorkers(v: string): number | 'auto' {
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new InvalidArgumentError(`"${v}" is not a number of workers (0 to 64, or auto)`);
  return n;
}

const HEAP_GROWTH_HELP = 'how far (percent) the JavaScript heap may grow past live memory before it is collected; lower uses less memory, 0 leaves it to V8 (up to 4x: more memory, sometimes faster)';

function parseHeapGrowth(v: string): number {
  const n = Number(v);
  if (!isHeapGrowthPercent(n)) throw new InvalidArgumentError(`"${v}" is not a heap growth in whole percent (0 to 1000)`);
  return n;
}

function parseNonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`"${v}" is not a non-negative number`);
  return n;
}

/** `KIND=PATH[,PATH...]`, collected over repeats. */
function collectSource(v: string, prev: SourceSpec[]): SourceSpec[] {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${v}" should be KIND=PATH[,PATH...], e.g. coco-captions=annotations/captions_val2017.json`);
  const kind = v.slice(0, eq);
  if (!SOURCE_KINDS.has(kind)) throw new InvalidArgumentError(`unknown source kind "${kind}"; known: ${[...SOURCE_KINDS.keys()].join(', ')}`);
  const paths = v.slice(eq + 1).split(',').filter(Boolean);
  if (!paths.length) throw new InvalidArgumentError(`source ${kind} names no files`);
  return [...prev, { kind, paths }];
}

/** `FAMILY=DIR`, collected over repeats. */
function collectImageDir(v: string, prev: Record<string, string>): Record<string, string> {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${v}" should be FAMILY=DIR, e.g. coco=val2017`);
  return { ...prev, [v.slice(0, eq)]: v.slice(eq + 1) };
}

/**
 * Progress on a terminal, nothing otherwise: a bar over the bytes read, then
 * a bar over the join's partitions while records are built and written.
 */
function progressReporter(enabled: boolean): { update: (p: PrepareProgress) => void; stop: () => void } {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const options = { stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50 };
  // {total} and {value} are cli-progress's own tokens; our texts use other names.
  const reading = new cliProgress.SingleBar({ ...options, format: 'reading {bar} {percentage}% | {read} of {size} | {rate} | ETA {eta_formatted}' }, cliProgress.Presets.shades_classic);
  const writing = new cliProgress.SingleBar({ ...options, format: 'writing {bar} {percentage}% | {images} images | {rate} | ETA {eta_formatted}' }, cliProgress.Presets.shades_classic);
  let phase: 'none' | PrepareProgress['phase'] = 'none';
  const t0 = Date.now();
  let tWrite = 0;
  return {
    update(p) {
      if (p.phase === 'read') {
        // Reading stdin: the size is not known, so the bar follows what was read.
        const size = p.bytesTotal > 0 ? bytes(p.bytesTotal) : 'unknown';
        const total = Math.max(p.bytesTotal, p.bytesRead, 1);
        if (phase === 'none') reading.start(total, 0, { read: '0B', size, rate: '' });
        phase = 'read';
        const secs = (Date.now() - t0) / 1000 || 1e-3;
        if (p.bytesTotal === 0) reading.setTotal(total);
        reading.update(p.bytesRead, { read: bytes(p.bytesRead), size, rate: `${bytes(p.bytesRead / secs)}/s` });
        return;
      }
      if (phase !== 'write') {
        if (phase === 'read') reading.stop();
        tWrite = Date.now();
        writing.start(Math.max(1, p.partsTotal), 0, { images: 0, rate: '' });
        phase = 'write';
      }
      const secs = (Date.now() - tWrite) / 1000 || 1e-3;
      writing.update(p.partsDone, { images: p.records, rate: `${Math.round(p.records / secs)} images/s` });
    },
    stop() {
      if (phase === 'read') reading.stop();
      if (phase === 'write') writing.stop();
    },
  };
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('instructify')
    .description('Turn image dataset metadata (captions, boxes, masks, question/answer pairs) into visual instruction tuning data.')
    .version(VERSION)
    // A pointer, not the whole help: prepare's help is a hundred lines and would bury the message.
    .showHelpAfterError('(add --help to see the options)')
    // Usage mistakes exit 2 like our own option errors (E_OPTION), not commander's 1: see main().
    .exitOverride();

  program
    .command('prepare')
    .description('Stream annotation files into one record per image (all sources joined) and write them as shards.')
    .requiredOption('-o, --out <dir>', "output folder for shards, manifest.json and rejects.jsonl, or '-' to stream records to stdout")
    .option('--images <dir>', 'image root: output image paths are relative to it, and every image is checked there')
    .option(
      '-s, --source <kind=paths>',
      `an input: KIND=PATH[,PATH...], repeatable. Kinds: ${[...SOURCE_KINDS.values()].map((k) => `${k.kind} (${k.expects})`).join('; ')}`,
      collectSource,
      [] as SourceSpec[],
    )
    .addOption(
      new Option('--format <format>', 'output format: parquet (default), jsonl or arrow (IPC file) shards in a folder; with --out -, ndjson (default) or arrow (IPC stream)').choices([
        'parquet',
        'jsonl',
        'ndjson',
        'arrow',
      ]),
    )
    .option('--rejects <file>', 'where set-aside records go (default: <out>/rejects.jsonl; none with --out - unless given)')
    .option('--rows-per-shard <n>', 'start a new shard after this many images', parsePositiveInt, DEFAULT_ROWS_PER_SHARD)
    .option('--row-group-rows <n>', 'Parquet row group size in rows', parsePositiveInt, 1000)
    .addOption(new Option('--memory-budget <size>', 'annotations held in memory for the join before it spills to disk, e.g. 512MB').argParser(parseSize).default(DEFAULT_MEMORY_BUDGET, '32MB'))
    .option('--tmp-dir <dir>', 'where the join spills (default: the OS temp folder)')
    .option('--image-dir <family=dir>', 'folder under the image root holding a family\'s images, e.g. coco=val2017 or vg=. (repeatable)', collectImageDir, {})
    .addOption(new Option('--coco-naming <year>', 'COCO file naming when no image table names the file').choices(['2017', '2014']).default('2017'))
    .option('--no-check-images', 'do not open images (sizes must then come from the annotations)')
    .option('--keep-missing', 'keep records whose image is missing or unreadable (still listed in rejects.jsonl)')
    .option('--strict', 'stop at the first bad record instead of setting it aside')
    .option('--image-concurrency <n>', 'images checked at once', parsePositiveInt, 16)
    .option('--shard <K/N|N>', 'process only shard K of N (N alone: K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)', (v: string) => parseShard(v))
    .option('--workers <n>', "worker threads for parsing bulk arrays while reading, then building records and writing shards: a number (0: none) or 'auto'", parseWorkers, 'auto' as number | 'auto')
    .option('--heap-growth <percent>', HEAP_GROWTH_HELP, parseHeapGrowth, DEFAULT_HEAP_GROWTH_PERCENT)
    .option('--edge-tolerance <fraction>', 'how far a box may cross the image edge before it is rejected (it is clamped)', parseNonNegative, 0.01)
    .option('--no-tree', 'instead of the ASCII tree, a flat [label, x1, y1, x2, y2] list (y up): the ablation')
    .option('--depth-dir <dir>', 'depth maps, one PNG per image at <dir>/<image path without extension>.png (8 or 16 bit)')
    .option('--depth-larger-is-farther', 'depth maps hold distance (larger = farther); default: inverse depth (larger = nearer), as MiDaS and Depth Anything write')
    .option('--tree-box-merge-iou <x>', 'boxes overlapping more than this are one object', parseNonNegative, 0.95)
    .option('--tree-mask-merge-iou <x>', 'second merge: box and mask IoU both above this', parseNonNegative, 0.6)
    .option('--tree-containment <x>', 'a child has more than this share of its mask inside its parent', parseNonNegative, 0.2)
    .option('--tree-depth-grace <n>', 'parent and child depth layers may be this far apart', parseNonNegative, 1)
    .option('--tree-group-distance <x>', 'same-label siblings this close (0..1 units) are counted as a group', parseNonNegative, 0.5)
    .option('--tree-many-above <n>', 'groups larger than this are "many"', parseNonNegative, 8)
    .option('--json', 'print the summary as JSON on stdout')
    .option('-q, --quiet', 'no progress and no summary')
    .action(async (opts) => {
      setHeapGrowth(opts.heapGrowth);
      const showProgress = !opts.quiet && process.stderr.isTTY === true;
      const progress = progressReporter(showProgress);
      // No partial shard is left, the spill folder is removed, the manifest says "interrupted".
      const stop = stopOnSignals('removing partial output');
      let result: PrepareResult;
      try {
        result = await prepare({
          signal: stop.signal,
          sources: opts.source,
          images: opts.images ?? null,
          out: opts.out,
          format: opts.format,
          rejects: opts.rejects,
          rowsPerShard: opts.rowsPerShard,
          rowGroupRows: opts.rowGroupRows,
          memoryBudget: opts.memoryBudget,
          tmpDir: opts.tmpDir,
          checkImages: opts.checkImages && opts.images !== undefined,
          keepMissing: opts.keepMissing ?? false,
          strict: opts.strict ?? false,
          imageDirs: opts.imageDir,
          cocoNaming: opts.cocoNaming,
          imageConcurrency: opts.imageConcurrency,
          edgeTolerance: opts.edgeTolerance,
          workers: opts.workers,
          shard: opts.shard ?? null,
          tree: {
            mode: opts.tree === false ? 'flat' : 'tree',
            depthDir: opts.depthDir ?? null,
            depthLargerIsFarther: opts.depthLargerIsFarther ?? false,
            tree: {
              boxMergeIou: opts.treeBoxMergeIou,
              maskMergeIou: opts.treeMaskMergeIou,
              containment: opts.treeContainment,
              depthGrace: opts.treeDepthGrace,
              groupDistance: opts.treeGroupDistance,
              manyAbove: opts.treeManyAbove,
            },
          },
          onProgress: progress.update,
        });
      } finally {
        progress.stop();
        stop.dispose();
      }
      if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else if (!opts.quiet) process.stderr.write(formatSummary(result) + '\n');
      // Every record set aside: a wrong mapping, kind or --images, not a success a script should go on from.
      const setAside = Object.values(result.rejects).reduce((a, b) => a + b, 0);
      if (result.counts.images === 0 && setAside > 0) {
        throw new InstructifyError('E_EMPTY', `no record was prepared: all ${setAside} were set aside (${Object.keys(result.rejects).join(', ')}); see ${opts.rejects ?? path.join(opts.out, 'rejects.jsonl')}`);
      }
    });

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

  program
    .command('export')
    .description('Write generated conversations in the format your trainer reads, checking each on the way out.')
    .requiredOption('--in <dir>', 'a generate output folder')
    .requiredOption('-o, --out <dir>', 'output folder')
    .addOption(new Option('--format <format>', 'llava (JSON array), llava-jsonl, sharegpt (LLaMA-Factory), hf-parquet (Hugging Face), internvl').choices(EXPORT_FORMATS).makeOptionMandatory())
    .option('--images <dir>', 'image root: InternVL needs it for sizes, --embed-images to read the images')
    .option('--embed-images', 'hf-parquet: store the image bytes, not their paths')
    .option('--name <name>', 'dataset name in dataset_info.json / the InternVL meta file', 'instructify')
    .option('--strict', 'stop at the first conversation that would be set aside')
    .option('--rows-per-shard <n>', 'hf-parquet: conversations per data/train-*.parquet file', parsePositiveInt, 50_000)
    .action(async (opts) => {
      const r = await exportConversations({ input: opts.in, out: opts.out, format: opts.format, images: opts.images ?? null, embedImages: opts.embedImages ?? false, name: opts.name, strict: opts.strict ?? false, rowsPerShard: opts.rowsPerShard });
      process.stderr.write(
        `exported ${r.exported} conversations as ${opts.format} -> ${r.files.map((f) => path.join(opts.out, f)).join(', ')}\n  boxes in text: ${r.boxes}\n  set aside: ${Object.entries(r.rejected).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}\n`,
      );
    });

  program
    .command('verify')
    .description('Check output folders (one per shard, or one): every shard complete, rows as the manifests say, no id twice, no shard missing.')
    .argument('<dirs...>', 'output folders')
    .option('--json', 'print JSON')
    .action(async (dirs: string[], opts) => {
      quietOnClosedPipe();
      const r = await verify(dirs);
      process.stdout.write((opts.json ? JSON.stringify(r, null, 2) : formatVerify(r)) + '\n');
      if (!r.ok) process.exitCode = 1;
    });

  program
    .command('stats')
    .description('Summarise a prepare or generate output folder: images, conversations and turns per prompt type and generator, turn lengths, accept rates, rejects.')
    .argument('<dir>', 'an output folder')
    .option('--json', 'print JSON')
    .action(async (dir: string, opts) => {
      quietOnClosedPipe();
      const s = await folderStats(dir);
      process.stdout.write((opts.json ? JSON.stringify(s, null, 2) : formatStats(s)) + '\n');
    });

  program
    .command('preview')
    .description('For a few prepared images, show the information, the tree and the exact prompts that would be sent (with --llm-url: the answers too).')
    .requiredOption('--in <dir>', 'a prepare output folder')
    .option('-n, --count <n>', 'how many images (the first N of the input)', parsePositiveInt, 2)
    .option('--limit <n>', 'the same as --count, as generate and run spell it', parsePositiveInt)
    .option('--distribution <name|file>', 'prompt mix', 'instructify-mix')
    .option('--prompts <dir>', 'your own prompt folder (repeatable)', repeated, [] as string[])
    .option('--llm-url <url>', 'also ask this server and show its answers (repeatable)', repeated, [] as string[])
    .option('--model <name>', 'model name, with --llm-url')
    .option('--seed <n>', 'seed for drawing prompt types', parsePositiveInt)
    .action(async (opts) => {
      quietOnClosedPipe();
      await preview({
        input: opts.in,
        count: opts.limit ?? opts.count,
        distribution: opts.distribution,
        promptDirs: opts.prompts,
        llm: opts.llmUrl.length ? { endpoints: opts.llmUrl, model: opts.model } : undefined,
        seed: opts.seed,
        log: (s) => process.stdout.write(s + '\n'),
      });
    });

  program
    .command('demo')
    .description('Make a small sample dataset (images and COCO-style annotations), prepare it and generate conversations. Needs no GPU, server or network.')
    .option('-o, --out <dir>', 'where the sample and its output go', 'demo-out')
    .option('--images <n>', 'how many sample images', parsePositiveInt, 24)
    .option('--seed <n>', 'seed for the sample', parsePositiveInt, 7)
    .option('--llm-url <url>', 'generate with this OpenAI-compatible server instead of from the facts (repeatable)', repeated, [] as string[])
    .option('--model <name>', 'model name, with --llm-url')
    .action(async (opts) => {
      await runDemo({ out: opts.out, images: opts.images, seed: opts.seed, llmUrls: opts.llmUrl, model: opts.model, log: (s) => process.stdout.write(s + '\n') });
    });

  program
    .command('bench')
    .description('Measure throughput on this machine: the local stages of prepare (--stages), or your own LLM server (--llm-url).')
    .option('--stages', 'time each prepare stage (parse, join, sizes, tree, write) on seeded generated data')
    .option('--size <size>', 'with --stages: size of the generated annotation file', parseSize, 50 * 1e6)
    .option('--images <n>', 'with --stages: images written and sized with sharp', parsePositiveInt, 300)
    .option('--dir <dir>', 'with --stages: working folder for the generated data (default: under the temp folder)')
    .option('--llm-url <url>', 'measure this OpenAI-compatible server (repeat for several)', repeated, [] as string[])
    .option('--model <name>', 'with --llm-url: the model name the server knows')
    .option('--api-key-env <name>', 'environment variable holding the API key', 'OPENAI_API_KEY')
    .option('--in <dir>', 'with --llm-url: draw the requests from this prepared folder (default: a seeded sample)')
    .option('--sample <n>', 'with --llm-url: records the requests are drawn from', parsePositiveInt, 40)
    .option('--levels <list>', 'with --llm-url: concurrency levels to try, rising', (v: string) => v.split(',').map((x) => parsePositiveInt(x.trim())), [1, 8, 32, 128, 512])
    .option('--seconds <s>', 'with --llm-url: how long each level runs', parseNonNegative, 20)
    .option('--max-requests <n>', 'with --llm-url: requests over the whole bench, at most', parsePositiveInt, 20_000)
    .option('--refine <n>', 'with --llm-url: extra levels tried to narrow the knee', parseNonNegative, 3)
    .option('--max-tokens <n>', 'with --llm-url: most new tokens per answer', parsePositiveInt, 1000)
    .option('--temperature <t>', 'with --llm-url: sampling temperature', parseNonNegative, 0.2)
    .option('--seed <n>', 'seed for the generated data', parsePositiveInt, 42)
    .option('--json', 'print the result as JSON on stdout')
    .action(async (opts) => {
      quietOnClosedPipe();
      const llm = (opts.llmUrl as string[]).length > 0;
      if (!opts.stages && !llm) throw new InstructifyError('E_OPTION', 'bench needs --stages, --llm-url URL --model NAME, or both');
      const log = (s: string) => process.stderr.write(s + '\n');
      const out: Record<string, unknown> = {};
      if (opts.stages) {
        const r = await benchStages({ bytes: opts.size, images: opts.images, seed: opts.seed, dir: opts.dir, log });
        if (opts.json) out.stages = r;
        else process.stdout.write(formatStageBench(r) + '\n');
      }
      if (llm) {
        const r = await benchLlm({
          endpoints: opts.llmUrl,
          model: opts.model ?? '',
          apiKeyEnv: opts.apiKeyEnv,
          sampling: { maxTokens: opts.maxTokens, temperature: opts.temperature },
          levels: opts.levels,
          secondsPerLevel: opts.seconds,
          maxRequests: opts.maxRequests,
          input: opts.in ?? null,
          sample: opts.sample,
          refineSteps: Math.floor(opts.refine),
          log,
        });
        if (opts.json) out.llm = r;
        else process.stdout.write((opts.stages ? '\n' : '') + formatLlmBench(r) + '\n');
      }
      if (opts.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    });

  program
    .command('sources')
    .description('List the source loaders and the files each expects.')
    .action(() => {
      quietOnClosedPipe();
      for (const k of SOURCE_KINDS.values()) process.stdout.write(`${k.kind.padEnd(22)} ${k.expects}\n`);
    });

  return program;
}

/**
 * Exit codes scripts can trust (the README has the table): 0 done; 1
 * failed; 2 a usage mistake or a refusal (nothing was touched); 3 nothing to
 * write (every record set aside, or no input record); 130 interrupted.
 */
export function exitCodeOf(code: string): number {
  if (code === 'E_OPTION' || code === 'E_OUTPUT') return 2;
  if (code === 'E_EMPTY') return 3;
  if (code === 'E_INTERRUPTED') return 130;
  return 1;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    // commander has printed its message (or the help, or the version) already.
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    // The reader of our output went away (`| head`): that is how pipes end, not an error.
    if (err instanceof InstructifyError && err.code === 'E_PIPE_CLOSED') {
      process.exitCode = 0;
      return;
    }
    if (err instanceof InstructifyError) {
      process.stderr.write(`instructify: ${err.code}: ${err.message}\n`);
      process.exitCode = exitCodeOf(err.code);
      return;
    }
    // A file system error we did not wrap: its code, its path (Node leaves it out for open files) and what to do.
    if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string') {
      const e = err as NodeJS.ErrnoException;
      const where = e.path && !e.message.includes(e.path) ? ` (${e.path})` : '';
      const remedy = ioRemedy(e.code);
      process.stderr.write(`instructify: E_IO: ${e.message}${where}${remedy ? `; ${remedy}` : ''}\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}
