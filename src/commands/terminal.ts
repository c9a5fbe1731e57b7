/** What the commands share at the terminal: signals and closed pipes. */
import { runHardStop } from '../write/hard-stop.js';

/**
 * The first Ctrl-C (or SIGTERM) asks the command to stop cleanly through
 * the returned signal; a second one exits at once, with 130 as shells do.
 */
export function stopOnSignals(what: string): { signal: AbortSignal; dispose: () => void } {
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
export function quietOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}
