/**
 * What must happen even when the process is stopped at once (a second
 * Ctrl-C): the output folder left consistent, with no half-written file and
 * a manifest that says "interrupted". Commands register synchronous
 * cleanups here while they hold a folder; the CLI runs them before exiting.
 */
const cleanups = new Set<() => void>();

export function onHardStop(fn: () => void): () => void {
  cleanups.add(fn);
  return () => void cleanups.delete(fn);
}

export function runHardStop(): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      // Exiting anyway: one cleanup's failure must not keep the others from running.
    }
  }
  cleanups.clear();
}
