import { cocoRef } from './coco.js';
import { planAsGiven } from './files.js';
import { recordHandler, sentence, strings, withDistractors } from './records.js';
import { cocoFileName, mostCommon, vqav2 } from './vqa.js';
import { emptyFragment, isObject, num, str, type SourceKind } from './types.js';

/** OK-VQA ships in VQA v2's own format (questions + annotations files over COCO 2014 images). */
export const okvqa: SourceKind = {
  ...vqav2,
  kind: 'okvqa',
  expects: 'OK-VQA OpenEnded_mscoco_*_questions.json and mscoco_*_annotations.json (VQA v2 format)',
};

/**
 * A-OKVQA (`aokvqa_v1p0_*.json`, a top-level array over COCO 2017 images):
 * the correct choice is the answer, the other choices follow it as
 * "(not ...)"; the ten direct answers are kept; each rationale is a fact.
 */
export const aokvqa: SourceKind = {
  kind: 'aokvqa',
  family: 'coco',
  expects: 'aokvqa_v1p0_{train,val,test}.json (question, choices, correct_choice_idx, direct_answers, rationales)',
  plan: async (paths) => planAsGiven(paths, 'aokvqa'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'A-OKVQA',
      arrayKey: null,
      required: ['image_id', 'question', 'choices'],
      onRecord(el, v) {
        const f = emptyFragment(cocoRef(num(el.image_id)), ctx, file.path, v.offset);
        const choices = strings(el.choices);
        const idx = num(el.correct_choice_idx);
        const question = str(el.question)?.trim();
        // The test split has no answers: its rationales and choices alone say nothing true.
        if (question && Number.isInteger(idx) && choices[idx]) {
          const direct = strings(el.direct_answers);
          f.qa.push({ id: str(el.question_id), question, answer: withDistractors(choices[idx]!, choices.filter((_, i) => i !== idx)), answers: direct });
          for (const r of strings(el.rationales)) f.facts.push(sentence(r));
          ctx.sink.emit(f);
        }
      },
    }),
};

/**
 * VQA-E (`VQA-E_{train,val}_set.json`): VQA v2 questions over COCO 2014
 * images with an explanation of each answer, kept as a fact.
 */
export const vqaE: SourceKind = {
  kind: 'vqa-e',
  family: 'coco',
  expects: 'VQA-E_{train,val}_set.json (img_id, question, multiple_choice_answer, answers, explanation)',
  plan: async (paths) => planAsGiven(paths, 'vqa-e'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'VQA-E',
      arrayKey: null,
      required: ['img_id', 'question', 'explanation'],
      onRecord(el, v) {
        const id = num(el.img_id);
        const f = emptyFragment(cocoRef(id), ctx, file.path, v.offset);
        if (ctx.cocoNaming === '2014') f.path = cocoFileName(id, '2014', /val/i.test(file.path) ? 'val2014' : 'train2014');
        const answers = strings(el.answers);
        const answer = str(el.multiple_choice_answer)?.trim() || mostCommon(answers);
        const question = str(el.question)?.trim();
        if (question && answer) f.qa.push({ id: str(el.q_id) ?? str(el.question_id), question, answer, answers });
        // [text, score] in the published files; a plain string is taken too.
        const ex = Array.isArray(el.explanation) ? el.explanation[0] : isObject(el.explanation) ? el.explanation.text : el.explanation;
        if (typeof ex === 'string' && ex.trim()) f.facts.push(sentence(ex.charAt(0).toUpperCase() + ex.trim().slice(1)));
        if (f.qa.length || f.facts.length) ctx.sink.emit(f);
      },
    }),
};
