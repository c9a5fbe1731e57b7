import path from 'node:path';
import { Option, type Command } from 'commander';
import { EXPORT_FORMATS, exportConversations } from '../export/export.js';
import { parsePositiveInt } from './options.js';

/** `instructify export`: conversations in the format a trainer reads. */
export function addExportCommand(program: Command): void {
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
}
