import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { InstructifyError } from '../errors.js';
import { cocoRef } from './coco.js';
import { recordHandler } from './records.js';
import { emptyFragment, isObject, num, rawBox, str, type FileHandler, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';

/**
 * Flickr30k captions, and Flickr30k Entities boxes when given.
 * - `results_20130124.token` (or any `*.token`): `1000092795.jpg#0<TAB>caption` lines;
 * - Karpathy's `dataset_flickr30k.json`: `images[{filename, sentences[{raw}]}]`;
 * - the Entities folder (with `Annotations/*.xml` and `Sentences/*.txt`):
 *   each box's entity is named by the phrases that refer to it in the
 *   image's five sentences ("two young guys"), and those sentences, with
 *   their markup removed, are captions.
 */
function flickrFragment(name: string, ctx: HandlerContext, file: string, offset: number) {
  const clean = name.trim();
  const f = emptyFragment(`flickr30k:${clean}`, ctx, file, offset);
  f.path = clean;
  return f;
}

async function planFlickr(paths: string[]): Promise<PlannedFile[]> {
  const out: PlannedFile[] = [];
  for (const p of paths) {
    const st = await stat(p).catch((err: Error) => {
      throw new InstructifyError('E_IO', `cannot read input for source flickr30k: ${err.message}`, { file: p, cause: err });
    });
    if (!st.isDirectory()) {
      out.push({ path: p, role: p.endsWith('.json') ? 'karpathy' : p.endsWith('.xml') ? 'entities' : 'token' });
      continue;
    }
    // An Entities folder (or its Annotations folder).
    const annotations = (await stat(path.join(p, 'Annotations')).catch(() => null))?.isDirectory() ? path.join(p, 'Annotations') : p;
    const xml = (await readdir(annotations)).filter((n) => n.endsWith('.xml')).sort();
    if (!xml.length) throw new InstructifyError('E_OPTION', `source flickr30k: ${p} has no Annotations/*.xml (the Flickr30k Entities layout)`, { file: p });
    for (const n of xml) out.push({ path: path.join(annotations, n), role: 'entities' });
  }
  return out;
}

const ENTITY = /\[\/EN#(\d+)\/([^\s\]]+) ([^\]]*)\]/g;

/** A Flickr30k Entities sentence: its plain text, and each entity's phrase. */
export function parseEntitySentence(line: string): { text: string; phrases: { id: string; type: string; phrase: string }[] } {
  const phrases: { id: string; type: string; phrase: string }[] = [];
  const text = line.replace(ENTITY, (_, id: string, type: string, phrase: string) => {
    phrases.push({ id, type, phrase });
    return phrase;
  });
  return { text: text.trim(), phrases };
}

const xml = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'object' || name === 'name' });

function entitiesHandler(file: PlannedFile, ctx: HandlerContext): FileHandler {
  return {
    format: 'text',
    onValue(v) {
      const id = path.basename(file.path, '.xml');
      let doc: { annotation?: { filename?: string; size?: { width?: string; height?: string }; object?: { name?: string[]; bndbox?: Record<string, string> }[] } };
      try {
        doc = xml.parse(String(v.value)) as typeof doc;
      } catch (err) {
        throw new InstructifyError('E_WRONG_KIND', `not a Flickr30k Entities annotation: ${(err as Error).message}`, { file: file.path, source: ctx.source, cause: err });
      }
      const ann = doc.annotation;
      if (!ann) throw new InstructifyError('E_WRONG_KIND', 'a Flickr30k Entities annotation has an <annotation> root', { file: file.path, source: ctx.source });
      const f = flickrFragment(`${id}.jpg`, ctx, file.path, 0);
      const w = num(ann.size?.width);
      const h = num(ann.size?.height);
      if (w > 0 && h > 0) {
        f.width = w;
        f.height = h;
      }
      // The sentences beside the annotations name the entities (small files, read whole).
      const sentencesFile = path.join(path.dirname(path.dirname(file.path)), 'Sentences', `${id}.txt`);
      const phrases = new Map<string, string[]>();
      let lines: string[] = [];
      try {
        lines = readFileSync(sentencesFile, 'utf8').split('\n').filter((l) => l.trim());
      } catch {
        // No sentences: boxes cannot be named; they are set aside below.
      }
      for (const line of lines) {
        const s = parseEntitySentence(line);
        if (s.text) f.captions.push(s.text);
        for (const p of s.phrases) {
          const list = phrases.get(p.id) ?? [];
          const phrase = p.phrase.trim().toLowerCase();
          if (phrase && !list.includes(phrase) && list.length < 3) list.push(phrase);
          phrases.set(p.id, list);
        }
      }
      for (const o of ann.object ?? []) {
        if (!isObject(o.bndbox)) continue;
        const x1 = num(o.bndbox.xmin);
        const y1 = num(o.bndbox.ymin);
        const x2 = num(o.bndbox.xmax);
        const y2 = num(o.bndbox.ymax);
        for (const name of o.name ?? []) {
          const labels = phrases.get(String(name)) ?? [];
          if (!labels.length) {
            ctx.sink.reject({ reason: 'bad-box', detail: `entity ${name} has a box but no phrase in ${path.basename(sentencesFile)}`, source: ctx.source, file: file.path, offset: null, image: f.ref });
            continue;
          }
          // One box per phrase: the tree merges them into "two young guys (two men)".
          for (const label of labels) f.boxes.push(rawBox(label, x1, y1, x2 - x1, y2 - y1));
        }
      }
      ctx.sink.emit(f);
    },
    finish() {},
  };
}

