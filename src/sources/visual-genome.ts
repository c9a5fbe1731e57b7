import { InstructifyError } from '../errors.js';
import type { RawBox } from '../types.js';
import { cocoRef } from './coco.js';
import { planByName } from './files.js';
import { emptyFragment, isObject, keysOf, num, rawBox, str, type HandlerContext, type IngestState, type SourceKind } from './types.js';

/** A VG image that is also a COCO image joins under the COCO identity. GQA ids are VG ids. */
export function vgRef(id: number, state: IngestState): string {
  const coco = state.vgToCoco.get(id);
  return coco !== undefined ? cocoRef(coco) : `vg:${id}`;
}

/** v1.2 says `image_id`, v1.0 (and some v1.2 files) say `id`. */
function imageIdOf(el: Record<string, unknown>): number {
  return num(el.image_id ?? el.id);
}

/**
 * v1.2 objects have `names` (a list), v1.0's `attributes.json` objects
 * `object_names`, and v1.0 objects and relationship ends `name`.
 */
function nameOf(o: Record<string, unknown>): string | null {
  const names = Array.isArray(o.names) ? o.names : Array.isArray(o.object_names) ? o.object_names : null;
  if (names) {
    const first = names.find((n) => typeof n === 'string' && n.trim() !== '');
    return typeof first === 'string' ? first.trim() : null;
  }
  const n = str(o.name);
  return n === null ? null : n.trim();
}

function objectBox(o: Record<string, unknown>): RawBox {
  const b = rawBox(nameOf(o), num(o.x), num(o.y), num(o.w ?? o.width), num(o.h ?? o.height));
  b.sourceId = str(o.object_id ?? o.id);
  return b;
}

/** The path of a VG image relative to the VG image folder: `VG_100K_2/1.jpg` from its url. */
export function vgPathFromUrl(url: string | null, id: number): string {
  if (url) {
    const parts = url.split('/').filter(Boolean);
    const name = parts.at(-1);
    const dir = parts.at(-2);
    if (name && dir && /^VG_100K/.test(dir)) return `${dir}/${name}`;
    if (name) return name;
  }
  return `${id}.jpg`;
}

const ROLES: [string, RegExp][] = [
  ['image_data', /image_data.*\.json$/],
  ['objects', /^objects.*\.json$/],
  ['attributes', /^attributes.*\.json$/],
  ['relationships', /^relationships.*\.json$/],
  ['region_descriptions', /^region_descriptions.*\.json$/],
  ['question_answers', /^question_answers.*\.json$/],
];

/** The list key each file's per-image elements hold, to detect a file of the wrong kind. */
const LIST_KEY: Record<string, string> = {
  objects: 'objects',
  attributes: 'attributes',
  relationships: 'relationships',
  region_descriptions: 'regions',
  question_answers: 'qas',
};

const TOP_LEVEL_ARRAY = new Set<string | null>([null]);

export const visualGenome: SourceKind = {
  kind: 'vg',
  family: 'vg',
  expects: 'a Visual Genome folder or its files: image_data, objects, attributes, relationships, region_descriptions, question_answers (.json, v1.0 or v1.2)',
  plan: (paths) => planByName('vg', paths, ROLES, ['image_data']),
  handler(file, ctx: HandlerContext) {
    const role = file.role;
    let checked = false;
    return {
      // Per-image elements are independent once image_data (read first) has set the COCO aliases.
      parallelKeys: role === 'image_data' ? undefined : TOP_LEVEL_ARRAY,
      onValue(v) {
        const el = v.value;
        if (v.key !== null || !isObject(el)) {
          throw new InstructifyError('E_WRONG_KIND', `Visual Genome ${role} files are a top-level array of per-image objects`, { file: file.path, offset: v.offset, source: ctx.source });
        }
        if (!checked) {
          checked = true;
          const want = role === 'image_data' ? 'width' : LIST_KEY[role]!;
          if (!(want in el)) {
            throw new InstructifyError('E_WRONG_KIND', `Visual Genome ${role} elements need the key "${want}"; the first element has ${keysOf(el)}`, { file: file.path, offset: v.offset, source: ctx.source });
          }
        }
        const id = imageIdOf(el);
        if (role === 'image_data') {
          const coco = num(el.coco_id);
          if (Number.isFinite(coco)) ctx.state.vgToCoco.set(id, coco);
          const f = emptyFragment(vgRef(id, ctx.state), ctx, file.path, v.offset);
          f.catalog = true;
          f.path = vgPathFromUrl(str(el.url), id);
          const w = num(el.width);
          const h = num(el.height);
          f.width = w > 0 ? w : null;
          f.height = h > 0 ? h : null;
          ctx.sink.emit(f);
          return;
        }
        const f = emptyFragment(vgRef(id, ctx.state), ctx, file.path, v.offset);
        const list = el[LIST_KEY[role]!];
        const items = Array.isArray(list) ? list.filter(isObject) : [];
        if (role === 'objects' || role === 'attributes') {
          for (const o of items) {
            const b = objectBox(o);
            if (Array.isArray(o.attributes)) {
              for (const a of o.attributes) if (typeof a === 'string' && a.trim()) b.attributes.push(a.trim());
            }
            f.boxes.push(b);
          }
        } else if (role === 'relationships') {
          for (const r of items) {
            if (!isObject(r.subject) || !isObject(r.object)) continue;
            const subject = objectBox(r.subject);
            const object = objectBox(r.object);
            const predicate = str(r.predicate)?.trim().toLowerCase();
            if (predicate && object.label) subject.relations.push(`${predicate} the ${object.label}`);
            f.boxes.push(subject, object);
          }
        } else if (role === 'region_descriptions') {
          for (const r of items) {
            const text = str(r.phrase)?.trim();
            if (text) f.regions.push({ text, x: num(r.x), y: num(r.y), w: num(r.width ?? r.w), h: num(r.height ?? r.h) });
          }
        } else if (role === 'question_answers') {
          for (const q of items) {
            const question = str(q.question)?.trim() ?? null;
            const answer = str(q.answer)?.trim() ?? null;
            if (question && answer) f.qa.push({ id: str(q.qa_id), question, answer, answers: [answer] });
          }
        }
        ctx.sink.emit(f);
      },
      finish() {},
    };
  },
};
