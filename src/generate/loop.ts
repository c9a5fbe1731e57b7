import { hashRef } from '../join/join.js';
import { rng } from '../util/random.js';
import type { ImageRecord } from '../types.js';
import type { UnusableReason } from './answer-text.js';
import { spoken } from '../tree/labels.js';
import { boxFacts } from './box-facts.js';
import { readAnswer, render, sentenceCode, type AnswerContext, type Distribution, type Parsed, type PromptSpec, type Turn } from './prompts.js';

/**
 * The Instructify loop for one image (METHOD.md sections 2 and 5): build the
 * information list (captions, QA restated as facts, the tree turned into a
 * description), then draw prompt types, generate, check every turn against
 * the original information, and remove the facts each accepted conversation
 * used, so later rounds talk about what is not yet covered.
 */
export interface LoopOptions {
  maxRounds: number;
  /** Stop when the information left is shorter than this. */
  minInfoChars: number;
  /** Stop after this many rounds in a row with nothing accepted. */
  maxFails: number;
  /** Asks per prompt when its answer does not parse. */
  parseTries: number;
  /** Check and reduce (the method's filtering); off: keep whatever parses. */
  filtering: boolean;
  /** Use the tree (turned into a description) as information. */
  useTree: boolean;
  /** Stop once this share of the information has been used up. */
  stopUsedShare: number;
  /** Facts from QA shorter than this are dropped. */
  minFactChars: number;
  /** Trees shorter than this are not worth describing. */
  minTreeChars: number;
  seed: number;
}

export const DEFAULT_LOOP_OPTIONS: LoopOptions = {
  maxRounds: 10,
  minInfoChars: 10,
  maxFails: 3,
  parseTries: 3,
  filtering: true,
  useTree: true,
  stopUsedShare: 0.85,
  minFactChars: 10,
  minTreeChars: 20,
  seed: 0,
};

/** A model's answer: its text and why the server stopped (`length`: cut short). */
export interface LlmAnswer {
  content: string;
  finishReason: string | null;
}

/**
 * Sends one rendered prompt (a single user turn) and returns the answer.
 * `priority`: when requests wait for a slot, higher goes first
 * (speculative requests ask with -1, so they never hold up needed ones).
 * `attempt`: how many times this image has sent the same prompt before;
 * from 1 on, the request carries another seed (and so another cache key),
 * so a retry is a new ask, never the cache's copy of an answer that failed.
 * A plain string answer means the server finished normally.
 */
export type Call = (prompt: PromptSpec, text: string, priority?: number, attempt?: number) => Promise<string | LlmAnswer>;

export interface LoopResult {
  promptType: string;
  /** The information the prompt was given. */
  input: string[];
  turns: Turn[];
  /** Facts reduce found used (and removed for later rounds). */
  removed: string[];
}

/** Turns a check took out: of a kept conversation ('check-false'), or a whole one whose first turn failed ('first-turn-false'). */
export interface CheckedOut {
  promptType: string;
  turns: Turn[];
  reason: 'check-false' | 'first-turn-false';
}

export type StopReason = 'rounds' | 'little-information' | 'failures' | 'used-up' | 'no-prompt-left';

/**
 * What became of the model's description of the tree: it passed its check
 * against the tree ('checked'), or failed it (or never parsed) and the
 * boxes' own counts and positions stand in ('tree-facts'), or it was used
 * unchecked (`--no-filter`), or there was no tree to describe ('none').
 */
export type TreeDescription = 'checked' | 'tree-facts' | 'unchecked' | 'none';

export interface LoopStats {
  /** Answers asked for, by prompt (internal prompts included). */
  asks: Record<string, number>;
  generated: Record<string, number>;
  accepted: Record<string, number>;
  turnsRejected: Record<string, number>;
  conversationsRejected: Record<string, number>;
  /** Answers that could not be used, by prompt (every reason). */
  parseFailures: Record<string, number>;
  /** The same failures by reason: prompt -> reason -> count. */
  unusable: Record<string, Partial<Record<UnusableReason, number>>>;
  treeDescription: TreeDescription;
  /** Speculative asks whose answers were not needed (see `checkAndReduce`). */
  speculativeUnused: number;
  stop: StopReason;
}