export const flickr30k: SourceKind = {
  kind: 'flickr30k',
  family: 'flickr30k',
  expects: 'results_20130124.token (captions) or dataset_flickr30k.json (Karpathy), and/or the Flickr30k Entities folder (Annotations/, Sentences/)',
  plan: planFlickr,
  handler(file, ctx) {
    if (file.role === 'entities') return entitiesHandler(file, ctx);
    if (file.role === 'karpathy') {
      return recordHandler(file, ctx, {
        what: 'Flickr30k (Karpathy split)',
        arrayKey: 'images',
        required: ['filename', 'sentences'],
        onRecord(el, v) {
          const f = flickrFragment(str(el.filename) ?? '', ctx, file.path, v.offset);
          for (const s of Array.isArray(el.sentences) ? el.sentences : []) {
            const raw = isObject(s) ? str(s.raw) : str(s);
            if (raw?.trim()) f.captions.push(raw.trim());
          }
          if (f.captions.length) ctx.sink.emit(f);
        },
      });
    }
    return {
      format: 'lines',
      onValue(v) {
        const line = String(v.value);
        const tab = line.indexOf('\t');
        const name = tab > 0 ? line.slice(0, tab).replace(/#\d+$/, '') : '';
        const caption = tab > 0 ? line.slice(tab + 1).trim() : '';
        if (!name || !caption) {
          ctx.sink.reject({ reason: 'bad-record', detail: `line ${v.index + 1} is not "<image>#<n><TAB><caption>"`, source: ctx.source, file: file.path, offset: v.offset, image: null });
          return;
        }
        const f = flickrFragment(name, ctx, file.path, v.offset);
        f.captions.push(caption);
        ctx.sink.emit(f);
      },
      finish() {},
    };
  },
};

/**
 * Localized Narratives (`*_localized_narratives*.jsonl`): one spoken-then-
 * transcribed description per line, over COCO, Open Images, Flickr30k and
 * ADE20K images (`dataset_id` says which). The caption is kept; the mouse
 * traces are not.
 */
export const localizedNarratives: SourceKind = {
  kind: 'localized-narratives',
  family: 'localized-narratives',
  expects: '*_localized_narratives*.jsonl (dataset_id, image_id, caption)',
  plan: async (paths) => paths.map((p) => ({ path: p, role: 'narratives' })),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'Localized Narratives',
      format: 'jsonl',
      arrayKey: null,
      required: ['dataset_id', 'image_id', 'caption'],
      onRecord(el, v) {
        const dataset = str(el.dataset_id) ?? '';
        const id = str(el.image_id) ?? '';
        const caption = str(el.caption)?.trim();
        if (!id || !caption) return;
        let f;
        if (dataset.startsWith('mscoco') || dataset.startsWith('coco')) f = emptyFragment(cocoRef(Number(id)), ctx, file.path, v.offset);
        else if (dataset.startsWith('flickr30k')) f = flickrFragment(`${id}.jpg`, ctx, file.path, v.offset);
        else {
          const family = dataset.startsWith('open_images') ? 'openimages' : dataset.toLowerCase().startsWith('ade20k') ? 'ade20k' : dataset || 'localized-narratives';
          f = emptyFragment(`${family}:${id}`, ctx, file.path, v.offset);
          f.path = `${id}.jpg`;
        }
        f.captions.push(caption);
        ctx.sink.emit(f);
      },
    }),
};

