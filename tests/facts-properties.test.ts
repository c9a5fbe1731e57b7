import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pluralize from 'pluralize';
import { factConversations } from '../src/generate/facts.js';
import { spoken } from '../src/tree/labels.js';
import type { LoopResult } from '../src/generate/loop.js';
import type { SourceSpec } from '../src/prepare/prepare.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, GQA_QUESTIONS, GQA_SCENES, ROOT, VG_DIR, VQA_ANNOTATIONS, VQA_QUESTIONS, readJsonlShards, runPrepare } from './helpers.js';

/**
 * The facts generator's output is training data and the information the
 * LLM loop checks against: every statement in it must be true to the
 * annotations. These are properties over every conversation made from the
 * real slices in ../shared/data, alone and joined, with the truth read from
 * the annotation files directly (not through the pipeline).
 */
const coco = [
  { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
  { kind: 'coco-instances', paths: [COCO_INSTANCES] },
];
const vg = [{ kind: 'vg', paths: [VG_DIR] }];
const vqa = [{ kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] }];
const gqa = [{ kind: 'gqa', paths: [GQA_QUESTIONS, GQA_SCENES] }];
const fixture = (name: string) => path.join(ROOT, 'tests', 'fixtures', name);
// Files written from each format's documentation, through the same properties.
const lvis = [{ kind: 'lvis', paths: [fixture('lvis_v1_qualified_from_format_docs.json')] }];
const refcoco = [{ kind: 'refcoco', paths: [fixture('sources/refcoco_refs_unc_from_format_docs.json'), fixture('sources/refcoco_instances_from_format_docs.json')] }];
const SETS: Record<string, SourceSpec[]> = {
  coco,
  vg,
  vqa,
  gqa,
  joined: [...coco, ...vg, ...vqa, ...gqa],
  'lvis (from format docs)': [...coco, ...lvis],
  'refcoco (from format docs)': [...coco, ...refcoco],
};

const single = (l: string) => pluralize.singular(l.toLowerCase().trim());

/** Per COCO file name and category: non-crowd annotations, and whether a crowd region was annotated. */
function cocoTruth(): Map<string, Map<string, { n: number; crowd: boolean }>> {
  const j = JSON.parse(readFileSync(COCO_INSTANCES, 'utf8')) as {
    images: { id: number; file_name: string }[];
    categories: { id: number; name: string }[];
    annotations: { image_id: number; category_id: number; iscrowd: number }[];
  };
  const names = new Map(j.categories.map((c) => [c.id, single(c.name)]));
  const files = new Map(j.images.map((i) => [i.id, i.file_name]));
  const out = new Map<string, Map<string, { n: number; crowd: boolean }>>();
  for (const a of j.annotations) {
    const per = out.get(files.get(a.image_id)!) ?? out.set(files.get(a.image_id)!, new Map()).get(files.get(a.image_id)!)!;
    const e = per.get(names.get(a.category_id)!) ?? { n: 0, crowd: false };
    if (a.iscrowd) e.crowd = true;
    else e.n++;
    per.set(names.get(a.category_id)!, e);
  }
  return out;
}

/** Per VG image id: objects (distinct object ids) by singular first name. */
function vgTruth(): Map<number, Map<string, number>> {
  const j = JSON.parse(readFileSync(path.join(VG_DIR, 'objects.json'), 'utf8')) as { image_id: number; objects: { object_id: number; names: string[] }[] }[];
  const out = new Map<number, Map<string, number>>();
  for (const im of j) {
    const per = new Map<string, number>();
    const ids = new Set<number>();
    for (const o of im.objects) {
      if (ids.has(o.object_id) || !o.names[0]) continue;
      ids.add(o.object_id);
      per.set(single(o.names[0]), (per.get(single(o.names[0])) ?? 0) + 1);
    }
    out.set(im.image_id, per);
  }
  return out;
}

