import { InstructifyError } from '../errors.js';
import { planAsGiven } from './files.js';
import { emptyFragment, isObject, keysOf, num, rawBox, str, type SourceKind } from './types.js';
import { vgRef } from './visual-genome.js';

/**
 * GQA: questions (an object keyed by question id) and scene graphs (an
 * object keyed by image id, objects keyed by object id). Which file is which
 * is told by content. Image ids are Visual Genome ids.
 */
export const gqa: SourceKind = {
  kind: 'gqa',
  family: 'vg',
  expects: 'GQA questions (*_questions.json) and/or scene graphs (*_sceneGraphs.json), in any order',
  plan: async (paths) => planAsGiven(paths, 'auto'),
  handler(file, ctx) {
    let role: 'questions' | 'scene_graphs' | null = null;
    return {
      onValue(v) {
        const el = v.value;
        if (v.key === null || !isObject(el)) {
          throw new InstructifyError('E_WRONG_KIND', 'GQA files are a JSON object keyed by question id or image id', { file: file.path, offset: v.offset, source: ctx.source });
        }
        if (role === null) {
          if ('question' in el && 'imageId' in el) role = 'questions';
          else if ('objects' in el) role = 'scene_graphs';
          else {
            throw new InstructifyError('E_WRONG_KIND', `expected GQA questions (imageId, question, answer) or scene graphs (width, height, objects); the first entry "${v.key}" has ${keysOf(el)}`, {
              file: file.path,
              offset: v.offset,
              source: ctx.source,
            });
          }
        }
        if (role === 'questions') {
          const f = emptyFragment(vgRef(num(el.imageId), ctx.state), ctx, file.path, v.offset);
          const question = str(el.question)?.trim();
          const answer = str(el.answer)?.trim();
          const full = str(el.fullAnswer)?.trim();
          if (question && answer) {
            f.qa.push({ id: v.key, question, answer, answers: full && full !== answer ? [answer, full] : [answer] });
            ctx.sink.emit(f);
          }
          return;
        }
        const f = emptyFragment(vgRef(num(v.key), ctx.state), ctx, file.path, v.offset);
        const w = num(el.width);
        const h = num(el.height);
        f.width = w > 0 ? w : null;
        f.height = h > 0 ? h : null;
        const objects = isObject(el.objects) ? el.objects : {};
        for (const [oid, o] of Object.entries(objects)) {
          if (!isObject(o)) continue;
          const b = rawBox(str(o.name)?.trim() ?? null, num(o.x), num(o.y), num(o.w), num(o.h));
          b.sourceId = oid;
          if (Array.isArray(o.attributes)) for (const a of o.attributes) if (typeof a === 'string' && a.trim()) b.attributes.push(a.trim());
          if (Array.isArray(o.relations)) {
            for (const r of o.relations) {
              if (!isObject(r)) continue;
              const target = objects[str(r.object) ?? ''];
              const targetName = isObject(target) ? str(target.name) : null;
              const rel = str(r.name)?.trim();
              if (rel && targetName) b.relations.push(`${rel} the ${targetName.trim()}`);
            }
          }
          f.boxes.push(b);
        }
        ctx.sink.emit(f);
      },
      finish() {
        if (role === null) throw new InstructifyError('E_WRONG_KIND', 'GQA file has no entries', { file: file.path, source: ctx.source });
      },
    };
  },
};
