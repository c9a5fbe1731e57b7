import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { claimOutput } from '../write/output-folder.js';
import { onHardStop } from '../write/hard-stop.js';
import path from 'node:path';
import { Binary, Field, List, Schema, Struct, Utf8 } from 'apache-arrow';
import { InstructifyError } from '../errors.js';
import type { ImageRecord } from '../types.js';
import type { Conversation } from '../generate/generate.js';
import { expectOutputOf, readShards } from '../write/shard-reader.js';
import { FileSink, ShardWriter } from '../write/shards.js';
import { probeImage, resolveImageRoot, type ProbeResult } from '../records/images.js';
import type { Size } from '../records/assemble.js';

/**
 * From conversation shards to what trainers read: LLaVA JSON / JSONL,
 * ShareGPT as LLaMA-Factory reads it, Hugging Face Parquet (`messages` +
 * `images`, decodable by `datasets`), InternVL JSONL with its meta file.
 * Every conversation is checked on the way out; one that breaks a rule is
 * set aside in export-rejects.jsonl, not exported.
 */
export type ExportFormat = 'llava' | 'llava-jsonl' | 'sharegpt' | 'hf-parquet' | 'internvl';
export const EXPORT_FORMATS: ExportFormat[] = ['llava', 'llava-jsonl', 'sharegpt', 'hf-parquet', 'internvl'];

export interface ExportOptions {
  /** A `generate` output folder. */
  input: string;
  out: string;
  format: ExportFormat;
  /** Image root: needed for InternVL sizes and for --embed-images. */
  images?: string | null;
  /** Hugging Face Parquet: store image bytes instead of paths. */
  embedImages?: boolean;
  /** Dataset name in dataset_info.json / the InternVL meta file. */
  name?: string;
  /** Stop at the first conversation that would be set aside. */
  strict?: boolean;
  /** hf-parquet: conversations per `data/train-*.parquet` file (default 50,000). */
  rowsPerShard?: number;
  /** Said to the user: the input is not a complete run, the output folder's lock was taken over ...; default: stderr. */
  warn?: (message: string) => void;
}

export interface ExportResult {
  exported: number;
  rejected: Record<string, number>;
  files: string[];
  boxes: string;
}

const IMAGE = '<image>';
/** Signs that prompt wording reached a turn. */
const LEAKS = [/^\s*\**\s*(question|answer)\s*\d*\s*\**\s*:/im, /\bthe (facts|information) (above|below|given|provided)\b/i, /\baccording to the (facts|information)\b/i, /^\s*facts:/im];

export type Violation = { reason: 'not-a-conversation' | 'image-marker-count' | 'image-in-answer' | 'prompt-leak' | 'turn-order'; detail: string };
/** Why a conversation was not exported: a broken rule, or (InternVL sizes, --embed-images) its image. */
export type ExportRejectReason = Violation['reason'] | 'missing-image' | 'unreadable-image' | 'path-escape';

/** Why a conversation must not be exported, or null. */
export function validateConversation(c: Pick<Conversation, 'conversations'>): Violation | null {
  const turns = c.conversations;
  // Rows of a folder without a manifest are not known to be conversations.
  if (!Array.isArray(turns) || !turns.every((t) => t !== null && typeof t === 'object' && typeof t.value === 'string')) {
    return { reason: 'not-a-conversation', detail: 'no list of {from, value} turns in "conversations"' };
  }
  if (!turns.length || turns.length % 2 !== 0 || turns.some((t, i) => t.from !== (i % 2 === 0 ? 'human' : 'gpt'))) {
    return { reason: 'turn-order', detail: 'turns must alternate human, gpt, starting with human' };
  }
  for (const t of turns) if (t.from === 'gpt' && t.value.includes(IMAGE)) return { reason: 'image-in-answer', detail: `an answer contains ${IMAGE}` };
  const markers = turns.reduce((n, t) => n + t.value.split(IMAGE).length - 1, 0);
  if (markers !== 1 || !turns[0]!.value.startsWith(IMAGE)) {
    return { reason: 'image-marker-count', detail: `${markers} ${IMAGE} markers for 1 image (it must open the first human turn)` };
  }
  for (const t of turns) {
    const leak = LEAKS.find((re) => re.test(t.value));
    if (leak) return { reason: 'prompt-leak', detail: `a ${t.from} turn contains prompt wording (${leak.source.slice(0, 30)})` };
  }
  return null;
}