export interface LoopContext {
  prompts: Map<string, PromptSpec>;
  distribution: Distribution;
  call: Call;
  options?: Partial<LoopOptions>;
  /**
   * True when request slots are free and no request waits for one (the end
   * of a run, when the input has run out). The loop then asks a round's
   * checks and its reduce at once instead of one after another; see
   * `checkAndReduce`. Absent: never.
   */
  spare?: () => boolean;
}

const bump = (m: Record<string, number>, k: string, n = 1) => (m[k] = (m[k] ?? 0) + n);

export function emptyLoopStats(): LoopStats {
  return { asks: {}, generated: {}, accepted: {}, turnsRejected: {}, conversationsRejected: {}, parseFailures: {}, unusable: {}, treeDescription: 'none', speculativeUnused: 0, stop: 'rounds' };
}

/** One image's asking: its stats, and how often it has sent each prompt (for `attempt`). */
interface Asker {
  stats: LoopStats;
  sent: Map<string, number>;
  /** Answers asked ahead for a prompt text's next first try (see `runLoop`'s first round). */
  prefetched: Map<string, Promise<Settled<string | LlmAnswer>>>;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));

/** An answer being asked for, and how to count its attempt numbers as taken (see `askAhead`). */
interface Asked {
  asked: Promise<{ parsed: Parsed | null }>;
  commit: () => void;
}

/**
 * Ask until the answer can be used (up to `tries`); null when it never can.
 * Every try is a new request: its text says which attempt it is, and its
 * `attempt` number (how often this image sent the same prompt before, over
 * rounds too) changes the seed, so neither the server's determinism nor
 * the cache can hand back the answer that just failed.
 */
async function ask(ctx: LoopContext, asker: Asker, spec: PromptSpec, text: string, tries: number, pick: (n: number) => number, priority = 0, extra: AnswerContext = {}): Promise<Parsed | null> {
  const a = askAhead(ctx, asker, spec, text, tries, pick, priority, extra);
  // Taken at once, so the same prompt asked twice side by side (two identical turns checked together) gets other attempt numbers.
  a.commit();
  return (await a.asked).parsed;
}

/**
 * `ask`, but the sends are counted towards later attempt numbers only on
 * `commit()`. Speculative asks commit only when their answer is used: an
 * ask the sequential loop would never have made must not shift the
 * attempt numbers of the asks it does make, or a rerun (which never
 * speculates) would send other requests than the cache holds.
 */
function askAhead(ctx: LoopContext, asker: Asker, spec: PromptSpec, text: string, tries: number, pick: (n: number) => number, priority = 0, extra: AnswerContext = {}): Asked {
  const base = asker.sent.get(text) ?? 0;
  // Every try's number is taken, used or not: what the next ask of the text starts from does not depend on answers.
  const commit = () => asker.sent.set(text, Math.max(asker.sent.get(text) ?? 0, base + tries));
  return { asked: tryAnswers(ctx, asker, spec, text, base, tries, pick, priority, extra), commit };
}

async function tryAnswers(ctx: LoopContext, asker: Asker, spec: PromptSpec, text: string, base: number, tries: number, pick: (n: number) => number, priority: number, extra: AnswerContext): Promise<{ parsed: Parsed | null }> {
  for (let i = 0; i < tries; i++) {
    const sent = i === 0 ? text : `${text}\n\n(Attempt ${i + 1}: follow the format exactly.)`;
    // (Looked up only when something was asked ahead: hashing a long prompt for nothing costs.)
    const ahead = i === 0 && asker.prefetched.size ? asker.prefetched.get(text) : undefined;
    let raw: string | LlmAnswer;
    if (ahead) {
      // Asked ahead with the same text and attempt number: the very request this try would send.
      asker.prefetched.delete(text);
      const r = await ahead;
      if (!r.ok) throw r.error;
      raw = r.value;
    } else raw = await ctx.call(spec, sent, priority, base + i);
    const answer: LlmAnswer = typeof raw === 'string' ? { content: raw, finishReason: 'stop' } : raw;
    bump(asker.stats.asks, spec.name);
    const r = readAnswer(spec, answer.content, pick, { ...extra, finishReason: answer.finishReason });
    if (r.ok) return { parsed: r.parsed };
    bump(asker.stats.parseFailures, spec.name);
    const by = (asker.stats.unusable[spec.name] ??= {});
    by[r.reason] = (by[r.reason] ?? 0) + 1;
  }
  return { parsed: null };
}


