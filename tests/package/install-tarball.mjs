#!/usr/bin/env node
/**
 * Installs the package as users do, from its tarball, and runs it from an
 * empty project: `npm pack`, then `npm ci` of a project whose only
 * dependency is that tarball, then `npx instructify --version` and
 * `npx instructify demo` from there. The project's lockfile is made from
 * this repository's (its production entries), so every dependency comes
 * from the npm cache that `npm ci` filled: no network beyond that.
 * Checks the tarball's file list (no test, fixture or CI file) and size.
 *
 *   node tests/package/install-tarball.mjs
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(path.join(os.tmpdir(), 'instructify-package-'));
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' } });
const fail = (msg) => {
  process.stderr.write(`package test: FAILED: ${msg}\n`);
  process.exit(1);
};

try {
  // 1. The tarball: built on pack (prepack), and nothing but what runs.
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], root))[0];
  const files = packed.files.map((f) => f.path);
  const strays = files.filter((f) => !/^(dist\/src\/|dist\/transforms\/|bin\/|prompts\/|README\.md$|LICENSE$|package\.json$)/.test(f) || /\.map$/.test(f));
  if (strays.length) fail(`the tarball holds files it should not: ${strays.slice(0, 10).join(', ')}`);
  for (const need of ['dist/src/cli.js', 'bin/instructify', 'prompts/check.md', 'prompts/distributions/llava.json', 'LICENSE', 'README.md']) {
    if (!files.includes(need)) fail(`the tarball lacks ${need}`);
  }
  if (files.some((f) => /(^|\/)(tests?|fixtures|\.ci)\//.test(f))) fail('the tarball holds tests, fixtures or CI files');
  const tarball = path.join(work, packed.filename);
  const size = statSync(tarball).size;
  if (size > 1_000_000) fail(`the tarball is ${size} bytes; expected well under 1 MB`);

  // 2. An empty project whose one dependency is the tarball, locked to this repository's versions.
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  const proj = path.join(work, 'project');
  execFileSync('mkdir', ['-p', proj]);
  const packages = { '': { name: 'try-instructify', version: '1.0.0', dependencies: { instructify: `file:../${packed.filename}` } } };
  packages['node_modules/instructify'] = {
    version: pkg.version,
    resolved: `file:../${packed.filename}`,
    integrity: packed.integrity,
    license: pkg.license,
    dependencies: pkg.dependencies,
    bin: pkg.bin,
    engines: pkg.engines,
  };
  for (const [k, v] of Object.entries(lock.packages)) if (k.startsWith('node_modules/') && !v.dev) packages[k] = v;
  writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'try-instructify', version: '1.0.0', private: true, dependencies: { instructify: `file:../${packed.filename}` } }, null, 2));
  writeFileSync(path.join(proj, 'package-lock.json'), JSON.stringify({ name: 'try-instructify', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
  run('npm', ['ci', '--offline'], proj);

  // 3. It runs from the project, not from this checkout, whatever the working folder.
  const version = run('npx', ['--offline', 'instructify', '--version'], proj).trim();
  if (version !== pkg.version) fail(`npx instructify --version said "${version}", not ${pkg.version}`);
  const demo = run('npx', ['--offline', 'instructify', 'demo', '--out', path.join(work, 'demo'), '--images', '6'], proj);
  if (!/conversation \(facts-[a-z-]+\):/.test(demo)) fail(`demo printed no example conversation:\n${demo}`);
  // The installed command from another working folder: it finds its prompts beside itself.
  const bin = path.join(proj, 'node_modules', '.bin', 'instructify');
  const sources = run(bin, ['sources'], os.tmpdir());
  if (!/coco-instances/.test(sources)) fail(`instructify sources from another folder printed:\n${sources}`);
  const preview = run(bin, ['preview', '--in', path.join(work, 'demo', 'prepared'), '-n', '1'], os.tmpdir());
  if (!/prompt: /.test(preview)) fail(`preview from another folder printed no prompt:\n${preview}`);
  const installed = run('du', ['-sk', path.join(proj, 'node_modules')], proj).split('\t')[0];
  process.stdout.write(`package test: ok: ${packed.filename} ${size} bytes, ${files.length} files; installed into an empty project offline (${installed} KB of node_modules); npx instructify --version and demo ran\n`);
} catch (err) {
  fail(`${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