/** A box or region of a prepared record, corners 0..1 from the top left. */
export interface StoredBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/**
 * [x1, y1, x2, y2] boxes written in 0..1 become 0..1000 integers (InternVL's
 * convention), and a text that states the scale says the new one: "0 to 1
 * from the top left" would be false of [100, 250, 500, 1000].
 */
export function boxesTo1000(text: string, stored: readonly StoredBox[] = []): string {
  let boxes = 0;
  const out = text.replace(/\[\s*(0?\.\d+|0|1(?:\.0+)?)\s*,\s*(0?\.\d+|0|1(?:\.0+)?)\s*,\s*(0?\.\d+|0|1(?:\.0+)?)\s*,\s*(0?\.\d+|0|1(?:\.0+)?)\s*\]/g, (...m: string[]) => {
    boxes++;
    const said = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
    // The image's own box that the text's (rounded) numbers are: its exact corners, not the rounding's.
    const decimals = Math.max(...[m[1], m[2], m[3], m[4]].map((v) => v!.split('.')[1]?.length ?? 0));
    const round = (v: number) => Number(v.toFixed(decimals));
    const exact = decimals > 0 ? stored.find((b) => round(b.x1) === said[0] && round(b.y1) === said[1] && round(b.x2) === said[2] && round(b.y2) === said[3]) : undefined;
    const corners = exact ? [exact.x1, exact.y1, exact.x2, exact.y2] : said;
    return `[${corners.map((v) => Math.round(v * 1000)).join(', ')}]`;
  });
  if (!boxes) return out;
  return out
    .replace(/\b0 to 1\b(?![.,]?\d)/g, '0 to 1000')
    .replace(/\b0\.\.1\b(?![.,]?\d)/g, '0..1000')
    .replace(/\bbetween 0 and 1\b(?![.,]?\d)/g, 'between 0 and 1000')
    .replace(/\bfractions of the image\b/g, 'thousandths of the image');
}

const utf8 = () => new Utf8();
const f = (name: string, type: ConstructorParameters<typeof Field>[1], nullable = false) => new Field(name, type, nullable);
/**
 * Hugging Face: messages with content parts, images as {bytes, path};
 * `datasets` reads the features from the metadata, and uses them only when
 * the file's Arrow schema is the one it derives from them: every field
 * nullable, list items named "item". A `not null` field made it fall back
 * to inferring the features (images as plain {bytes, path} dicts, not Image).
 */
const n = (name: string, type: ConstructorParameters<typeof Field>[1]) => f(name, type, true);
export const hfSchema = new Schema(
  [
    n('messages', new List(n('item', new Struct([n('role', utf8()), n('content', new List(n('item', new Struct([n('type', utf8()), n('text', utf8())]))))])))),
    n('images', new List(n('item', new Struct([n('bytes', new Binary()), n('path', utf8())])))),
  ],
  new Map([
    [
      'huggingface',
      JSON.stringify({
        info: {
          features: {
            messages: [{ role: { dtype: 'string', _type: 'Value' }, content: [{ type: { dtype: 'string', _type: 'Value' }, text: { dtype: 'string', _type: 'Value' } }] }],
            images: [{ _type: 'Image' }],
          },
        },
      }),
    ],
  ]),
);

