/** The commands that look at output folders: verify, stats, preview. */
import type { Command } from 'commander';
import { folderStats, formatStats, preview } from '../inspect/inspect.js';
import { formatVerify, verify } from '../inspect/verify.js';
import { parsePositiveInt, repeated } from './options.js';
import { quietOnClosedPipe } from './terminal.js';

/** `instructify verify`: are these folders complete and consistent? */
export function addVerifyCommand(program: Command): void {
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
}

/** `instructify stats`: what a folder holds. */
export function addStatsCommand(program: Command): void {
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
}

/** `instructify preview`: the prompts a few images would get. */
export function addPreviewCommand(program: Command): void {
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
}
