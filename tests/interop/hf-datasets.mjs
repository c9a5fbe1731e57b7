#!/usr/bin/env node
/**
 * The hf-parquet export as Hugging Face `datasets` loads it: exports the
 * real COCO slice, installs `datasets` with pip into a throwaway venv, and
 * checks that `load_dataset(<export folder>)` gives `images` as Image
 * features (it falls back to plain {bytes, path} dicts when the file's
 * Arrow schema is not exactly the one it derives from the declared
 * features). Run by .ci/run after the tests; needs the build (dist/).
 *
 *   node tests/interop/hf-datasets.mjs
 *
 * When pip cannot install `datasets` (no index it can reach), it says so and
 * skips: nothing here can be checked without the library.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = path.resolve(root, '..', 'shared', 'data', 'coco', 'annotations');
const work = mkdtempSync(path.join(os.tmpdir(), 'instructify-hf-'));
const say = (s) => process.stdout.write(`hf interop: ${s}\n`);
try {
  const { prepare } = await import(path.join(root, 'dist', 'src', 'prepare', 'prepare.js'));
  const { generate } = await import(path.join(root, 'dist', 'src', 'generate', 'generate.js'));
  const { exportConversations } = await import(path.join(root, 'dist', 'src', 'export', 'export.js'));
  await prepare({ sources: [{ kind: 'coco-captions', paths: [path.join(shared, 'captions_val2017.json')] }, { kind: 'coco-instances', paths: [path.join(shared, 'instances_val2017.json')] }], images: null, out: path.join(work, 'prepared'), warn: () => {} });
  await generate({ input: path.join(work, 'prepared'), out: path.join(work, 'conversations'), distribution: 'llava', warn: () => {} });
  const exported = path.join(work, 'hf');
  await exportConversations({ input: path.join(work, 'conversations'), out: exported, format: 'hf-parquet', warn: () => {} });

  const venv = path.join(work, 'venv');
  const made = spawnSync('python3', ['-m', 'venv', venv], { encoding: 'utf8' });
  if (made.status !== 0) {
    say(`SKIPPED: no python3 venv to install datasets into (${(made.stderr || '').trim().split('\n').at(-1)})`);
    process.exit(0);
  }
  const pip = spawnSync(path.join(venv, 'bin', 'pip'), ['install', '-q', '--retries', '0', '--timeout', '20', 'datasets'], { encoding: 'utf8', timeout: 900_000 });
  if (pip.status !== 0) {
    say(`SKIPPED: pip could not install datasets (${(pip.stderr || pip.stdout || '').trim().split('\n').at(-1)})`);
    process.exit(0);
  }
  const check = path.join(work, 'check.py');
  writeFileSync(
    check,
    [
      'import sys, datasets',
      "d = datasets.load_dataset(sys.argv[1], split='train')",
      "img = d.features['images']",
      "inner = getattr(img, 'feature', None)",
      "print(datasets.__version__, len(d), 'images:', img)",
      "sys.exit(0 if isinstance(inner, datasets.Image) else 1)",
    ].join('\n'),
  );
  const r = spawnSync(path.join(venv, 'bin', 'python'), [check, exported], { encoding: 'utf8', env: { ...process.env, HF_DATASETS_OFFLINE: '1', HF_HUB_OFFLINE: '1', HF_HOME: path.join(work, 'hf-home') } });
  if (r.status !== 0) {
    process.stderr.write(`hf interop: FAILED: datasets does not read images as Image features:\n${r.stdout}${r.stderr}\n`);
    process.exit(1);
  }
  say(`ok: datasets ${r.stdout.trim()}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