export async function exportConversations(o: ExportOptions): Promise<ExportResult> {
  if (!EXPORT_FORMATS.includes(o.format)) throw new InstructifyError('E_OPTION', `unknown export format "${o.format}"; one of ${EXPORT_FORMATS.join(', ')}`);
  const needImages = o.format === 'internvl' || o.embedImages === true;
  if (needImages && !o.images) {
    throw new InstructifyError('E_OPTION', `${o.format === 'internvl' ? 'InternVL needs image sizes' : '--embed-images needs the images'}: give --images (the image root)`);
  }
  const realRoot = needImages ? await resolveImageRoot(o.images!) : '';
  const inputManifest = await expectOutputOf(o.input, 'generate', 'export');
  const warn = o.warn ?? ((m: string) => process.stderr.write(`instructify: ${m}\n`));
  // A run that was stopped or failed holds only part of what it would have made: say so (refuse, in strict mode).
  const status = inputManifest?.status;
  if (status !== undefined && status !== 'complete') {
    const what = `${o.input} holds a generate run that is ${String(status)} (its manifest says so): it has only the images finished before it stopped`;
    if (o.strict) throw new InstructifyError('E_OUTPUT', `${what}; --strict exports only complete runs: run the same generate command again to finish it`, { file: o.input });
    warn(`warning: ${what}; run the same generate command again to finish it`);
  }
  const name = o.name ?? 'instructify';
  const claim = await claimOutput({ out: o.out, command: 'export', inputs: [o.input], roots: o.images ? [o.images] : [], warn });
  const disposeHardStop = onHardStop(claim.stopNow);
  const manifest = (m: object) => writeFile(path.join(o.out, 'export-manifest.json'), JSON.stringify({ tool: 'instructify', command: 'export', format: o.format, input: o.input, ...m }, null, 2) + '\n');
  // Until it is done, the folder says an export is under way: a rerun knows it as export's own.
  await manifest({ status: 'running' });
  try {
    const result = await exportInto(o, name, needImages, realRoot, inputManifest);
    await manifest({ status: 'complete', ...result });
    return result;
  } catch (err) {
    await manifest({ status: 'failed', error: { code: err instanceof InstructifyError ? err.code : 'E_INTERNAL', message: (err as Error).message } }).catch(() => {});
    throw err;
  } finally {
    disposeHardStop();
    claim.release();
  }
}

/**
 * The boxes and regions of each image, from the prepared folder the
 * generate run read (its manifest's `input`), looked up in order:
 * conversations come in the order of that input, so one pass over its
 * shards (boxes and regions only) serves them all. Null when that folder
 * is not at hand (a `run`, a moved folder): the text's numbers are used.
 */
async function storedBoxesOf(generated: Record<string, unknown> | null): Promise<{ lookup: (image: string) => Promise<StoredBox[]>; close: () => Promise<void> } | null> {
  const prepared = typeof generated?.input === 'string' ? generated.input : null;
  if (!prepared || !(await stat(path.join(prepared, 'manifest.json')).catch(() => null))) return null;
  const records = readShards<ImageRecord>(prepared, undefined, ['boxes.list.item.mask', 'tree_nodes'])[Symbol.asyncIterator]();
  let current: ImageRecord | null = null;
  let done = false;
  return {
    lookup: async (image) => {
      while (!done && current?.image !== image) {
        const next = await records.next();
        if (next.done) done = true;
        else current = next.value;
      }
      return current?.image === image ? [...current.boxes, ...current.regions] : [];
    },
    // The shards' reader stops where the conversations did.
    close: async () => void (await records.return?.(undefined)),
  };
}

