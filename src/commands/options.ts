/** Parsers for the option values the commands share; each throws commander's InvalidArgumentError with the fix. */
import { InvalidArgumentError } from 'commander';
import bytes from 'bytes';
import { isHeapGrowthPercent } from './heap-growth.js';
import { SOURCE_KINDS } from '../sources/index.js';
import type { SourceSpec } from '../prepare/prepare.js';

/** For options given several times (`--llm-url A --llm-url B`): every value, in order. */
export function repeated(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function parseSize(v: string): number {
  const n = bytes.parse(v);
  if (n === null || !(n > 0)) throw new InvalidArgumentError(`"${v}" is not a size (try 256MB or 1GB)`);
  return n;
}

export function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`"${v}" is not a positive whole number`);
  return n;
}

export function parseWorkers(v: string): number | 'auto' {
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new InvalidArgumentError(`"${v}" is not a number of workers (0 to 64, or auto)`);
  return n;
}

export const HEAP_GROWTH_HELP = 'how far (percent) the JavaScript heap may grow past live memory before it is collected; lower uses less memory, 0 leaves it to V8 (up to 4x: more memory, sometimes faster)';

export function parseHeapGrowth(v: string): number {
  const n = Number(v);
  if (!isHeapGrowthPercent(n)) throw new InvalidArgumentError(`"${v}" is not a heap growth in whole percent (0 to 1000)`);
  return n;
}

export function parseNonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`"${v}" is not a non-negative number`);
  return n;
}

/** `KIND=PATH[,PATH...]`, collected over repeats. */
export function collectSource(v: string, prev: SourceSpec[]): SourceSpec[] {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${v}" should be KIND=PATH[,PATH...], e.g. coco-captions=annotations/captions_val2017.json`);
  const kind = v.slice(0, eq);
  if (!SOURCE_KINDS.has(kind)) throw new InvalidArgumentError(`unknown source kind "${kind}"; known: ${[...SOURCE_KINDS.keys()].join(', ')}`);
  const paths = v.slice(eq + 1).split(',').filter(Boolean);
  if (!paths.length) throw new InvalidArgumentError(`source ${kind} names no files`);
  return [...prev, { kind, paths }];
}

/** `FAMILY=DIR`, collected over repeats. */
export function collectImageDir(v: string, prev: Record<string, string>): Record<string, string> {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${v}" should be FAMILY=DIR, e.g. coco=val2017`);
  return { ...prev, [v.slice(0, eq)]: v.slice(eq + 1) };
}
