import { InstructifyError } from '../errors.js';
import { hashRef } from '../join/join.js';

/**
 * Splitting one job over N processes: image i belongs to shard
 * hash(identity) mod N, the same on every machine and in every run, so N
 * processes cover every image exactly once. K comes from `--shard K/N`, or,
 * with `--shard N`, from the scheduler: a Kubernetes Indexed Job's
 * JOB_COMPLETION_INDEX or a Slurm array's SLURM_ARRAY_TASK_ID.
 */
export interface Shard {
  k: number;
  n: number;
}

export function parseShard(v: string, env: NodeJS.ProcessEnv = process.env): Shard {
  const m = /^(?:(\d+)\/)?(\d+)$/.exec(v.trim());
  if (!m) throw new InstructifyError('E_OPTION', `--shard takes K/N (this is shard K of N, from 0) or N (K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID), not "${v}"`);
  const n = Number(m[2]);
  let k: number;
  if (m[1] !== undefined) k = Number(m[1]);
  else {
    const fromEnv = env.JOB_COMPLETION_INDEX ?? env.SLURM_ARRAY_TASK_ID;
    if (fromEnv === undefined) throw new InstructifyError('E_OPTION', `--shard ${v} needs the shard index: give K/N, or run as a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a Slurm array (SLURM_ARRAY_TASK_ID)`);
    k = Number(fromEnv);
  }
  if (!(Number.isInteger(n) && n >= 1 && Number.isInteger(k) && k >= 0 && k < n)) throw new InstructifyError('E_OPTION', `shard ${k} of ${n} is not possible: K must be from 0 to N-1`);
  return { k, n };
}

/** Whether an image (by its joined identity, e.g. `coco:397133`) is this shard's. */
export function inShard(ref: string, s: Shard | null): boolean {
  return s === null || s.n === 1 || hashRef(`shard\u0000${ref}`) % s.n === s.k;
}

/** The part of shard file names that says which shard wrote them. */
export function shardTag(s: Shard | null): string {
  return s === null ? '' : `s${s.k}of${s.n}-`;
}