/** The count sentence for people of a COCO image, from the annotations directly. */
function cocoPeople(file: string): string {
  const e = cocoTruth().get(file)?.get('person');
  if (!e) return 'none';
  return e.crowd ? 'There are many people.' : e.n === 1 ? 'There is one person.' : `There are ${e.n} people.`;
}

const made: Record<string, { rec: ImageRecord; convs: LoopResult[] }[]> = {};
beforeAll(async () => {
  for (const [name, sources] of Object.entries(SETS)) {
    const { result, out } = await runPrepare({ sources, format: 'jsonl' });
    const records = await readJsonlShards<ImageRecord>(out, result);
    made[name] = records.map((rec) => ({ rec, convs: factConversations(rec, { seed: 1, maxTurns: 100 }) }));
  }
});

const COUNT = /^There (?:is one (.+)|are (\d+) (.+)|are many (.+)|is a group of (.+))\.$/;

describe('facts conversations are true to the annotations', () => {
  it.each(Object.keys(SETS))('%s: every count equals the non-crowd annotations of a category; crowds get no number', (name) => {
    const cocoCounts = cocoTruth();
    const vgCounts = vgTruth();
    let checked = 0;
    for (const { rec, convs } of made[name]!) {
      // Box labels as text says them (LVIS's "beef (food)" is counted as "beef").
      const categories = new Set(rec.boxes.filter((b) => !/^refcoco/.test(b.source)).map((b) => single(spoken(b.label))));
      for (const c of convs.filter((x) => x.promptType === 'facts-count')) {
        for (const t of c.turns) {
          const m = COUNT.exec(t.answer);
          expect(m, t.answer).not.toBeNull();
          const label = single(m![1] ?? m![3] ?? m![4] ?? m![5]!);
          // Every counted noun is a category of the record, and the question asks for that noun.
          expect(categories.has(label), `${rec.image}: ${label}`).toBe(true);
          expect(t.question).toMatch(new RegExp(`\\b${pluralize.plural(label).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`));
          const said = m![1] ? 1 : m![2] ? Number(m![2]) : null;
          const cocoTruthOf = cocoCounts.get(rec.image)?.get(label);
          const vgId = /^vg:(\d+)$/.exec(rec.ref)?.[1];
          const vgTruthOf = vgId ? vgCounts.get(Number(vgId))?.get(label) : undefined;
          if (name === 'coco' && cocoTruthOf) {
            if (cocoTruthOf.crowd) expect(said, `${rec.image} ${label}: a crowd has no number`).toBeNull();
            else expect(said, `${rec.image} ${label}`).toBe(cocoTruthOf.n);
            checked++;
          }
          if (name === 'vg' && vgTruthOf !== undefined) {
            expect(said, `${rec.image} ${label}`).toBe(vgTruthOf);
            checked++;
          }
        }
      }
    }
    if (name === 'coco') expect(checked).toBeGreaterThan(150);
    if (name === 'vg') expect(checked).toBeGreaterThan(20);
  });

  it('LVIS from its format docs: qualified names never in text, 2 glasses counted, the orange (not exhaustive) never counted, negatives said absent', () => {
    const { rec, convs } = made['lvis (from format docs)']!.find((x) => x.rec.image === '000000397133.jpg')!;
    const text = convs.flatMap((c) => c.turns.flatMap((t) => [t.question, t.answer]));
    expect(text.join('\n')).not.toMatch(/\((food|drink container|bread|fruit)\)/);
    expect(rec.tree).not.toMatch(/\((food|drink container|bread|fruit)\)/);
    expect(text).toContain('There are 2 glasses.');
    expect(text.filter((t) => /orange/.test(t))).toEqual([]);
    expect(rec.tree).not.toMatch(/^oranges?: /m);
    expect(text).toContain('No, there is no pita in the image.');
    expect(text.some((t) => /\bno apple\b/.test(t))).toBe(true);
  });

  it('RefCOCO from its format docs: expressions ground their objects, never counted; the category counted once', () => {
    const { rec, convs } = made['refcoco (from format docs)']!.find((x) => x.rec.image === '000000397133.jpg')!;
    const counts = convs.find((c) => c.promptType === 'facts-count')!.turns;
    expect(counts.some((t) => /Man in white|guy on the right|knife on left/i.test(t.question))).toBe(false);
    const people = counts.find((t) => /people/.test(t.question))!;
    expect(people.answer).toBe(cocoPeople(rec.image));
    expect(convs.find((c) => c.promptType === 'facts-refer')!.turns.length).toBeGreaterThanOrEqual(3);
  });

  it('COCO 160012 has two pizzas, however the tree merged them', () => {
    const { rec, convs } = made.coco!.find((x) => x.rec.image === '000000160012.jpg')!;
    expect(rec.tree).toContain('pizza');
    const pizzas = convs.find((c) => c.promptType === 'facts-count')!.turns.find((t) => /pizzas/.test(t.question))!;
    expect(pizzas.answer).toBe('There are 2 pizzas.');
  });

  it.each(Object.keys(SETS))('%s: right articles, no qualifier in parentheses, no tokeniser spacing, no question twice, capitalised questions', (name) => {
    let turns = 0;
    for (const { rec, convs } of made[name]!) {
      for (const c of convs) {
        const questions = c.turns.map((t) => t.question);
        expect(new Set(questions).size, `${rec.image} ${c.promptType}`).toBe(questions.length);
        for (const t of c.turns) {
          turns++;
          // A dataset's own answer is verbatim, its article mistakes included ("In a office."): the rest is ours.
          const ours = c.promptType === 'facts-qa' || c.promptType === 'facts-describe' || c.promptType === 'facts-region' ? [t.question] : [t.question, t.answer];
          for (const text of ours) {
            expect(text, 'a before a vowel').not.toMatch(/\ba (?:[aio]|e(?!u)|u(?:n[aeiou]|nin|nde|mbr|ncl|pp|rn|s[^eu]))/i);
            expect(text, 'an before a consonant').not.toMatch(/\ban (?![aeiou]|h(?:our|onest|eir|onor))[a-z]/i);
            expect(text, 'qualifier').not.toMatch(/\w \([a-z ]+\)/);
            expect(text, 'tokeniser spacing').not.toMatch(/\w [,.?!;:](?:\s|$)|\w - \w/);
          }
          expect(t.question.charAt(0), t.question).toMatch(/[A-Z<]/);
        }
      }
    }
    expect(turns).toBeGreaterThan(40);
  });

  it('dataset answers are verbatim: a short answer keeps its own characters, case included', () => {
    for (const name of ['vqa', 'gqa', 'vg', 'joined']) {
      for (const { rec, convs } of made[name]!) {
        for (const t of convs.find((c) => c.promptType === 'facts-qa')?.turns ?? []) {
          expect(rec.qa.some((q) => t.answer === q.answer.trim() || t.answer === `${q.answer.trim()}.`), t.answer).toBe(true);
        }
      }
    }
  });

  it('relations are sentences with their predicate, never an object with itself', () => {
    let n = 0;
    for (const name of ['vg', 'gqa', 'joined']) {
      for (const { convs } of made[name]!) {
        for (const t of convs.find((c) => c.promptType === 'facts-relation')?.turns ?? []) {
          n++;
          const m = /^How are the (.+) and the (.+) related\?$/.exec(t.question)!;
          expect(single(m[1]!)).not.toBe(single(m[2]!));
          // A subject, a verb (is/are/has/wears ...) and the object: "The man is wearing the hat."
          expect(t.answer).toMatch(new RegExp(`^The ${m[1]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (?:is |are )?\\S.* the ${m[2]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.$`));
          expect(t.answer).not.toMatch(/^The \S+ (?:on|in|near|behind|under|above|with|by) /);
        }
      }
    }
    expect(n).toBeGreaterThan(10);
  });
});
