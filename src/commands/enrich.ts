import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { enrich } from '../enrich/enrich.js';
import { parseShard } from '../read/sharding.js';
import { parseNonNegative } from './options.js';
import { stopOnSignals } from './terminal.js';

/** `instructify enrich`: depth maps, masks from boxes and OCR, by models, into a prepared folder. */
export function addEnrichCommand(program: Command): void {
  program
    .command('enrich')
    .description('Run models over a prepared folder: depth maps (Depth Anything V2), a mask for every box without one (SAM, prompted with the box), OCR (tesseract); trees are built anew. Needs model support: npm run models:install.')
    .requiredOption('--in <dir>', 'a prepare output folder')
    .requiredOption('-o, --out <dir>', 'output folder: a prepared folder of the same schema')
    .option('--depth', 'a depth map per image: its layers go into the tree')
    .option('--masks', 'a mask for every box the dataset gave none')
    .option('--ocr', 'read the text in the image: words as boxes, the text as a fact')
    .option('--images <dir>', 'image root (default: the one the prepared manifest names)')
    .option('--model-dir <dir>', 'folder with the models as on the hub: depth-anything-v2-small/, slimsam-77-uniform/ (default: fetched from the hub once into ~/.cache/instructify/models)')
    .option('--depth-model <dir>', 'the depth model folder (config.json, preprocessor_config.json, onnx/model.onnx)')
    .option('--sam-model <dir>', 'the SAM model folder (onnx/vision_encoder.onnx, onnx/prompt_encoder_mask_decoder.onnx)')
    .addOption(new Option('--device <device>', 'where the models run').choices(['cpu', 'cuda']).default('cpu'))
    .option('--keep-maps', 'keep the depth maps (16-bit PNG, as --depth-dir reads them) and OCR words (JSON) under <out>/maps')
    .option('--ocr-min-confidence <n>', 'OCR words below this confidence (0-100) are dropped', parseNonNegative, 60)
    .option('--shard <K/N|N>', 'process only shard K of N (N alone: K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)', (v: string) => parseShard(v))
    .option('-q, --quiet', 'no progress and no summary')
    .action(async (opts) => {
      const bar = !opts.quiet && process.stderr.isTTY === true
        ? new cliProgress.SingleBar({ stream: process.stderr, hideCursor: true, clearOnComplete: true, format: 'enriching {bar} {percentage}% | {value}/{total} images | {rate} images/s | ETA {eta_formatted}' }, cliProgress.Presets.shades_classic)
        : null;
      const t0 = Date.now();
      let started = false;
      const stop = stopOnSignals('stopping after this image');
      try {
        const r = await enrich({
          input: opts.in,
          out: opts.out,
          depth: opts.depth ?? false,
          masks: opts.masks ?? false,
          ocr: opts.ocr ?? false,
          images: opts.images ?? null,
          modelDir: opts.modelDir ?? null,
          depthModel: opts.depthModel ?? null,
          samModel: opts.samModel ?? null,
          device: opts.device,
          keepMaps: opts.keepMaps ?? false,
          ocrMinConfidence: opts.ocrMinConfidence,
          shard: opts.shard ?? null,
          signal: stop.signal,
          warn: (m) => process.stderr.write(`instructify: ${m}\n`),
          onProgress: (p) => {
            if (!bar) return;
            if (!started) bar.start(Math.max(1, p.total), 0, { rate: '-' });
            started = true;
            bar.update(p.done, { rate: (p.done / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(1) });
          },
        });
        bar?.stop();
        if (!opts.quiet) {
          const rates = Object.entries(r.rates).map(([k, v]) => `${k} ${v} images/s`).join(', ');
          process.stderr.write(`enriched ${r.images} images in ${r.seconds}s -> ${opts.out}\n  masks added ${r.masksAdded} (dataset masks kept ${r.masksKept}), depth maps ${r.depthMaps}, OCR words ${r.ocrWords}\n  ${rates}\n`);
        }
      } finally {
        bar?.stop();
        stop.dispose();
      }
    });
}
