import { hashRef } from '../join/join.js';
import { rng } from '../util/random.js';
import indefinite from 'indefinite';
import { DEFAULT_UNCOUNTABLE, plural, singular, spoken } from '../tree/labels.js';
import type { ImageRecord } from '../types.js';
import { objectCounts } from '../tree/object-counts.js';
import { boxCentre, countSentence, positionPhrase } from './box-facts.js';
import type { LoopResult } from './loop.js';
import type { Turn } from './prompts.js';

/**
 * Conversations built from a record's facts alone, with no LLM: the
 * out-of-the-box generator and the "annotation adaption" baseline to compare
 * LLM output against. Every answer is read off the record; nothing is
 * guessed: an object is only said to be absent when a dataset says so
 * (LVIS's negative categories).
 */
export interface FactsOptions {
  seed: number;
  /** Turns per conversation of each kind, at most. */
  maxTurns: number;
}

const DESCRIBE = ['Describe the image briefly.', 'What does this picture show?', 'Give a short description of this photo.', 'What is in this image?', 'Summarise what you see.'];
const COUNT = (p: string) => [`How many ${p} are there?`, `How many ${p} can you see?`, `Count the ${p} in the picture.`];
const WHERE = (l: string) => [`Where is the ${l}?`, `Where in the image is the ${l}?`, `In which part of the picture is the ${l}?`];
const REFER = (e: string) => [`Where is the object described as "${e}"?`, `Find "${e}" in the image.`, `Where in the picture is "${e}"?`];
const IS_THERE = (l: string) => [`Is there ${indefinite(l)} in the image?`, `Can you see ${indefinite(l)}?`, `Does the picture show ${indefinite(l)}?`];

// Where things are, in words: shared with the boxes' own facts (box-facts.ts).
export { positionPhrase } from './box-facts.js';

