import { existsSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstructifyError, ioError } from '../errors.js';

/**
 * Output folders have an owner. A command writes only into a folder that is
 * missing or empty, or that its own earlier run made (its manifest says
 * so): never into another command's output, a folder of the user's own
 * files, its own input, or a folder inside or around its input. Everything
 * is decided before anything is written, so a refused command leaves every
 * folder byte for byte as it was.
 *
 * A lock file names the run that holds the folder: a second run into the
 * same folder is refused while the first lives, and a lock left by a run
 * that died (kill -9, a crash) is taken over, with a word about it.
 */
export type OwningCommand = 'prepare' | 'generate' | 'export' | 'report';

export const LOCK_FILE = '.instructify.lock';

/** The manifest each command writes into its folder. */
export const MANIFEST_OF: Record<OwningCommand, string> = { prepare: 'manifest.json', generate: 'manifest.json', export: 'export-manifest.json', report: 'report-manifest.json' };

/** The files (top level) each command makes in its folder, besides its manifest and the lock. */
const OWNS: Record<OwningCommand, (name: string) => boolean> = {
  // maps/: an enriched prepared folder's depth maps and OCR words (enrich --keep-maps).
  prepare: (n) => /^part-[\w-]+\.(parquet|jsonl|arrow)(\.tmp)?$/.test(n) || n === 'rejects.jsonl' || n === 'manifest.json.tmp' || n === 'maps',
  generate: (n) => /^part-[\w-]+\.(parquet|jsonl)(\.tmp)?$/.test(n) || n === 'rejects.jsonl' || n === 'turns-rejected.jsonl' || /^cache\.sqlite(-wal|-shm|-journal)?$/.test(n) || n === 'manifest.json.tmp',
  export: (n) =>
    /^(llava\.json|llava\.jsonl|sharegpt\.json|internvl\.jsonl)(\.tmp)?$/.test(n) ||
    ['dataset_info.json', 'internvl_meta.json', 'export-rejects.jsonl', 'data', 'export-manifest.json.tmp'].includes(n),
  report: (n) => ['index.html', 'index.html.tmp', 'thumbs', 'report-manifest.json.tmp'].includes(n),
};

export interface ClaimOptions {
  out: string;
  command: OwningCommand;
  /** What the command reads (folders or files): the output may not be one of them, nor inside a folder of them or around any. */
  inputs: string[];
  /** Folders it reads files from by name (the image root): the output may be inside one, but not be it or hold it. */
  roots?: string[];
  /** Said to the user: a stale lock taken over, leftovers of a dead run removed. */
  warn?: (message: string) => void;
}

export interface LockInfo {
  pid: number;
  host: string;
  command: string;
  started: string;
}

export interface ClaimedOutput {
  out: string;
  /** The manifest an earlier run of the same command left, or null. */
  previous: Record<string, unknown> | null;
  /** Give the folder back (the lock goes). Synchronous, so it can run on the way out of a second Ctrl-C. */
  release: () => void;
  /**
   * For a hard stop (a second Ctrl-C): remove unfinished `.tmp` files, mark a
   * manifest still saying "running" as "interrupted", and release the lock.
   */
  stopNow: () => void;
}

const refuse = (out: string, message: string) => new InstructifyError('E_OUTPUT', message, { file: out });

/** `a` is `b`, or inside it. */
function within(a: string, b: string): boolean {
  const rel = path.relative(b, a);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The real path of `p`, or of its nearest existing parent with the rest appended (a folder not made yet). */
async function realish(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(await realish(parent), path.basename(abs));
  }
}

