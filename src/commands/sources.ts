import type { Command } from 'commander';
import { SOURCE_KINDS } from '../sources/index.js';
import { quietOnClosedPipe } from './terminal.js';

/** `instructify sources`: the loaders and the files each expects. */
export function addSourcesCommand(program: Command): void {
  program
    .command('sources')
    .description('List the source loaders and the files each expects.')
    .action(() => {
      quietOnClosedPipe();
      for (const k of SOURCE_KINDS.values()) process.stdout.write(`${k.kind.padEnd(22)} ${k.expects}\n`);
    });
}
