import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { fetch } from 'undici';
import { InstructifyError } from '../errors.js';

/**
 * Models from the Hugging Face hub, kept in a cache folder laid out as the
 * hub's repositories: fetched once when the user is online, read from the
 * cache after. HF_ENDPOINT and HF_HUB_OFFLINE mean what they mean to the
 * hub's own tools.
 */
export interface HubOptions {
  /** Default: $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default: $INSTRUCTIFY_CACHE, else $XDG_CACHE_HOME/instructify/models, else ~/.cache/instructify/models. */
  cacheDir?: string;
  /** Never download (default: $HF_HUB_OFFLINE is 1). */
  offline?: boolean;
  log?: (line: string) => void;
}

export interface HubModel {
  repo: string;
  files: string[];
}

export const HUB_MODELS = {
  depth: { repo: 'onnx-community/depth-anything-v2-small', files: ['config.json', 'preprocessor_config.json', 'onnx/model.onnx'] },
  sam: { repo: 'Xenova/slimsam-77-uniform', files: ['config.json', 'preprocessor_config.json', 'onnx/vision_encoder.onnx', 'onnx/prompt_encoder_mask_decoder.onnx'] },
} satisfies Record<string, HubModel>;

export function hubCacheDir(o: HubOptions = {}): string {
  if (o.cacheDir) return o.cacheDir;
  if (process.env.INSTRUCTIFY_CACHE) return process.env.INSTRUCTIFY_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'instructify', 'models');
}

async function complete(folder: string, files: string[]): Promise<boolean> {
  for (const f of files) if (!(await stat(path.join(folder, f)).catch(() => null))?.isFile()) return false;
  return true;
}

/** The model's folder in the cache, fetched first when it is not there (and downloads are allowed). */
export async function hubModel(m: HubModel, o: HubOptions = {}): Promise<string> {
  const folder = path.join(hubCacheDir(o), m.repo);
  if (await complete(folder, m.files)) return folder;
  const offline = o.offline ?? process.env.HF_HUB_OFFLINE === '1';
  const hint = `or download it yourself: huggingface-cli download ${m.repo} ${m.files.join(' ')} --local-dir ${folder}`;
  if (offline) throw new InstructifyError('E_OPTION', `${m.repo} is not in the model cache (${folder}) and downloads are off (HF_HUB_OFFLINE=1): give --model-dir with a local copy, ${hint}`);
  const endpoint = (o.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  for (const f of m.files) {
    const target = path.join(folder, f);
    if ((await stat(target).catch(() => null))?.isFile()) continue;
    await mkdir(path.dirname(target), { recursive: true });
    const url = `${endpoint}/${m.repo}/resolve/main/${f}`;
    o.log?.(`downloading ${url}`);
    try {
      // fetch follows the hub's redirect to its file store.
      const res = await fetch(url);
      if (res.status !== 200 || !res.body) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      // Under a .tmp name until complete: an interrupted download is never taken for a model.
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(`${target}.tmp`));
      await rename(`${target}.tmp`, target);
    } catch (err) {
      await rm(`${target}.tmp`, { force: true });
      throw new InstructifyError('E_IO', `could not download ${url}: ${(err as Error).message}; give --model-dir with a local copy, ${hint}`, { file: target, cause: err });
    }
  }
  return folder;
}
