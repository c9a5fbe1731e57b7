import type { Command } from 'commander';
import { report } from '../inspect/report.js';
import { parsePositiveInt, repeated } from './options.js';

/** `instructify report`: a page to look at the data before training on it. */
export function addReportCommand(program: Command): void {
  program
    .command('report')
    .description('Write a static HTML page (opens from file://, no server) of sampled images with their boxes drawn, trees, information and conversations, under a summary of the run.')
    .requiredOption('--in <dir>', 'a prepare or generate output folder')
    .requiredOption('-o, --out <dir>', 'folder for index.html and its thumbnails')
    .option('-n, --count <n>', 'images to show', parsePositiveInt, 50)
    .option('--seed <n>', 'which images: the same seed shows the same ones', parsePositiveInt, 1)
    .option('--images <dir>', 'image root (default: the one the prepare manifest names)')
    .option('--image <name>', 'show this image (its path in the records; repeatable)', repeated, [] as string[])
    .option('--prompt-type <type>', 'only images with a conversation of this prompt type (generate folders)')
    .option('--rejected', 'only images with something set aside: rejects, or turns the checks took out')
    .option('--thumb-width <px>', 'thumbnail width', parsePositiveInt, 480)
    .option('-q, --quiet', 'print nothing')
    .action(async (opts) => {
      const r = await report({
        input: opts.in,
        out: opts.out,
        count: opts.count,
        seed: opts.seed,
        images: opts.images ?? null,
        pickImages: opts.image,
        promptType: opts.promptType,
        rejected: opts.rejected ?? false,
        thumbWidth: opts.thumbWidth,
      });
      if (!opts.quiet) {
        const missing = r.missingImages ? ` (${r.missingImages} without a picture: see their cards)` : '';
        process.stdout.write(`report: ${r.cards} of ${r.eligible} images${missing} -> ${r.index}\n`);
      }
    });
}
