/**
 * Peak resident set size while a piece of work runs, sampled every few
 * milliseconds. `process.resourceUsage().maxRSS` only ever grows over the
 * life of the process, so it cannot tell one stage from the one before.
 */
export class PeakMemory {
  private readonly start = process.memoryUsage.rss();
  private peak = this.start;
  private readonly timer: NodeJS.Timeout;

  private static current: PeakMemory | null = null;

  /** For work that runs without yielding (timers cannot fire): sample the current measurement now. */
  static sampleNow(): void {
    PeakMemory.current?.sample();
  }

  constructor(intervalMs = 5) {
    PeakMemory.current = this;
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Also called by loops that never yield to the event loop, so their peak is seen too. */
  sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.peak) this.peak = rss;
  }

  stop(): { peakRssMB: number; rssGrowthMB: number } {
    clearInterval(this.timer);
    if (PeakMemory.current === this) PeakMemory.current = null;
    this.sample();
    return { peakRssMB: this.peak / 2 ** 20, rssGrowthMB: (this.peak - this.start) / 2 ** 20 };
  }
}
