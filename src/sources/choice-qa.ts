import pluralize from 'pluralize';
import { planAsGiven } from './files.js';
import { fragmentForPath, recordHandler, sentence, strings, withDistractors } from './records.js';
import { vgRef } from './visual-genome.js';
import { emptyFragment, isObject, num, rawBox, str, type SourceKind } from './types.js';

/**
 * Visual7W (`dataset_v7w_telling.json`, `dataset_v7w_pointing.json`) over
 * Visual Genome images (`v7w_<id>.jpg`): each question's answer is followed
 * by its three wrong choices as "(not ...)"; the pointing set's named boxes
 * (pixels, VG's space) become boxes.
 */
export const visual7w: SourceKind = {
  kind: 'visual7w',
  family: 'vg',
  expects: 'dataset_v7w_telling.json and/or dataset_v7w_pointing.json',
  plan: async (paths) => planAsGiven(paths, 'visual7w'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'Visual7W',
      arrayKey: 'images',
      required: ['image_id', 'qa_pairs'],
      onRecord(el, v) {
        const id = num(el.image_id);
        const f = emptyFragment(vgRef(id, ctx.state), ctx, file.path, v.offset);
        f.path = str(el.filename) ?? `v7w_${id}.jpg`;
        const boxNames = new Map<string, string>();
        for (const b of Array.isArray(el.boxes) ? el.boxes.filter(isObject) : []) {
          const name = str(b.name)?.trim();
          if (!name) continue;
          boxNames.set(str(b.box_id) ?? '', name);
          const box = rawBox(name, num(b.x), num(b.y), num(b.width), num(b.height));
          box.sourceId = str(b.box_id);
          f.boxes.push(box);
        }
        for (const qa of Array.isArray(el.qa_pairs) ? el.qa_pairs.filter(isObject) : []) {
          const question = str(qa.question)?.trim();
          // Pointing answers are box ids: say the box's name.
          const answerRaw = str(qa.answer)?.trim();
          const answer = answerRaw !== undefined ? (boxNames.get(answerRaw) ?? answerRaw) : undefined;
          if (!question || !answer) continue;
          const choices = (Array.isArray(qa.multiple_choices) ? qa.multiple_choices : []).map(str).filter((c): c is string => !!c && c.trim() !== '');
          const wrong = choices.map((c) => boxNames.get(c.trim()) ?? c.trim());
          f.qa.push({ id: str(qa.qa_id), question, answer: withDistractors(answer, wrong), answers: [answer] });
        }
        if (f.qa.length || f.boxes.length) ctx.sink.emit(f);
      },
    }),
};

const COUNT_QUESTION = /^how many (.+?)(?:\s+(?:are|is|were|was|can|could|do|does|did|in|on|at|there|visible|shown|pictured|present|seen|have|has)\b.*)?\s*\??$/i;

/** "How many dogs are in the picture?" + 3 -> "There are 3 dogs." (null when the question is not of that shape). */
export function countStatement(question: string, n: number): string | null {
  const m = COUNT_QUESTION.exec(question.trim());
  if (!m || !Number.isInteger(n) || n < 0) return null;
  const noun = m[1]!.trim().replace(/[?.]$/, '');
  if (!noun) return null;
  if (n === 0) return `There are no ${noun}.`;
  if (n === 1) return `There is one ${pluralize.singular(noun)}.`;
  return `There are ${n} ${noun}.`;
}

/**
 * TallyQA (`train.json`, `test.json`: top-level arrays) over COCO and
 * Visual Genome images, named by path: each counting question is kept and
 * also stated ("There are 3 dogs.").
 */
export const tallyqa: SourceKind = {
  kind: 'tallyqa',
  family: 'tallyqa',
  expects: 'TallyQA train.json / test.json (image, question, answer)',
  plan: async (paths) => planAsGiven(paths, 'tallyqa'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'TallyQA',
      arrayKey: null,
      required: ['image', 'question', 'answer'],
      onRecord(el, v) {
        const image = str(el.image);
        const question = str(el.question)?.trim();
        const n = num(el.answer);
        if (!image || !question || !Number.isFinite(n)) {
          ctx.sink.reject({ reason: 'bad-record', detail: `TallyQA record ${v.index}: needs image, question and a numeric answer`, source: ctx.source, file: file.path, offset: v.offset, image: image ?? null });
          return;
        }
        const f = fragmentForPath(image, 'tallyqa', ctx, file.path, v.offset);
        f.qa.push({ id: str(el.question_id), question, answer: String(n), answers: [String(n)] });
        const stated = countStatement(question, n);
        if (stated) f.facts.push(stated);
        ctx.sink.emit(f);
      },
    }),
};

