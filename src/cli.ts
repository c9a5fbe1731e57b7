import { Command, CommanderError } from 'commander';
import { InstructifyError, ioRemedy } from './errors.js';
import { VERSION } from './version.js';
import { addPrepareCommand } from './commands/prepare.js';
import { addGenerateCommand } from './commands/generate.js';
import { addRunCommand } from './commands/run.js';
import { addExportCommand } from './commands/export.js';
import { addPreviewCommand, addStatsCommand, addVerifyCommand } from './commands/inspect.js';
import { addDemoCommand } from './commands/demo.js';
import { addReportCommand } from './commands/report.js';
import { addEnrichCommand } from './commands/enrich.js';
import { addBenchCommand } from './commands/bench.js';
import { addSourcesCommand } from './commands/sources.js';

/** The commands, in the order `--help` lists them; each file in commands/ holds one's options beside its handler. */
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
  addPrepareCommand(program);
  addEnrichCommand(program);
  addGenerateCommand(program);
  addRunCommand(program);
  addExportCommand(program);
  addVerifyCommand(program);
  addStatsCommand(program);
  addPreviewCommand(program);
  addReportCommand(program);
  addDemoCommand(program);
  addBenchCommand(program);
  addSourcesCommand(program);
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