function listSome(names: string[], max = 5): string {
  return names.length > max ? `${names.slice(0, max).join(', ')} and ${names.length - max} more` : names.join(', ');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, it is just not ours to signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(file: string): LockInfo | null {
  try {
    const l = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockInfo>;
    return typeof l.pid === 'number' ? { pid: l.pid, host: String(l.host ?? ''), command: String(l.command ?? ''), started: String(l.started ?? '') } : null;
  } catch {
    return null;
  }
}

/**
 * Decide whether `command` may write into `out`, then take the folder:
 * make it if missing, lock it, and clear what a dead run left half-written.
 * Refusals are `E_OUTPUT` (exit 2) naming the folder and what is in it.
 */
export async function claimOutput(o: ClaimOptions): Promise<ClaimedOutput> {
  const out = path.resolve(o.out);
  const warn = o.warn ?? ((m: string) => process.stderr.write(`instructify: ${m}\n`));
  const realOut = await realish(out);
  for (const input of o.inputs) {
    if (input === '-') continue;
    const realIn = await realish(input);
    const isFolder = await stat(realIn).then((s) => s.isDirectory(), () => false);
    if (realIn === realOut) throw refuse(o.out, `is this command's own input: choose another --out`);
    if (within(realIn, realOut)) throw refuse(o.out, `holds this command's input ${input}: choose a folder that does not contain it`);
    if (isFolder && within(realOut, realIn)) throw refuse(o.out, `is inside this command's input folder ${input}: choose a folder outside it`);
  }
  for (const root of o.roots ?? []) {
    const realRoot = await realish(root);
    if (within(realRoot, realOut)) throw refuse(o.out, `${realRoot === realOut ? 'is' : 'holds'} the image root ${root}: choose another folder`);
  }
  const st = await stat(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw ioError(err, out, 'look at the output folder');
  });
  if (st && !st.isDirectory()) throw refuse(o.out, 'is a file, not a folder: give a folder (it is made if missing)');
  if (!st) await mkdir(out, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw ioError(err, out, 'make the output folder');
  });
  const names = (await readdir(out).catch((err: NodeJS.ErrnoException) => {
    throw ioError(err, out, 'list the output folder');
  })).filter((n) => n !== LOCK_FILE);
  const manifestName = MANIFEST_OF[o.command];
  let previous: Record<string, unknown> | null = null;
  // Any command's manifest says whose folder this is.
  for (const m of new Set(Object.values(MANIFEST_OF))) {
    if (!names.includes(m)) continue;
    let parsed: Record<string, unknown> | null = null;
    try {
      parsed = JSON.parse(await readFile(path.join(out, m), 'utf8')) as Record<string, unknown>;
    } catch {
      parsed = null;
    }
    if (!parsed || parsed.tool !== 'instructify') throw refuse(o.out, `holds a ${m} that instructify did not write: choose an empty or new folder`);
    if (parsed.command !== o.command || m !== manifestName) {
      throw refuse(o.out, `holds the output of \`instructify ${String(parsed.command)}\` (its ${m} says so), which ${o.command} would replace: choose another folder`);
    }
    previous = parsed;
  }
  const owns = OWNS[o.command];
  const foreign = names.filter((n) => n !== manifestName && (previous === null ? !(n.endsWith('.tmp') && owns(n)) : !owns(n)));
  if (foreign.length) {
    const what = previous === null ? 'holds files instructify did not make' : `holds files ${o.command} does not make`;
    throw refuse(o.out, `${what} (${listSome(foreign.sort())}): choose an empty or new folder`);
  }

  // The folder is ours to write: take the lock.
  const lockFile = path.join(out, LOCK_FILE);
  const me: LockInfo = { pid: process.pid, host: os.hostname(), command: o.command, started: new Date().toISOString() };
  const held = readLock(lockFile);
  if (held && held.pid !== process.pid) {
    if (held.host === me.host && alive(held.pid)) {
      throw refuse(o.out, `is in use by instructify ${held.command} (pid ${held.pid}, started ${held.started}): wait for it to finish, or write elsewhere`);
    }
    if (held.host !== me.host) {
      throw refuse(o.out, `is locked by instructify ${held.command} on ${held.host} (pid ${held.pid}, started ${held.started}); if that run is gone, remove ${lockFile}`);
    }
    warn(`${o.out}: took over the lock of instructify ${held.command} (pid ${held.pid}, started ${held.started}), which is no longer running`);
  }
  try {
    writeFileSync(lockFile, JSON.stringify(me) + '\n');
  } catch (err) {
    throw ioError(err as NodeJS.ErrnoException, lockFile, 'lock the output folder');
  }
  // What a run that died (kill -9, power cut) left: half-written files, a manifest still saying "running".
  const leftovers = names.filter((n) => n.endsWith('.tmp'));
  if (leftovers.length) {
    await Promise.all(leftovers.map((n) => rm(path.join(out, n), { force: true })));
    warn(`${o.out}: removed what an earlier run left unfinished: ${listSome(leftovers.sort())}`);
  }
  if (previous?.status === 'running' && !held) warn(`${o.out}: the earlier run did not finish (its manifest still said "running"); starting over`);
  const release = () => {
    const l = readLock(lockFile);
    if (l?.pid === process.pid) {
      try {
        unlinkSync(lockFile);
      } catch {
        // Already gone.
      }
    }
  };
  const stopNow = () => {
    try {
      for (const n of readdirSync(out)) if (n.endsWith('.tmp')) rmSync(path.join(out, n), { force: true });
      const file = path.join(out, manifestName);
      if (existsSync(file)) {
        const m = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
        if (m.status === 'running') {
          writeFileSync(`${file}.tmp`, JSON.stringify({ ...m, status: 'interrupted', finished: new Date().toISOString(), error: { code: 'E_INTERRUPTED', message: 'stopped at once by a second signal' } }, null, 2) + '\n');
          renameSync(`${file}.tmp`, file);
        }
      }
    } finally {
      release();
    }
  };
  return { out, previous, release, stopNow };
}
