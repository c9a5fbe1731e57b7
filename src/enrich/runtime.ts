import { createRequire } from 'node:module';
import { InstructifyError } from '../errors.js';

/**
 * The model runtimes are an optional install: onnxruntime-node is ~300 MB
 * (and its install script would download CUDA libraries from outside the
 * npm registry), tesseract.js with its English data ~60 MB. `npm ci` leaves
 * them out; this one command adds them, from the registry alone.
 */
export const MODEL_SUPPORT_INSTALL = 'npm run models:install';
export const MODEL_SUPPORT_PACKAGES = ['onnxruntime-node@1.31.1', 'tesseract.js@7.0.0', '@tesseract.js-data/eng@1.0.0'];

/** The part of onnxruntime-node this project uses. */
export interface OrtTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array | BigInt64Array | Uint8Array;
}
export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  Tensor: new (type: 'float32' | 'int64', data: Float32Array | BigInt64Array, dims: number[]) => OrtTensor;
  InferenceSession: { create(file: string, options?: { executionProviders?: string[]; intraOpNumThreads?: number }): Promise<OrtSession> };
}

/** The part of tesseract.js this project uses. */
export interface OcrWord {
  text: string;
  confidence: number;
  bbox: { x0: number; y0: number; x1: number; y1: number };
}
export interface TesseractWorker {
  recognize(image: string | Buffer, options: object, output: { blocks: boolean; text: boolean }): Promise<{ data: { text: string; blocks: { paragraphs: { lines: { words: OcrWord[] }[] }[] }[] | null } }>;
  terminate(): Promise<unknown>;
}
export interface TesseractModule {
  createWorker(lang: string, oem: number, options: { langPath: string; gzip: boolean; cachePath: string; logger: () => void }): Promise<TesseractWorker>;
}

const require = createRequire(import.meta.url);

function missing(what: string, pkg: string, err: unknown): InstructifyError {
  return new InstructifyError('E_DEPENDENCY', `${what} needs ${pkg}, which the default install leaves out (it is large): install model support with \`${MODEL_SUPPORT_INSTALL}\` (${MODEL_SUPPORT_PACKAGES.join(', ')}; from the npm registry only)`, { cause: err });
}

/** Tests set this to see what a machine without model support is told. */
function requireModelPackage(name: string): unknown {
  if (process.env.INSTRUCTIFY_TEST_NO_MODEL_SUPPORT === '1') throw new Error(`Cannot find module '${name}'`);
  return require(name);
}

export function loadOnnxRuntime(what: string): OrtModule {
  try {
    return requireModelPackage('onnxruntime-node') as OrtModule;
  } catch (err) {
    throw missing(what, 'onnxruntime-node', err);
  }
}

export function loadTesseract(): { tesseract: TesseractModule; langPath: string; gzip: boolean } {
  let tesseract: TesseractModule;
  let eng: { langPath: string; gzip: boolean };
  try {
    tesseract = requireModelPackage('tesseract.js') as TesseractModule;
    eng = requireModelPackage('@tesseract.js-data/eng') as { langPath: string; gzip: boolean };
  } catch (err) {
    throw missing('--ocr', 'tesseract.js and @tesseract.js-data/eng', err);
  }
  return { tesseract, langPath: eng.langPath, gzip: eng.gzip };
}
