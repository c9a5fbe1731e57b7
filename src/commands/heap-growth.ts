import v8 from 'node:v8';
import { InstructifyError } from '../errors.js';

/**
 * How far V8 lets a heap grow past what was live at its last full
 * collection, in percent. V8 picks this itself, up to 4x, and picks high
 * when its collector keeps up easily, as it does for prepare: a run makes
 * garbage fast but keeps little alive, so most of its peak memory was
 * garbage not yet collected. At 100 (the heap may double) a 300 MB prepare
 * peaked at 288-312 MB instead of 376-430 MB, at the same speed within the
 * noise of three runs each (bench/RESULTS.md, fifth session). But at 600 MB
 * 100 still peaked at 345-361 MB, over the 350 MB the project holds
 * prepare to; 75 gave 324-335 MB for 4-8% more time (sixth session).
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 75;

/** A heap growth this project accepts: whole percents from 0 (V8's own choice) to 1000. */
export function isHeapGrowthPercent(percent: number): boolean {
  return Number.isInteger(percent) && percent >= 0 && percent <= 1000;
}

/**
 * Set the heap growth for this process (0: leave it to V8). A V8 setting,
 * so it holds for every thread of the process, those started before too;
 * the CLI sets it, the library functions never do.
 */
export function setHeapGrowth(percent: number): void {
  if (!isHeapGrowthPercent(percent)) {
    throw new InstructifyError('E_OPTION', `heap growth must be a whole number of percent from 0 to 1000, got ${percent}`);
  }
  // V8 reads this flag each time it sizes the heap after a collection, so setting it now takes effect.
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}
