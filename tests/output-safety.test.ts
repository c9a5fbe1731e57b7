import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';
import { writeSyntheticCoco } from '../src/sources/synthetic.js';
import { COCO_CAPTIONS, COCO_INSTANCES, ROOT, tmpDir } from './helpers.js';

/**
 * Never lose a user's work: every mistake below runs the real CLI in a
 * child process, and every file of every folder involved is compared by
 * checksum before and after.
 */
const BIN = path.join(ROOT, 'bin', 'instructify');

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(BIN, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The CLI in a child process, without blocking this one: the loopback LLM
 * servers run in this process and must keep answering.
 */
async function cliAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** Every file under each folder (relative path -> sha256), or 'missing' for a folder that is not there. */
function snapshot(...dirs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (root: string, dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(root, p);
      else out[`${root}:${path.relative(root, p)}`] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  for (const d of dirs) {
    if (!existsSync(d)) out[d] = 'missing';
    else if (statSync(d).isDirectory()) walk(d, d);
    else out[d] = createHash('sha256').update(readFileSync(d)).digest('hex');
  }
  return out;
}

const SOURCES = ['--source', `coco-captions=${COCO_CAPTIONS}`, '--source', `coco-instances=${COCO_INSTANCES}`];

let work: string;
let prep: string;
let otherPrep: string;
let gen: string;
let server: LoopbackLlmServer;
let slow: LoopbackLlmServer;

beforeAll(async () => {
  work = await tmpDir();
  prep = path.join(work, 'prep');
  otherPrep = path.join(work, 'other-prep');
  gen = path.join(work, 'gen');
  expect(cli(['prepare', ...SOURCES, '--out', prep, '-q']).code).toBe(0);
  expect(cli(['prepare', '--source', `coco-instances=${COCO_INSTANCES}`, '--out', otherPrep, '-q']).code).toBe(0);
  expect(cli(['generate', '--in', prep, '--out', gen, '-q']).code).toBe(0);
  server = new LoopbackLlmServer({ record: false, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
  await server.start();
  // Slow enough that a run is still going when a test acts on it.
  slow = new LoopbackLlmServer({ record: false, latencyMs: 150, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
  await slow.start();
});

afterAll(async () => {
  await server.stop();
  await slow.stop();
});

/** The mistake is refused with its code and exit code 2, and nothing changed anywhere. */
async function expectRefused(args: string[], folders: string[], message: RegExp) {
  const before = snapshot(...folders);
  const r = await cliAsync(args);
  expect(r.stderr).toMatch(message);
  expect(r.code).toBe(2);
  expect(snapshot(...folders)).toEqual(before);
  return r;
}

describe('output folders have an owner', () => {
  it("another command's output, the command's own input, and folders inside or around it are refused, byte for byte untouched", async () => {
    const all = [work];
    await expectRefused(['generate', '--in', prep, '--out', otherPrep], all, /^instructify: E_OUTPUT: .*other-prep: holds the output of `instructify prepare`/);
    await expectRefused(['generate', '--in', prep, '--out', prep], all, /E_OUTPUT: .*prep: is this command's own input/);
    await expectRefused(['generate', '--in', prep, '--out', path.join(prep, 'sub')], all, /E_OUTPUT: .*is inside this command's input folder/);
    await expectRefused(['generate', '--in', prep, '--out', work], all, /E_OUTPUT: .*holds this command's input/);
    await expectRefused(['prepare', ...SOURCES, '--out', gen], all, /E_OUTPUT: .*gen: holds the output of `instructify generate`/);
    await expectRefused(['export', '--in', gen, '--out', prep, '--format', 'llava'], all, /E_OUTPUT: .*prep: holds the output of `instructify prepare`/);
    await expectRefused(['export', '--in', gen, '--out', gen, '--format', 'llava'], all, /E_OUTPUT: .*gen: is this command's own input/);
    expect(existsSync(path.join(prep, 'sub'))).toBe(false);
  });

  it("a folder holding the user's own files (their own manifest.json or llava.json included) and a file as --out are refused", async () => {
    const mine = await tmpDir();
    writeFileSync(path.join(mine, 'manifest.json'), '{"my": "own manifest"}\n');
    const notes = await tmpDir();
    writeFileSync(path.join(notes, 'notes.txt'), 'my notes\n');
    const llava = await tmpDir();
    writeFileSync(path.join(llava, 'llava.json'), '[]\n');
    const file = path.join(await tmpDir(), 'afile.txt');
    writeFileSync(file, 'not a folder\n');
    const folders = [mine, notes, llava, file, gen];
    await expectRefused(['prepare', ...SOURCES, '--out', mine], folders, /E_OUTPUT: .*: holds a manifest\.json that instructify did not write/);
    await expectRefused(['generate', '--in', prep, '--out', notes], folders, /E_OUTPUT: .*: holds files instructify did not make \(notes\.txt\)/);
    await expectRefused(['export', '--in', gen, '--out', llava, '--format', 'llava'], folders, /E_OUTPUT: .*: holds files instructify did not make \(llava\.json\)/);
    await expectRefused(['prepare', ...SOURCES, '--out', file], folders, /E_OUTPUT: .*afile\.txt: is a file, not a folder/);
    // A file the user added to a generate folder is theirs too.
    const added = await tmpDir();
    expect(cli(['generate', '--in', prep, '--out', added, '-q']).code).toBe(0);
    writeFileSync(path.join(added, 'todo.md'), 'look at these\n');
    await expectRefused(['generate', '--in', prep, '--out', added, '-q'], [added], /E_OUTPUT: .*holds files generate does not make \(todo\.md\)/);
  });

  it('the same command into its own folder reruns; other settings are refused naming each setting that changed', async () => {
    const out = path.join(await tmpDir(), 'llm');
    const args = ['generate', '--in', prep, '--out', out, '--llm-url', server.url, '--model', 'fake', '--distribution', 'llava', '-q'];
    expect((await cliAsync(args)).code).toBe(0);
    expect((await cliAsync(args)).code).toBe(0);
    const r = await expectRefused([...args, '--temperature', '0.7', '--seed', '5'], [out, prep], /E_OPTION: .*llm: holds a complete run made with other settings \(sampling\.temperature: 0\.2 -> 0\.7; sampling\.seed: null -> 5; loop\.seed: 0 -> 5\): use another --out, the same settings, or --force to replace it/);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect((await cliAsync([...args, '--temperature', '0.7', '--seed', '5', '--force'])).code).toBe(0);
  });
});

/** Start the CLI in the background; resolves once `ready(dir)` holds. */
async function startCli(args: string[], ready: () => boolean): Promise<ChildProcess & { output: () => string; exited: Promise<[number | null]> }> {
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Listened for at once: a child may exit between two awaits of the caller.
  const exited = once(child, 'exit') as Promise<[number | null]>;
  let text = '';
  child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  const t0 = Date.now();
  while (!ready()) {
    if (child.exitCode !== null) throw new Error(`exited early (${child.exitCode}): ${text}`);
    if (Date.now() - t0 > 30_000) throw new Error(`not ready after 30 s: ${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Object.assign(child, { output: () => text, exited });
}

const lockOf = (dir: string) => path.join(dir, '.instructify.lock');
const tmpFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.tmp'));
const manifestOf = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { status: string; counts?: { images: number } };

/** Stopped by a signal: exit 130, the manifest says so, no half-written file and no lock are left. */
async function expectInterrupted(child: { exited: Promise<[number | null]> }, out: string): Promise<void> {
  const [code] = await child.exited;
  expect(code).toBe(130);
  expect(manifestOf(out).status).toBe('interrupted');
  expect(tmpFiles(out)).toEqual([]);
  expect(existsSync(lockOf(out))).toBe(false);
}

describe('one run per folder, and interrupted means interrupted', () => {
  it('a second run into a folder in use is refused with the first run\'s pid; after two Ctrl-C the first leaves "interrupted", no .tmp and no lock', async () => {
    const out = path.join(await tmpDir(), 'gen');
    const args = ['generate', '--in', prep, '--out', out, '--llm-url', slow.url, '--model', 'fake', '--format', 'jsonl', '-q'];
    const first = await startCli(args, () => existsSync(lockOf(out)) && existsSync(path.join(out, 'manifest.json')));
    const lock = JSON.parse(readFileSync(lockOf(out), 'utf8')) as { pid: number; started: string };
    expect(lock.pid).toBe(first.pid);
    const second = await cliAsync(args);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`E_OUTPUT: ${out}: is in use by instructify generate (pid ${first.pid}, started ${lock.started})`);
    first.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 50));
    first.kill('SIGINT');
    await expectInterrupted(first, out);
  });

  it.each([
    ['one SIGINT', ['SIGINT']],
    ['one SIGTERM', ['SIGTERM']],
    ['three SIGINT', ['SIGINT', 'SIGINT', 'SIGINT']],
  ] as const)('generate after %s: exit 130, manifest "interrupted", no .tmp, no lock', async (_, signals) => {
    const out = path.join(await tmpDir(), 'gen');
    const child = await startCli(['generate', '--in', prep, '--out', out, '--llm-url', slow.url, '--model', 'fake', '--format', 'jsonl', '-q'], () =>
      existsSync(out) && readdirSync(out).some((n) => n.endsWith('.jsonl.tmp')),
    );
    for (const s of signals) {
      child.kill(s);
      await new Promise((r) => setTimeout(r, 30));
    }
    await expectInterrupted(child, out);
  });

  it('prepare after two Ctrl-C while it writes: exit 130, manifest "interrupted", no .tmp, no lock', async () => {
    const dir = await tmpDir();
    const instances = path.join(dir, 'instances.json');
    await writeSyntheticCoco({ instancesFile: instances, count: 20_000, seed: 3 });
    const out = path.join(dir, 'prepared');
    const child = await startCli(['prepare', '--source', `coco-instances=${instances}`, '--out', out, '--workers', '0', '--rows-per-shard', '500', '-q'], () =>
      existsSync(out) && readdirSync(out).some((n) => n.endsWith('.tmp') && n.startsWith('part-')),
    );
    child.kill('SIGINT');
    child.kill('SIGINT');
    await expectInterrupted(child, out);
  });

  it('after kill -9 the next run takes over the lock, removes the half-written files, says what it removed, and completes', async () => {
    const out = path.join(await tmpDir(), 'gen');
    const args = ['generate', '--in', prep, '--out', out, '--llm-url', slow.url, '--model', 'fake', '--format', 'jsonl', '-q'];
    const child = await startCli(args, () => existsSync(out) && readdirSync(out).some((n) => n.endsWith('.jsonl.tmp')));
    const left = tmpFiles(out);
    child.kill('SIGKILL');
    await child.exited;
    expect(existsSync(lockOf(out))).toBe(true);
    expect(manifestOf(out).status).toBe('running');
    const r = await cliAsync(args.map((a) => (a === slow.url ? server.url : a)));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`took over the lock of instructify generate (pid ${child.pid}`);
    expect(r.stderr).toContain(`removed what an earlier run left unfinished: ${left.join(', ')}`);
    expect(manifestOf(out).status).toBe('complete');
    expect(tmpFiles(out)).toEqual([]);
    expect(existsSync(lockOf(out))).toBe(false);
  });
});

describe('exit codes scripts can trust', () => {
  it('prepare that sets every record aside exits 3 (E_EMPTY); generate on an empty prepared folder exits 3 and makes nothing', async () => {
    const dir = await tmpDir();
    const noImages = path.join(dir, 'no-images');
    mkdirSync(noImages);
    const empty = path.join(dir, 'empty');
    const r = cli(['prepare', ...SOURCES, '--images', noImages, '--out', empty]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/instructify: E_EMPTY: no record was prepared: all 79 were set aside \(missing-image\); see .*rejects\.jsonl/);
    expect(manifestOf(empty)).toMatchObject({ status: 'complete', counts: { images: 0 } });
    const out = path.join(dir, 'gen');
    const g = cli(['generate', '--in', empty, '--out', out]);
    expect(g.code).toBe(3);
    expect(g.stderr).toMatch(/E_EMPTY: .*empty: the prepared folder holds no record/);
    // Nothing was started: no folder, so no failed manifest.
    expect(existsSync(out)).toBe(false);
  });

  it('a folder given as a file, a pickle, a gzip and a zip file name the path and the fix; nothing is written', async () => {
    const dir = await tmpDir();
    const pickle = path.join(dir, 'refs(umd).p');
    writeFileSync(pickle, Buffer.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x2e]));
    const gz = path.join(dir, 'instances.json.gz');
    writeFileSync(gz, Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0]));
    const zip = path.join(dir, 'annotations.zip');
    writeFileSync(zip, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0]));
    const out = path.join(dir, 'out');
    const folder = cli(['prepare', '--source', `coco-instances=${path.dirname(COCO_INSTANCES)}`, '--out', out]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toBe(`instructify: E_OPTION: ${path.dirname(COCO_INSTANCES)}: source coco-instances: this is a folder; give the annotation file inside it\n`);
    const p = cli(['prepare', '--source', `refcoco=${pickle}`, '--out', out]);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain(`E_FILE_FORMAT: ${pickle}: source refcoco: this is a Python pickle, not an annotation file; convert it to JSON first: python3 -c "import pickle, json, sys;`);
    expect(p.stderr).toContain(`'${path.join(dir, 'refs(umd).json')}'`);
    expect(cli(['prepare', '--source', `coco-instances=${gz}`, '--out', out]).stderr).toContain('this is a gzip file, not an annotation file; unpack it first');
    expect(cli(['prepare', '--source', `coco-instances=${zip}`, '--out', out]).stderr).toContain('this is a zip archive, not an annotation file; unpack it first');
    expect(existsSync(out)).toBe(false);
  });

  it('export of an interrupted generate folder warns, and --strict refuses it without writing', async () => {
    const out = path.join(await tmpDir(), 'gen');
    const child = await startCli(['generate', '--in', prep, '--out', out, '--llm-url', slow.url, '--model', 'fake', '--format', 'jsonl', '-q'], () =>
      existsSync(out) && readdirSync(out).some((n) => /^part-.*\.jsonl(\.tmp)?$/.test(n)),
    );
    child.kill('SIGINT');
    await child.exited;
    expect(manifestOf(out).status).toBe('interrupted');
    const exp = path.join(path.dirname(out), 'export');
    const strict = cli(['export', '--in', out, '--out', exp, '--format', 'llava', '--strict']);
    expect(strict.code).toBe(2);
    expect(strict.stderr).toMatch(/E_OUTPUT: .*gen: .*holds a generate run that is interrupted .*--strict exports only complete runs/);
    expect(existsSync(exp)).toBe(false);
    const loose = cli(['export', '--in', out, '--out', exp, '--format', 'llava']);
    expect(loose.code).toBe(0);
    expect(loose.stderr).toMatch(/warning: .*holds a generate run that is interrupted/);
  });
});

/** Can this process mount a small tmpfs (root, and a sandbox that allows it)? */
function canMount(dir: string): boolean {
  if (os.platform() !== 'linux' || process.getuid?.() !== 0) return false;
  return spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]).status === 0;
}

describe('a full disk', () => {
  const expectFullDiskFailure = (r: ReturnType<typeof cli>, out: string) => {
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`E_IO: ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/part-[\\w-]+\\.jsonl: ENOSPC: could not write: no space left on device, write; the disk is full`));
    const m = manifestOf(out) as { status: string; shards?: unknown };
    expect(m.status).toBe('failed');
    // No shard is counted that is not whole, and none is left half-written.
    expect(m.shards).toBeUndefined();
    expect(tmpFiles(out)).toEqual([]);
  };
  const rowsOf = (dir: string) =>
    readdirSync(dir)
      .filter((n) => /^part-.*\.jsonl$/.test(n))
      .sort()
      .flatMap((n) => readFileSync(path.join(dir, n), 'utf8').split('\n').filter(Boolean));

  it('on a real small file system (tmpfs): E_IO ENOSPC naming the shard, a failed manifest, and a rerun on free space gives the same records', async () => {
    const mnt = await tmpDir();
    if (!canMount(mnt)) {
      console.log('full disk: this machine does not let the test mount a tmpfs; the injected-error test below stands in');
      return;
    }
    try {
      const out = path.join(mnt, 'prepared');
      const args = ['prepare', ...SOURCES, '--out', out, '--format', 'jsonl', '--workers', '0'];
      expectFullDiskFailure(cli(args), out);
      expect(spawnSync('mount', ['-o', 'remount,size=64m', mnt]).status).toBe(0);
      expect(cli([...args, '-q']).code).toBe(0);
      const reference = path.join(await tmpDir(), 'reference');
      expect(cli(['prepare', ...SOURCES, '--out', reference, '--format', 'jsonl', '--workers', '0', '-q']).code).toBe(0);
      expect(rowsOf(out)).toEqual(rowsOf(reference));
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('with the write error injected in the shard writer: the same failure, and the rerun completes with the same records', async () => {
    const out = path.join(await tmpDir(), 'prepared');
    const args = ['prepare', ...SOURCES, '--out', out, '--format', 'jsonl', '--workers', '0'];
    expectFullDiskFailure(cli(args, { INSTRUCTIFY_TEST_ENOSPC_AFTER_BYTES: '50000' }), out);
    expect(cli([...args, '-q']).code).toBe(0);
    const reference = path.join(await tmpDir(), 'reference');
    expect(cli(['prepare', ...SOURCES, '--out', reference, '--format', 'jsonl', '--workers', '0', '-q']).code).toBe(0);
    expect(rowsOf(out)).toEqual(rowsOf(reference));
  });
});

describe('a native part that does not load', () => {
  it("generate says what to do when better-sqlite3's binding cannot load, before it writes anything", async () => {
    const out = path.join(await tmpDir(), 'gen');
    const child = spawnSync(BIN, ['generate', '--in', prep, '--out', out, '--llm-url', 'http://127.0.0.1:9/v1', '--model', 'x'], {
      encoding: 'utf8',
      env: { ...process.env, INSTRUCTIFY_SQLITE_BINDING: '/nonexistent/better_sqlite3.node' },
    });
    expect(child.status).toBe(1);
    expect(child.stderr).toMatch(/^instructify: E_DEPENDENCY: the answer cache needs better-sqlite3's native binding, which did not load \(Cannot find module .*\)\. Build it with "npm rebuild better-sqlite3" .* or run without the cache: --no-cache\n$/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("the README's table of exit codes", () => {
  it('says for each error code the exit code the CLI gives it', async () => {
    const { exitCodeOf } = await import('../src/cli.js');
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('### Exit codes'));
    const rows = table.split('\n').filter((l) => /^\| \d+ \|/.test(l));
    expect(rows.map((r) => Number(/^\| (\d+) \|/.exec(r)![1]))).toEqual([0, 1, 2, 3, 130]);
    const listed = new Set<string>();
    for (const row of rows) {
      const exit = Number(/^\| (\d+) \|/.exec(row)![1]);
      for (const [, code] of row.matchAll(/`(E_[A-Z_]+)`/g)) {
        expect(exitCodeOf(code!), code).toBe(exit);
        listed.add(code!);
      }
    }
    // Every error code the CLI can end with is in the table (E_PIPE_CLOSED ends quietly with 0; E_INTERNAL is a bug).
    const declared = [...readFileSync(path.join(ROOT, 'src', 'errors.ts'), 'utf8').matchAll(/\| '(E_[A-Z_]+)'/g)].map((m) => m[1]!);
    expect(declared.length).toBeGreaterThan(10);
    expect(declared.filter((c) => !listed.has(c) && c !== 'E_PIPE_CLOSED' && c !== 'E_INTERNAL')).toEqual([]);
  });
});
