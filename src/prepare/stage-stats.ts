/**
 * Every stage counts what it saw, what it passed on and what it dropped, by
 * reason, and how long it was busy. Summaries and manifests are built from
 * these.
 */
export class StageStats {
  seen = 0;
  passed = 0;
  dropped: Record<string, number> = {};
  busyMs = 0;
  constructor(readonly name: string) {}

  drop(reason: string, n = 1): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + n;
  }

  toJSON(): { seen: number; passed: number; dropped: Record<string, number>; seconds: number } {
    return { seen: this.seen, passed: this.passed, dropped: this.dropped, seconds: Math.round(this.busyMs) / 1000 };
  }
}
