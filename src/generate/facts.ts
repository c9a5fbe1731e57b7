import { hashRef } from '../join.js';
import { rng } from '../synthetic.js';
import { countWord, DEFAULT_UNCOUNTABLE, plural, singular } from '../tree/labels.js';
import type { ImageRecord, TreeNodeRow } from '../types.js';
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
const IS_THERE = (l: string) => [`Is there a ${l} in the image?`, `Can you see a ${l}?`, `Does the picture show a ${l}?`];

function horizontal(cx: number): string {
  return cx < 1 / 3 ? 'on the left' : cx > 2 / 3 ? 'on the right' : 'in the middle';
}

function vertical(cy: number): string {
  // The tree's Y points up: 0 is the bottom.
  return cy > 2 / 3 ? 'near the top' : cy < 1 / 3 ? 'near the bottom' : 'halfway up';
}

export function positionPhrase(n: Pick<TreeNodeRow, 'cx' | 'cy'>): string {
  const h = horizontal(n.cx);
  const v = vertical(n.cy);
  return h === 'in the middle' && v === 'halfway up' ? 'in the centre of the image' : `${h} of the image, ${v}`;
}

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

function sentence(s: string): string {
  const t = s.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

export function factConversations(rec: ImageRecord, o: FactsOptions): LoopResult[] {
  const random = rng((hashRef(`facts\u0000${o.seed}\u0000${rec.image}`) ^ o.seed) >>> 0);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const info = [...rec.captions, ...(rec.facts ?? [])].map((c) => c.text);
  const results: LoopResult[] = [];
  const add = (promptType: string, turns: Turn[]) => {
    if (turns.length) results.push({ promptType, input: info, turns: turns.slice(0, o.maxTurns), removed: [] });
  };

  if (rec.captions.length) add('facts-describe', [{ question: pick(DESCRIBE), answer: sentence(pick(rec.captions).text) }]);

  const nodes = rec.treeNodes;
  if (nodes.length) {
    // Counts as the tree's footer counts them: one per merged object, by singular label.
    const counts = new Map<string, number>();
    for (const n of nodes) counts.set(singular(n.labels[0]!), (counts.get(singular(n.labels[0]!)) ?? 0) + 1);
    const labels = [...counts.keys()].sort();
    add(
      'facts-count',
      labels.map((l) => {
        const n = counts.get(l)!;
        const word = countWord(n, l, 8, DEFAULT_UNCOUNTABLE);
        const answer = n === 1 ? `There is one ${l}.` : word === String(n) ? `There are ${n} ${plural(l)}.` : `There are ${word} ${plural(l)}.`;
        return { question: pick(COUNT(plural(l))), answer };
      }),
    );
    // Where: only for objects that are the one of their kind, so "the X" is unambiguous.
    add(
      'facts-where',
      nodes
        .filter((n) => counts.get(singular(n.labels[0]!)) === 1)
        .map((n) => ({ question: pick(WHERE(n.labels[0]!)), answer: `The ${n.labels[0]} is ${positionPhrase(n)}.` })),
    );
    add(
      'facts-is-there',
      labels.map((l) => ({ question: pick(IS_THERE(l)), answer: `Yes, there ${counts.get(l)! > 1 ? `are ${plural(l)}` : `is ${article(l)} ${l}`} in the image.` })),
    );
  }

  // "No" only where a dataset says so (LVIS negative categories).
  if (rec.absent?.length) {
    add(
      'facts-is-not-there',
      rec.absent.map((l) => ({ question: pick(IS_THERE(l)), answer: `No, there is no ${l} in the image.` })),
    );
  }

  if (rec.qa.length) add('facts-qa', rec.qa.map((q) => ({ question: q.question, answer: sentence(q.answer.charAt(0).toUpperCase() + q.answer.slice(1)) })));

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
      return m ? { subject: b.label, predicate: m[1]!, object: m[2]! } : null;
    }),
  );
  const rels = relations.filter((r): r is NonNullable<typeof r> => r !== null);
  if (rels.length) {
    add(
      'facts-relation',
      rels.map((r) => ({ question: `How are the ${r.subject} and the ${r.object} related?`, answer: `The ${r.subject} ${r.predicate} the ${r.object}.` })),
    );
  }
  return results;
}
