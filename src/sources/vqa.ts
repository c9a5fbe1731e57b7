import { InstructifyError } from '../errors.js';
import { cocoRef } from './coco.js';
import { planAsGiven } from './files.js';
import { emptyFragment, isObject, keysOf, num, str, type SourceKind } from './types.js';

/** The answer given most often; ties go to the one that came first. */
export function mostCommon(answers: string[]): string | null {
  const counts = new Map<string, number>();
  let best: string | null = null;
  let bestCount = 0;
  for (const a of answers) {
    const c = (counts.get(a) ?? 0) + 1;
    counts.set(a, c);
    if (c > bestCount) {
      best = a;
      bestCount = c;
    }
  }
  return best;
}

/** COCO file name for an image id, in the 2014 (`COCO_val2014_…`) or 2017 (`000…`) naming. */
export function cocoFileName(id: number, naming: '2014' | '2017', subtype: string | null): string {
  const padded = String(id).padStart(12, '0');
  return naming === '2014' && subtype ? `${subtype}/COCO_${subtype}_${padded}.jpg` : `${padded}.jpg`;
}

/**
 * VQA v2: a questions file and an annotations file, told apart by content.
 * Questions and answers are emitted separately, keyed by question id; the
 * assembler pairs them, so neither file is held in memory.
 */
export const vqav2: SourceKind = {
  kind: 'vqav2',
  family: 'coco',
  expects: 'VQA v2 questions (v2_OpenEnded_mscoco_*_questions.json) and annotations (v2_mscoco_*_annotations.json)',
  plan: async (paths) => planAsGiven(paths, 'auto'),
  handler(file, ctx) {
    let subtype: string | null = null;
    const seen = new Set<string>();
    return {
      skipKeys: new Set(['info', 'license']),
      onValue(v) {
        if (v.key === null) {
          throw new InstructifyError('E_WRONG_KIND', 'VQA v2 files are a JSON object with "questions" or "annotations"', { file: file.path, source: ctx.source });
        }
        seen.add(v.key);
        const el = v.value;
        if (v.key === 'data_subtype' && typeof el === 'string') subtype = el;
        if (v.key !== 'questions' && v.key !== 'annotations') return;
        if (!isObject(el) || !('question_id' in el) || (v.key === 'questions' ? !('question' in el) : !('answers' in el))) {
          throw new InstructifyError(
            'E_WRONG_KIND',
            `VQA v2 ${v.key} need keys question_id and ${v.key === 'questions' ? 'question' : 'answers'}; element ${v.index} has ${keysOf(el)}`,
            { file: file.path, offset: v.offset, source: ctx.source },
          );
        }
        const id = num(el.image_id);
        const f = emptyFragment(cocoRef(id), ctx, file.path, v.offset);
        if (ctx.cocoNaming === '2014' && subtype) f.path = cocoFileName(id, '2014', subtype);
        if (v.key === 'questions') {
          f.qa.push({ id: str(el.question_id), question: str(el.question)?.trim() ?? null, answer: null, answers: [] });
        } else {
          const answers = (Array.isArray(el.answers) ? el.answers : [])
            .map((a) => (isObject(a) ? str(a.answer) : str(a)))
            .filter((a): a is string => a !== null)
            .map((a) => a.trim());
          const answer = str(el.multiple_choice_answer)?.trim() || mostCommon(answers);
          f.qa.push({ id: str(el.question_id), question: null, answer, answers });
        }
        ctx.sink.emit(f);
      },
      finish() {
        if (!seen.has('questions') && !seen.has('annotations')) {
          throw new InstructifyError('E_WRONG_KIND', `a VQA v2 file needs a "questions" or "annotations" key; found ${[...seen].join(', ') || 'none'}`, {
            file: file.path,
            source: ctx.source,
          });
        }
      },
    };
  },
};