async function exportInto(o: ExportOptions, name: string, needImages: boolean, realRoot: string, generated: Record<string, unknown> | null): Promise<ExportResult> {
  const storedBoxes = o.format === 'internvl' ? await storedBoxesOf(generated) : null;
  const rejects = new FileSink(path.join(o.out, 'export-rejects.jsonl'));
  const rejected: Record<string, number> = {};
  const files: string[] = [];
  let exported = 0;
  const boxes = o.format === 'internvl' ? '[x1, y1, x2, y2] as integers 0..1000, top-left origin' : '[x1, y1, x2, y2] as fractions 0..1, top-left origin';

  const file = (n: string) => {
    files.push(n);
    return path.join(o.out, n);
  };
  /** The one text file of a JSON / JSONL format: written as `<name>.tmp`, renamed once complete. */
  let text: FileSink | null = null;
  let outFile = '';
  const openOut = (n: string) => {
    outFile = file(n);
    return new FileSink(`${outFile}.tmp`);
  };
  let hf: ShardWriter | null = null;
  let first = true;
  /** Each image checked once (a generate output has several conversations per image). */
  const probes = new Map<string, ProbeResult>();
  const setAside = async (c: Conversation, reason: ExportRejectReason, detail: string) => {
    if (o.strict) throw new InstructifyError('E_BAD_RECORD', `${reason}: ${detail} (strict mode stops at the first bad conversation)`, { imageId: c.image });
    rejected[reason] = (rejected[reason] ?? 0) + 1;
    await rejects.write(JSON.stringify({ id: c.id, image: c.image, reason, detail }) + '\n');
  };
  try {
    if (o.format === 'llava') await (text = openOut('llava.json')).write('[\n');
    else if (o.format === 'llava-jsonl') text = openOut('llava.jsonl');
    else if (o.format === 'sharegpt') await (text = openOut('sharegpt.json')).write('[\n');
    else if (o.format === 'internvl') text = openOut('internvl.jsonl');
    else {
      await mkdir(path.join(o.out, 'data'), { recursive: true });
      hf = new ShardWriter({ dir: path.join(o.out, 'data'), prefix: 'train', format: 'parquet', rowsPerShard: o.rowsPerShard ?? 50_000, metadata: [...hfSchema.metadata], schema: hfSchema });
    }
    for await (const c of readShards<Conversation>(o.input, /^part-[\w-]+\.(parquet|jsonl)$/)) {
      const v = validateConversation(c);
      if (v) {
        await setAside(c, v.reason, v.detail);
        continue;
      }
      let size: Size | null = null;
      if (needImages) {
        let probe = probes.get(c.image);
        if (!probe) {
          // The header is read for --embed-images too: bytes that are not an image would fail the trainer's decoder.
          probe = await probeImage(o.images!, realRoot, c.image, true);
          probes.set(c.image, probe);
        }
        if (!probe.ok) {
          await setAside(c, probe.reason, probe.detail);
          continue;
        }
        size = probe.size;
      }
      exported++;
      const stored = storedBoxes ? await storedBoxes.lookup(c.image) : [];
      const turns = c.conversations.map((t) => ({ from: t.from, value: o.format === 'internvl' ? boxesTo1000(t.value, stored) : t.value }));
      if (o.format === 'llava' || o.format === 'llava-jsonl') {
        const item = JSON.stringify({ id: c.id, image: c.image, conversations: turns });
        await text!.write(o.format === 'llava' ? `${first ? '' : ',\n'}${item}` : `${item}\n`);
      } else if (o.format === 'sharegpt') {
        const messages = turns.map((t) => ({ role: t.from === 'human' ? 'user' : 'assistant', content: t.value }));
        await text!.write(`${first ? '' : ',\n'}${JSON.stringify({ messages, images: [c.image] })}`);
      } else if (o.format === 'internvl') {
        await text!.write(JSON.stringify({ id: c.id, image: c.image, width: size!.width, height: size!.height, conversations: turns }) + '\n');
      } else {
        const messages = turns.map((t, i) => ({
          role: t.from === 'human' ? 'user' : 'assistant',
          content: i === 0 ? [{ type: 'image', text: null }, { type: 'text', text: t.value.slice(IMAGE.length).replace(/^\n/, '') }] : [{ type: 'text', text: t.value }],
        }));
        const bytes = o.embedImages ? new Uint8Array(await readFile(path.join(o.images!, c.image))) : null;
        await hf!.add([{ messages, images: [{ bytes, path: o.embedImages ? null : c.image }] }]);
      }
      first = false;
    }
    if (text) {
      if (o.format === 'llava' || o.format === 'sharegpt') await text.write('\n]\n');
      await text.finish();
      await rename(`${outFile}.tmp`, outFile);
    }
    if (hf) for (const s of await hf.close()) files.push(path.join('data', s.file));
    await rejects.finish();
  } catch (err) {
    // Nothing of a failed export is left to look complete: not the text file's .tmp, not a finished Parquet file.
    await text?.abort();
    await rejects.abort();
    if (outFile) await rm(`${outFile}.tmp`, { force: true });
    if (hf) {
      await hf.abort();
      for (const s of hf.shards) await rm(path.join(o.out, 'data', s.file), { force: true });
    }
    throw err;
  } finally {
    await storedBoxes?.close();
  }
  if (o.format === 'sharegpt') {
    await writeFile(
      file('dataset_info.json'),
      JSON.stringify(
        {
          [name]: {
            file_name: 'sharegpt.json',
            formatting: 'sharegpt',
            columns: { messages: 'messages', images: 'images' },
            tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' },
          },
        },
        null,
        2,
      ) + '\n',
    );
  }
  if (o.format === 'internvl') {
    await writeFile(file('internvl_meta.json'), JSON.stringify({ [name]: { root: o.images, annotation: 'internvl.jsonl', data_augment: false, repeat_time: 1, length: exported } }, null, 2) + '\n');
  }
  return { exported, rejected, files, boxes };
}