/**
 * ScienceQA (`problems.json`: an object keyed by problem id; images at
 * `<split>/<id>/image.png`): the right choice with the others as
 * "(not ...)"; the hint (context) and the solution are facts. Problems
 * without an image are skipped; the lectures (general background, not
 * about the image) are left out.
 */
export const scienceqa: SourceKind = {
  kind: 'scienceqa',
  family: 'scienceqa',
  expects: 'ScienceQA problems.json (question, choices, answer, hint, image, split, solution)',
  plan: async (paths) => planAsGiven(paths, 'scienceqa'),
  handler: (file, ctx) =>
    recordHandler(file, ctx, {
      what: 'ScienceQA',
      objectOfRecords: true,
      required: ['question', 'choices', 'answer'],
      onRecord(el, v) {
        if (!str(el.image)) return;
        const split = str(el.split) ?? 'train';
        const rel = `${split}/${v.key}/${str(el.image)}`;
        const f = emptyFragment(`scienceqa:${rel}`, ctx, file.path, v.offset);
        f.path = rel;
        const choices = strings(el.choices);
        const idx = num(el.answer);
        const question = str(el.question)?.trim();
        if (question && choices[idx]) f.qa.push({ id: v.key, question, answer: withDistractors(choices[idx]!, choices.filter((_, i) => i !== idx)), answers: [choices[idx]!] });
        const hint = str(el.hint)?.trim();
        if (hint) f.facts.push(sentence(hint));
        const solution = str(el.solution)?.trim();
        if (solution) f.facts.push(...solution.split(/\n+/).map((s) => s.trim()).filter(Boolean).map(sentence));
        if (f.qa.length) ctx.sink.emit(f);
      },
    }),
};

/**
 * Document and chart QA: DocVQA (`{data: [{question, answers, image:
 * "documents/x.png"}]}`), InfographicVQA (`image_local_name`, under
 * `infographicsvqa_images/`), ChartQA (`[{imgname, query, label}]`, under
 * `png/`). Each image is its own (no aliases); sizes come from the files.
 */
function docQa(kind: string, what: string, expects: string, pick: (el: Record<string, unknown>) => { image: string | null; question: string | null; answers: string[] }, required: string[]): SourceKind {
  return {
    kind,
    family: kind,
    expects,
    plan: async (paths) => planAsGiven(paths, kind),
    handler: (file, ctx) =>
      recordHandler(file, ctx, {
        what,
        arrayKey: [null, 'data'],
        skipKeys: ['dataset_name', 'dataset_split', 'dataset_version'],
        required,
        onRecord(el, v) {
          const { image, question, answers } = pick(el);
          if (!image || !question || !answers.length) {
            ctx.sink.reject({ reason: 'bad-record', detail: `${what} record ${v.index}: needs an image, a question and an answer`, source: ctx.source, file: file.path, offset: v.offset, image });
            return;
          }
          const f = emptyFragment(`${kind}:${image}`, ctx, file.path, v.offset);
          f.path = image;
          f.qa.push({ id: str(el.questionId) ?? str(el.question_id) ?? String(v.index), question, answer: answers[0]!, answers });
          ctx.sink.emit(f);
        },
      }),
  };
}

export const docvqa = docQa('docvqa', 'DocVQA', 'DocVQA {train,val}_v1.0*.json (questionId, question, image, answers)', (el) => ({ image: str(el.image), question: str(el.question)?.trim() ?? null, answers: strings(el.answers) }), ['question', 'image', 'answers']);
export const infovqa = docQa(
  'infovqa',
  'InfographicVQA',
  'infographicsVQA_{train,val}_v1.0*.json (questionId, question, image_local_name, answers)',
  (el) => ({ image: str(el.image_local_name) ? `infographicsvqa_images/${str(el.image_local_name)}` : null, question: str(el.question)?.trim() ?? null, answers: strings(el.answers) }),
  ['question', 'image_local_name', 'answers'],
);
export const chartqa = docQa(
  'chartqa',
  'ChartQA',
  'ChartQA {train,val,test}_{human,augmented}.json (imgname, query, label)',
  (el) => ({ image: str(el.imgname) ? `png/${str(el.imgname)}` : null, question: str(el.query)?.trim() ?? null, answers: strings(str(el.label) ?? undefined) }),
  ['imgname', 'query', 'label'],
);
