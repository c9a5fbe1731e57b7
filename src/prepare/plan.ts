import { open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import type { PlannedFile, SourceKind } from '../sources/types.js';
import { fileSizeAndMtime } from '../write/shards.js';

/**
 * Phase 1 of prepare: every input file planned, checked and measured before
 * any is read, so a bad path or a wrong file fails at once.
 */

/** A source as prepare resolved it: its loader and its paths. */
export interface PlannedSource {
  name: string;
  kind: string;
  loader: SourceKind;
  paths: string[];
}

export interface InputInfo {
  source: string;
  kind: string;
  role: string;
  /** '-' for stdin (size 0 and no mtime: unknown). */
  file: string;
  size: number;
  mtime: string;
}

export interface InputPlan {
  /** Files in reading order: image tables that define aliases (VG image_data) first. */
  planned: { file: PlannedFile; source: PlannedSource }[];
  inputs: InputInfo[];
  bytesTotal: number;
}

export async function planInputs(sources: PlannedSource[]): Promise<InputPlan> {
  const planned: InputPlan['planned'] = [];
  for (const s of sources) for (const file of await s.loader.plan(s.paths)) planned.push({ file, source: s });
  // The same file twice for one source kind would double every fragment of it.
  const seenFiles = new Map<string, string>();
  for (const { file, source } of planned) {
    if (file.path === '-') continue;
    const key = `${source.kind}\u0000${await realpath(file.path).catch(() => path.resolve(file.path))}`;
    const first = seenFiles.get(key);
    if (first !== undefined) throw new InstructifyError('E_OPTION', `source ${source.name}: this file is given twice for ${source.kind} (first as ${first}); give it once`, { file: file.path, source: source.name });
    seenFiles.set(key, file.path);
  }
  planned.sort((a, b) => Number(b.file.first ?? false) - Number(a.file.first ?? false));
  const inputs: InputInfo[] = [];
  for (const { file, source } of planned) {
    // A folder, a pickle or an archive given as an annotation file: said now, with what to do.
    if (file.path !== '-') await checkInputFile(file.path, source.name);
    const info = file.path === '-' ? { size: 0, mtime: '' } : await fileSizeAndMtime(file.path).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source ${source.name}: ${err.message}`, { file: file.path, source: source.name, cause: err });
    });
    inputs.push({ source: source.name, kind: source.kind, role: file.role, file: file.path, ...info });
  }
  return { planned, inputs, bytesTotal: inputs.reduce((n, i) => n + i.size, 0) };
}

/**
 * Formats people give by mistake, told apart by their first bytes, with
 * what to do instead. (Parquet, JSON, CSV and text are read as they are.)
 */
const KNOWN_OTHER_FORMATS: { test: (b: Buffer) => boolean; what: string; fix: (file: string) => string }[] = [
  {
    // Pickle protocol 2-5 starts with 0x80 and the protocol number (RefCOCO's refs(unc).p, refs(umd).p).
    test: (b) => b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5,
    what: 'a Python pickle',
    fix: (file) =>
      `convert it to JSON first: python3 -c "import pickle, json, sys; json.dump(pickle.load(open(sys.argv[1], 'rb')), open(sys.argv[2], 'w'))" '${file}' '${file.replace(/\.p(kl|ickle)?$/, '')}.json'`,
  },
  { test: (b) => b[0] === 0x1f && b[1] === 0x8b, what: 'a gzip file', fix: (file) => `unpack it first: gunzip -k '${file}'` },
  { test: (b) => b[0] === 0x50 && b[1] === 0x4b && (b[2] === 0x03 || b[2] === 0x05) , what: 'a zip archive', fix: (file) => `unpack it first: unzip '${file}'` },
  { test: (b) => b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68, what: 'a bzip2 file', fix: (file) => `unpack it first: bunzip2 -k '${file}'` },
  { test: (b) => b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58, what: 'an xz file', fix: (file) => `unpack it first: unxz -k '${file}'` },
  { test: (b) => b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd, what: 'a zstd file', fix: (file) => `unpack it first: unzstd '${file}'` },
];

/** An input file must be a file, and not a known other format. */
async function checkInputFile(file: string, source: string): Promise<void> {
  const st = await stat(file).catch(() => null);
  // A missing file is the loader's to report (it knows what it expected).
  if (!st) return;
  if (st.isDirectory()) throw new InstructifyError('E_OPTION', `source ${source}: this is a folder; give the annotation file inside it`, { file, source });
  const head = Buffer.alloc(8);
  const fh = await open(file, 'r').catch(() => null);
  if (!fh) return;
  try {
    await fh.read(head, 0, 8, 0);
  } finally {
    await fh.close();
  }
  for (const f of KNOWN_OTHER_FORMATS) {
    if (f.test(head)) throw new InstructifyError('E_FILE_FORMAT', `source ${source}: this is ${f.what}, not an annotation file; ${f.fix(file)}`, { file, source });
  }
}

