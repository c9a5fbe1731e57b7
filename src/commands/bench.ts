import type { Command } from 'commander';
import { InstructifyError } from '../errors.js';
import { benchStages, formatStageBench } from '../throughput/stages.js';
import { benchLlm, formatLlmBench } from '../throughput/llm.js';
import { parseNonNegative, parsePositiveInt, parseSize, repeated } from './options.js';
import { quietOnClosedPipe } from './terminal.js';

/** `instructify bench`: throughput of the local stages or of an LLM server. */
export function addBenchCommand(program: Command): void {
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
}