function sentence(s: string): string {
  const t = s.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** VG predicates that read as "<subject> is <predicate> <object>" (a preposition or an -ing verb). */
const PREPOSITIONS = new Set(['on', 'in', 'at', 'near', 'behind', 'under', 'underneath', 'below', 'above', 'over', 'beside', 'by', 'with', 'inside', 'along', 'against', 'across', 'around', 'next', 'in front', 'on top', 'to', 'beneath', 'between', 'outside', 'within', 'atop', 'from', 'into', 'onto', 'up', 'down']);

/**
 * A VG relation as a sentence with its predicate: "The man is wearing the
 * hat.", "The cup is on the table.", "The man has the hat." Null when the
 * predicate makes no sentence ("the eye of the girl").
 */
export function relationSentence(subject: string, predicate: string, object: string): string | null {
  const p = predicate.trim().toLowerCase();
  const first = p.split(/\s+/)[0] ?? '';
  if (!p || first === 'of' || first === "'s") return null;
  // "is on", "are near", "is wearing": already a verb phrase.
  if (/^(is|are|was|were|has|have|had)\b/.test(p) || /s$/.test(first) && !PREPOSITIONS.has(first) && !/ss$/.test(first)) return `The ${subject} ${p} the ${object}.`;
  if (first.endsWith('ing') || PREPOSITIONS.has(first) || PREPOSITIONS.has(p.split(/\s+/).slice(0, 2).join(' '))) return `The ${subject} is ${p} the ${object}.`;
  return `The ${subject} ${p} the ${object}.`;
}

/** A dataset's question as a reader expects it: its first letter capital, nothing else touched. */
function capitalised(q: string): string {
  const t = q.trim();
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export function factConversations(rec: ImageRecord, o: FactsOptions): LoopResult[] {
  const random = rng((hashRef(`facts\u0000${o.seed}\u0000${rec.image}`) ^ o.seed) >>> 0);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const info = [...rec.captions, ...(rec.facts ?? [])].map((c) => c.text);
  const results: LoopResult[] = [];
  const add = (promptType: string, turns: Turn[]) => {
    // One question once per conversation: two VG relations or two QA pairs may ask the same.
    const asked = new Set<string>();
    const unique = turns.filter((t) => !asked.has(t.question) && asked.add(t.question));
    if (unique.length) results.push({ promptType, input: info, turns: unique.slice(0, o.maxTurns), removed: [] });
  };

  if (rec.captions.length) add('facts-describe', [{ question: pick(DESCRIBE), answer: sentence(pick(rec.captions).text) }]);

  // Counts are the annotations' (one object seen by two datasets once), never the tree's merges.
  const counts = objectCounts(rec.boxes, rec.uncounted);
  if (counts.length) {
    add(
      'facts-count',
      counts
        // Kinds people do not count one by one (grass, sky, trees in a forest) get no count question.
        .filter((c) => !DEFAULT_UNCOUNTABLE.includes(c.label))
        .map((c) => ({ question: pick(COUNT(plural(c.label))), answer: countSentence(c) })),
    );
    // Where: only for objects that are the one of their kind, so "the X" is unambiguous.
    add(
      'facts-where',
      counts.filter((c) => c.only).map((c) => ({ question: pick(WHERE(c.label)), answer: `The ${c.label} is ${positionPhrase(boxCentre(c.only!))}.` })),
    );
    add(
      'facts-is-there',
      counts.map((c) => ({
        question: pick(IS_THERE(c.label)),
        answer: c.count + (c.crowd ? 2 : 0) > 1 ? `Yes, there are ${plural(c.label)} in the image.` : `Yes, there is ${indefinite(c.label)} in the image.`,
      })),
    );
  }

  // Referring expressions (RefCOCO, RefCOCO+, RefCOCOg) describe one object: they ground it, they are never counted.
  const refers = rec.boxes.filter((b) => /^refcoco/.test(b.source) && b.label.trim());
  if (refers.length) {
    add(
      'facts-refer',
      refers.map((b) => ({
        question: pick(REFER(b.label.trim().replace(/[.!?]+$/, ''))),
        answer: `It is ${positionPhrase(boxCentre(b))}, at [${[b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(2)).join(', ')}] (x1, y1, x2, y2, 0 to 1 from the top left).`,
      })),
    );
  }

  // "No" only where a dataset says so (LVIS negative categories).
  if (rec.absent?.length) {
    add(
      'facts-is-not-there',
      rec.absent.map(spoken).map((l) => ({ question: pick(IS_THERE(l)), answer: `No, there is no ${l} in the image.` })),
    );
  }

  // The dataset's answer as it is (OCR text is case-sensitive: "ec-agg" stays "ec-agg").
  if (rec.qa.length) add('facts-qa', rec.qa.map((q) => ({ question: capitalised(q.question), answer: verbatimAnswer(q.answer) })));

  if (rec.regions.length) {
    const f = (v: number) => v.toFixed(2);
    add(
      'facts-region',
      rec.regions.map((r) => ({ question: `Describe the region [${f(r.x1)}, ${f(r.y1)}, ${f(r.x2)}, ${f(r.y2)}] of the image (x1, y1, x2, y2, 0 to 1 from the top left).`, answer: sentence(r.text.charAt(0).toUpperCase() + r.text.slice(1)) })),
    );
  }

  const relations = rec.boxes.flatMap((b) =>
    b.relations.map((rel) => {
      const m = /^(.*?)\s+the\s+(.+)$/.exec(rel);
      if (!m) return null;
      const subject = spoken(b.label);
      const object = spoken(m[2]!);
      // An object related to itself ("the curtains and the curtains") says nothing.
      if (singular(subject.toLowerCase()) === singular(object.toLowerCase())) return null;
      const answer = relationSentence(subject, m[1]!, object);
      return answer ? { question: `How are the ${subject} and the ${object} related?`, answer } : null;
    }),
  );
  const rels = relations.filter((r): r is NonNullable<typeof r> => r !== null);
  if (rels.length) add('facts-relation', rels);
  return results;
}

/** A short answer stays as written; a sentence gets its full stop. Its own characters never change. */
function verbatimAnswer(a: string): string {
  const t = a.trim();
  return t.split(/\s+/).length > 3 ? sentence(t) : t;
}
