import path from 'node:path';
import { Option, type Command } from 'commander';
import bytes from 'bytes';
import cliProgress from 'cli-progress';
import { InstructifyError } from '../errors.js';
import { DEFAULT_MEMORY_BUDGET, DEFAULT_ROWS_PER_SHARD, prepare, type PrepareProgress, type PrepareResult, type SourceSpec } from '../prepare/prepare.js';
import { SOURCE_KINDS } from '../sources/index.js';
import { parseShard } from '../read/sharding.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from './heap-growth.js';
import { collectImageDir, collectSource, HEAP_GROWTH_HELP, parseHeapGrowth, parseNonNegative, parsePositiveInt, parseSize, parseWorkers } from './options.js';
import { stopOnSignals } from './terminal.js';
import { formatSummary } from './format.js';

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

/** `instructify prepare`: annotation files in, one record per image out. */
export function addPrepareCommand(program: Command): void {
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
}