function need(ctx: LoopContext, name: string): PromptSpec {
  const p = ctx.prompts.get(name);
  if (!p) throw new Error(`no prompt named ${name}`);
  return p;
}

/** Split information into sentences for reduce (lines first, then sentence ends). */
export function sentences(info: string[]): string[] {
  return info.flatMap((line) => line.split(/(?<=[.!?])\s+(?=[A-Z0-9"'(])/).map((s) => s.trim())).filter(Boolean);
}

function listWords(xs: string[]): string {
  // As people say them: "any pita", not "any pita (bread)".
  const ws = xs.map((x) => `any ${spoken(x)}`);
  return ws.length > 1 ? `${ws.slice(0, -1).join(', ')} or ${ws.at(-1)}` : ws[0]!;
}

/** Objects with their boxes, top-left origin, 0..1: how grounded prompts see them. */
export function boxList(rec: ImageRecord): string {
  const f = (v: number) => v.toFixed(2);
  return rec.boxes.map((b) => `${b.label} [${f(b.x1)}, ${f(b.y1)}, ${f(b.x2)}, ${f(b.y2)}]`).join('\n') || '(no boxes)';
}

const MC_LABELS = ['A, B, C, ...', '(a), (b), (c), ...', '1, 2, 3, ...', 'i, ii, iii, ...'];
const MC_INSTRUCTIONS = [
  "Answer with the option's letter from the given choices directly.",
  'Choose the correct option and give its label.',
  'Pick one of the options above.',
  'Reply with the label of the right answer and the answer itself.',
];

export async function runLoop(rec: ImageRecord, ctx: LoopContext): Promise<{ results: LoopResult[]; information: string[]; stats: LoopStats; checkedOut: CheckedOut[] }> {
  const o = { ...DEFAULT_LOOP_OPTIONS, ...ctx.options };
  // Draws depend only on the seed and the image: reruns and sharded runs draw the same.
  const random = rng((hashRef(`${o.seed}\u0000${rec.image}`) ^ o.seed) >>> 0);
  const pick = (n: number) => Math.floor(random() * n);
  const stats = emptyLoopStats();
  const asker: Asker = { stats, sent: new Map(), prefetched: new Map() };
  try {
    return await loopImage(rec, ctx, o, asker, random, pick);
  } finally {
    // No request outlives its image: answers asked ahead and never used are waited for (and counted).
    for (const p of asker.prefetched.values()) {
      stats.speculativeUnused++;
      await p;
    }
  }
}

/** A round's draw: its prompt type and the values of the prompt's placeholders, but the information. */
interface RoundDraw {
  type: Distribution['types'][number];
  spec: PromptSpec;
  vars: Record<string, string>;
}

/** The draws of one round, in the order the loop has always made them (reruns draw alike). */
function drawRound(ctx: LoopContext, rec: ImageRecord, open: Distribution['types'], random: () => number, pick: (n: number) => number): RoundDraw {
  let x = random() * open.reduce((s, t) => s + t.weight, 0);
  const type = open.find((t) => (x -= t.weight) < 0) ?? open.at(-1)!;
  const spec = need(ctx, type.prompt);
  const vars: Record<string, string> = {
    // Grounded prompts get boxes in the same form they must answer in: top-left origin, 0..1.
    boxes: boxList(rec),
    task: spec.tasks?.length ? spec.tasks[pick(spec.tasks.length)]! : '',
    option_count: String(2 + pick(4)),
    label_style: MC_LABELS[pick(MC_LABELS.length)]!,
    answer_instruction: MC_INSTRUCTIONS[pick(MC_INSTRUCTIONS.length)]!,
  };
  return { type, spec, vars };
}

async function loopImage(rec: ImageRecord, ctx: LoopContext, o: LoopOptions, asker: Asker, random: () => number, pick: (n: number) => number): Promise<{ results: LoopResult[]; information: string[]; stats: LoopStats; checkedOut: CheckedOut[] }> {
  const stats = asker.stats;

  // 1. The information list.
  const info: string[] = rec.captions.map((c) => c.text.trim()).filter(Boolean);
  // Statements the datasets give ready-made (OCR text, rationales, counts) are information as they are.
  for (const f of rec.facts ?? []) if (f.text.trim()) info.push(f.text.trim());
  // What a dataset says is not there is information too (METHOD.md section 1).
  if (rec.absent?.length) info.push(`This image does not contain ${listWords(rec.absent)}.`);
  // The two conversions do not depend on each other: both are asked at once
  // (one round trip less per image), and their lines join in a fixed order.
  // Their 'lines' answers draw nothing from `pick`, so draws stay reproducible.
  const fromQa = rec.qa.length
    ? (() => {
        const spec = need(ctx, 'qa-to-facts');
        const qa = rec.qa.map((q) => `Q: ${q.question}\nA: ${q.answer}`).join('\n');
        return ask(ctx, asker, spec, render(spec, { qa }), o.parseTries, pick);
      })()
    : null;
  const remaining = new Map(ctx.distribution.types.map((t) => [t.prompt, t.maxSamples]));
  const openTypes = () => ctx.distribution.types.filter((t) => (remaining.get(t.prompt) ?? 0) > 0);
  const describing = o.useTree && rec.tree && rec.tree.length >= o.minTreeChars ? describeTree(ctx, asker, o, rec, pick) : null;
  const [qaParsed, description] = await Promise.all([fromQa, describing]);
  if (qaParsed?.kind === 'lines') info.push(...qaParsed.lines.filter((l) => l.length > o.minFactChars));
  // The first round's draw, when it had to be made before the tree's check came back.
  let firstDraw: RoundDraw | null = null;
  if (description) {
    if (description.verdict && o.maxRounds > 0) {
      // Rather than wait for the check, ask the first round beside it as if
      // the description passes: one round trip less per image, which is
      // what the end of a run waits for (measured: without it the run's
      // tail grew by ~0.6 s in bench/generate). Its draws are the ones the
      // loop makes next anyway (the check draws nothing), and the answer is
      // only read once the check has passed; if it fails, the answer goes
      // unused (counted as asked ahead) and the round is asked with the
      // tree's facts instead. Nothing from an unchecked description is kept.
      const tentative = [...info, ...description.lines].join('\n');
      const open = openTypes();
      if (tentative.length >= o.minInfoChars && open.length) {
        firstDraw = drawRound(ctx, rec, open, random, pick);
        const text = render(firstDraw.spec, { ...firstDraw.vars, information: tentative });
        asker.prefetched.set(text, settle(Promise.resolve(ctx.call(firstDraw.spec, text, 0, asker.sent.get(text) ?? 0))));
      }
    }
    info.push(...(await description.settled));
  }

  // 2. Rounds of generate, check, reduce.
  const orig = [...info];
  const origChars = orig.join('\n').length;
  let cur = [...info];
  let fails = 0;
  const results: LoopResult[] = [];
  const checkedOut: CheckedOut[] = [];
  let round = 0;
  for (; round < o.maxRounds; round++) {
    if (cur.join('\n').length < o.minInfoChars) {
      stats.stop = 'little-information';
      break;
    }
    const open = openTypes();
    if (!open.length) {
      stats.stop = 'no-prompt-left';
      break;
    }
    const draw = firstDraw ?? drawRound(ctx, rec, open, random, pick);
    firstDraw = null;
    const { type, spec } = draw;
    const vars = { ...draw.vars, information: cur.join('\n') };
    const parsed = await ask(ctx, asker, spec, render(spec, vars), o.parseTries, pick);
    // A type's samples are used up by what is kept, not by failed draws.
    const consume = () => remaining.set(type.prompt, (remaining.get(type.prompt) ?? 1) - 1);
    if (!parsed || parsed.kind !== 'turns') {
      if (++fails > o.maxFails) {
        stats.stop = 'failures';
        break;
      }
      continue;
    }
    bump(stats.generated, spec.name);
    const input = [...cur];
    if (!o.filtering) {
      results.push({ promptType: spec.name, input, turns: parsed.turns, removed: [] });
      bump(stats.accepted, spec.name);
      consume();
      continue;
    }
    // Check each turn against everything originally known (a bad first turn
    // kills the conversation), then find the facts the kept turns used.
    const facts = sentences(cur);
    const { kept, rejected, codes } = await checkAndReduce(ctx, asker, o, orig, facts, parsed.turns, pick);
    const out = parsed.turns.filter((t) => !kept.includes(t));
    if (out.length) checkedOut.push({ promptType: spec.name, turns: out, reason: kept.length ? 'check-false' : 'first-turn-false' });
    if (kept.length) bump(stats.turnsRejected, spec.name, rejected);
    else {
      bump(stats.conversationsRejected, spec.name);
      bump(stats.turnsRejected, spec.name, parsed.turns.length);
      if (++fails > o.maxFails) {
        stats.stop = 'failures';
        break;
      }
      continue;
    }
    fails = 0;
    bump(stats.accepted, spec.name);
    consume();
    const removed = facts.filter((_, i) => codes.has(sentenceCode(i)));
    results.push({ promptType: spec.name, input, turns: kept, removed });
    cur = facts.filter((_, i) => !codes.has(sentenceCode(i)));
    if (1 - cur.join('\n').length / Math.max(1, origChars) > o.stopUsedShare) {
      stats.stop = 'used-up';
      break;
    }
  }
  return { results, information: orig, stats, checkedOut };
}

/**
 * The tree as information (METHOD.md section 2.3), but only what holds: the
 * model's description of the tree joins the information once a check
 * against the tree itself passes. Otherwise (the check fails, or the
 * description or its verdict never parses) the boxes' own counts and
 * positions stand in: a hallucinated description must not become the
 * ground truth every later turn is checked against.
 */
interface TreeDescriptionAsk {
  /** The model's description, before its check. */
  lines: string[];
  /** The check under way (null: none is asked). */
  verdict: Promise<Parsed | null> | null;
  /** What joins the information once the check is back: the description, or the boxes' facts. */
  settled: Promise<string[]>;
}

async function describeTree(ctx: LoopContext, asker: Asker, o: LoopOptions, rec: ImageRecord, pick: (n: number) => number): Promise<TreeDescriptionAsk> {
  const spec = need(ctx, 'tree-to-description');
  const described = await ask(ctx, asker, spec, render(spec, { tree: rec.tree! }), o.parseTries, pick);
  const lines = described?.kind === 'lines' ? described.lines : null;
  if (!lines) {
    asker.stats.treeDescription = 'tree-facts';
    return { lines: [], verdict: null, settled: Promise.resolve(boxFacts(rec)) };
  }
  if (!o.filtering) {
    asker.stats.treeDescription = 'unchecked';
    return { lines, verdict: null, settled: Promise.resolve(lines) };
  }
  const check = need(ctx, 'tree-check');
  const verdict = ask(ctx, asker, check, render(check, { tree: rec.tree!, description: lines.join('\n') }), o.parseTries, pick);
  const settled = verdict.then((v) => {
    const passed = v?.kind === 'bool' && v.value;
    asker.stats.treeDescription = passed ? 'checked' : 'tree-facts';
    return passed ? lines : boxFacts(rec);
  });
  return { lines, verdict, settled };
}

/**
 * One round's filtering: check each turn, then reduce with the kept turns.
 * `rejected` counts the turns after the first that failed their check;
 * `kept` is empty when the first turn failed (then nothing is reduced).
 *
 * Asked one after another, a round is three round trips: the first turn's
 * check, the other checks side by side, then reduce. When the context says
 * slots are spare (`ctx.spare`, true once the input has run out and images
 * finish faster than new ones start), all checks and a reduce that assumes
 * every turn passes go out at once: one round trip. Answers for prompts the
 * run would not have sent are dropped, and when a check fails the reduce is
 * asked again with the kept turns, so the result is the same either way;
 * only requests that would have found no other use are spent.
 */
async function checkAndReduce(
  ctx: LoopContext,
  asker: Asker,
  o: LoopOptions,
  orig: string[],
  facts: string[],
  turns: Turn[],
  pick: (n: number) => number,
): Promise<{ kept: Turn[]; rejected: number; codes: Set<string> }> {
  const stats = asker.stats;
  const checkSpec = need(ctx, 'check');
  const reduceSpec = need(ctx, 'reduce');
  const information = orig.join('\n');
  const checkText = (t: Turn) => render(checkSpec, { information, question: t.question, answer: t.answer });
  const passed = (p: Parsed | null) => p?.kind === 'bool' && p.value;
  const verdictAhead = async (t: Turn, priority = 0) => {
    const a = askAhead(ctx, asker, checkSpec, checkText(t), o.parseTries, pick, priority);
    return { value: passed((await a.asked).parsed), commit: a.commit };
  };
  const verdict = async (t: Turn, priority = 0) => passed(await ask(ctx, asker, checkSpec, checkText(t), o.parseTries, pick, priority));
  const coded = facts.map((f, i) => `${sentenceCode(i)}. ${f}`).join('\n');
  const offeredCodes = new Set(facts.map((_, i) => sentenceCode(i)));
  const reduceText = (kept: Turn[]) => render(reduceSpec, { sentences: coded, questions: kept.map((t) => `Question: ${t.question}\nAnswer: ${t.answer}`).join('\n') });
  // When reduce fails, nothing is removed (the reference dropped everything left).
  const codesOf = (p: Parsed | null) => new Set(p?.kind === 'codes' ? p.codes : []);
  const reduceAhead = async (kept: Turn[], priority = 0) => {
    const a = askAhead(ctx, asker, reduceSpec, reduceText(kept), o.parseTries, pick, priority, { offeredCodes });
    return { value: codesOf((await a.asked).parsed), commit: a.commit };
  };
  const reduce = async (kept: Turn[], priority = 0) => codesOf(await ask(ctx, asker, reduceSpec, reduceText(kept), o.parseTries, pick, priority, { offeredCodes }));
  const [first, ...rest] = turns;
  // The first turn passed: it and the later turns whose verdict is true.
  const keep = (verdicts: boolean[]) => {
    const kept = [first!, ...rest.filter((_, i) => verdicts[i])];
    return { kept, rejected: turns.length - kept.length };
  };
  if (ctx.spare?.()) {
    // Speculative requests wait behind needed ones (priority -1); their
    // failures only matter if their answer turns out to be needed.
    const restChecks = rest.map((t) => settle(verdictAhead(t, -1)));
    const allKept = settle(reduceAhead(turns, -1));
    // An answer asked ahead that turns out to be needed: its requests count as sent from here on.
    const take = async <T>(p: Promise<Settled<{ value: T; commit: () => void }>>) => {
      const r = await p;
      if (!r.ok) throw r.error;
      r.value.commit();
      return r.value.value;
    };
    try {
      if (!(await verdict(first!))) {
        stats.speculativeUnused += rest.length + 1;
        return { kept: [], rejected: 0, codes: new Set() };
      }
      const { kept, rejected } = keep(await Promise.all(restChecks.map(take)));
      if (rejected) stats.speculativeUnused++;
      return { kept, rejected, codes: rejected ? await reduce(kept) : await take(allKept) };
    } finally {
      // No request outlives its image (settled promises never reject).
      await Promise.all([...restChecks, allKept]);
    }
  }
  if (!(await verdict(first!))) return { kept: [], rejected: 0, codes: new Set() };
  // The other turns are judged each on its own: ask about them side by side (at most a few per conversation).
  const { kept, rejected } = keep(await Promise.all(rest.map((t) => verdict(t))));
  return { kept, rejected, codes: await reduce(kept) };
}
