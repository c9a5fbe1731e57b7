import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InstructifyError } from '../errors.js';
import { instructionLines, isInLanguage, isRefusal, LANGUAGE_MIN_LETTERS, unusable, withoutThinking, type UnusableReason } from './answer-text.js';

/**
 * Prompts are files: a JSON header (name, role, how the answer is parsed,
 * constraints), a line `---`, then the template with {{placeholders}}.
 * Users add their own folder with --prompts; a file there replaces a
 * built-in prompt of the same name.
 */
export type ParserKind = 'qa' | 'yesno' | 'truefalse' | 'blank' | 'choice' | 'description' | 'lines' | 'bool' | 'codes';

export interface PromptSpec {
  name: string;
  role: 'conversion' | 'check' | 'reduce' | 'generate';
  parser: ParserKind;
  exactTurns?: number;
  minTurns?: number;
  maxAnswerWords?: number;
  /** For 'description': the human turns to pair with the written description. */
  questions?: string[];
  /** For instruction prompts: tasks, one drawn per use into {{task}}. */
  tasks?: string[];
  /** The language answers must be in, ISO 639-3 (default eng). */
  language?: string;
  template: string;
  file: string;
}

export interface Distribution {
  name: string;
  types: { prompt: string; weight: number; maxSamples: number }[];
}

export const BUILTIN_PROMPTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.endsWith('.js') ? ['..'] : []), 'prompts');

export function parsePromptFile(text: string, file: string): PromptSpec {
  const cut = text.indexOf('\n---\n');
  if (cut < 0) throw new InstructifyError('E_OPTION', 'a prompt file needs a JSON header, a line "---", then the template', { file });
  let header: Omit<PromptSpec, 'template' | 'file'>;
  try {
    header = JSON.parse(text.slice(0, cut)) as typeof header;
  } catch (err) {
    throw new InstructifyError('E_OPTION', `the prompt header is not JSON: ${(err as Error).message}`, { file, cause: err });
  }
  const parsers: ParserKind[] = ['qa', 'yesno', 'truefalse', 'blank', 'choice', 'description', 'lines', 'bool', 'codes'];
  if (!header.name || !parsers.includes(header.parser)) {
    throw new InstructifyError('E_OPTION', `the prompt header needs "name" and "parser" (one of ${parsers.join(', ')})`, { file });
  }
  if (header.parser === 'description' && !header.questions?.length) throw new InstructifyError('E_OPTION', 'a "description" prompt needs "questions"', { file });
  return { ...header, template: text.slice(cut + 5).trim(), file };
}

/** The built-in prompts, then the user's folders (same name: the user's wins). */
export function loadPrompts(folders: string[] = []): Map<string, PromptSpec> {
  const out = new Map<string, PromptSpec>();
  for (const dir of [BUILTIN_PROMPTS, ...folders]) {
    for (const name of readdirSync(dir).sort()) {
      if (!name.endsWith('.md')) continue;
      const file = path.join(dir, name);
      const spec = parsePromptFile(readFileSync(file, 'utf8'), file);
      out.set(spec.name, spec);
    }
  }
  return out;
}

export function loadDistribution(nameOrFile: string, prompts: Map<string, PromptSpec>): Distribution {
  const file = nameOrFile.endsWith('.json') ? nameOrFile : path.join(BUILTIN_PROMPTS, 'distributions', `${nameOrFile}.json`);
  let d: Distribution;
  try {
    d = JSON.parse(readFileSync(file, 'utf8')) as Distribution;
  } catch (err) {
    throw new InstructifyError('E_OPTION', `cannot read the distribution "${nameOrFile}": ${(err as Error).message}`, { file, cause: err });
  }
  for (const t of d.types) {
    const p = prompts.get(t.prompt);
    if (!p) throw new InstructifyError('E_OPTION', `distribution ${d.name} names prompt "${t.prompt}", which no prompt file defines`, { file });
    if (p.role !== 'generate') throw new InstructifyError('E_OPTION', `distribution ${d.name}: "${t.prompt}" is a ${p.role} prompt, not a generation prompt`, { file });
    if (!(t.weight > 0) || !(Number.isInteger(t.maxSamples) && t.maxSamples >= 1)) {
      throw new InstructifyError('E_OPTION', `distribution ${d.name}: "${t.prompt}" needs a positive weight and maxSamples`, { file });
    }
  }
  return d;
}

/** Fill {{placeholders}}; a placeholder without a value is a mistake in the prompt, not a blank. */
export function render(spec: PromptSpec, vars: Record<string, string>): string {
  return spec.template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    const v = vars[k];
    if (v === undefined) throw new InstructifyError('E_OPTION', `prompt ${spec.name} uses {{${k}}}, which has no value here`, { file: spec.file });
    return v;
  });
}

export interface Turn {
  question: string;
  answer: string;
}

/** `Question: ... / Answer: ...` blocks; markdown emphasis and numbering around the labels are tolerated. */
export function parseQABlocks(text: string): Turn[] {
  const turns: Turn[] = [];
  let field: 'q' | 'a' | null = null;
  let q = '';
  let a = '';
  const flush = () => {
    if (q.trim() && a.trim()) turns.push({ question: q.trim(), answer: a.trim() });
    q = '';
    a = '';
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/^\s*(?:[-*]|\d+[.)])\s*/, '');
    const mq = /^\**\s*(?:Q|Question)\s*\d*\s*\**\s*[:：]\**\s*(.*)$/i.exec(line);
    const ma = /^\**\s*(?:A|Answer)\s*\d*\s*\**\s*[:：]\**\s*(.*)$/i.exec(line);
    if (mq) {
      if (field === 'a') flush();
      field = 'q';
      q = mq[1]!;
    } else if (ma && field === 'q') {
      field = 'a';
      a = ma[1]!;
    } else if (field === 'q') q += `\n${raw}`;
    else if (field === 'a') a += `\n${raw}`;
  }
  if (field === 'a') flush();
  return turns;
}

export type Parsed =
  | { kind: 'turns'; turns: Turn[] }
  | { kind: 'lines'; lines: string[] }
  | { kind: 'bool'; value: boolean }
  | { kind: 'codes'; codes: string[] };

/** What is known about an answer besides its text. */
export interface AnswerContext {
  /** The server's `finish_reason`: 'length' means the answer was cut short. */
  finishReason?: string | null;
  /** For reduce: the codes that were offered; any other code makes the answer unparseable. */
  offeredCodes?: ReadonlySet<string>;
}

export type ReadOutcome = { ok: true; parsed: Parsed } | { ok: false; reason: UnusableReason };

const VERDICT = /^(true|false)$/i;
/** Words that turn "... is true" into its opposite: such a sentence is not a verdict. */
const NEGATION = /\b(not|no|never|neither|nor|isn't|isn’t|aren't|wasn't|cannot|can't)\b|n't\b/i;

/**
 * A check's verdict, and nothing else: True or False (any case, with or
 * without punctuation or emphasis) alone on the answer's last line, maybe
 * after a label ("Verdict: False"), or the last word of the answer when
 * nothing in its sentence negates it. Words are split on Unicode letters,
 * so "TRUEβcurr" is one word, not "TRUE".
 */
export function parseVerdict(text: string): boolean | null {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines.at(-1);
  if (!last) return null;
  const bare = last
    .replace(/^[\p{P}\p{S}\s]*(?:(?:final\s+)?(?:answer|verdict|reply|judg(?:e)?ment|result)\s*[:：-]\s*)?/iu, '')
    .replace(/[\p{P}\p{S}\s]+$/u, '');
  if (VERDICT.test(bare)) return bare.toLowerCase() === 'true';
  const words = last.split(/[^\p{L}\p{N}'’]+/u).filter(Boolean);
  const word = words.at(-1);
  if (!word || !VERDICT.test(word)) return null;
  // The last sentence, up to its verdict: "It is not true that ..., so: False" is False;
  // "The answer is not true." is no verdict at all.
  const sentence = last.slice(0, last.lastIndexOf(word)).split(/[.!?;:]\s/).at(-1) ?? '';
  if (NEGATION.test(sentence)) return null;
  return word.toLowerCase() === 'true';
}

/**
 * Reduce's answer in its declared form: codes separated by commas (or
 * spaces), every one of them offered, or "none". Prose is not a list of
 * codes: "I cannot tell." names no fact.
 */
export function parseCodes(text: string, offered?: ReadonlySet<string>): string[] | null {
  const t = text.trim().replace(/^(?:codes?|answer|used)\s*[:：]\s*/i, '').replace(/[.\s]+$/, '');
  if (/^none$/i.test(t)) return [];
  if (!/^[A-Z]{1,3}(?:\s*[,;]?\s*(?:and\s+)?[A-Z]{1,3})*$/.test(t)) return null;
  const codes = [...new Set(t.split(/[\s,;]+/).filter((c) => c && c !== 'and'))];
  if (offered && codes.some((c) => !offered.has(c))) return null;
  return codes;
}

/** Prompts whose answers are prose (or prose in turns), held to the prompt's language. */
function isFreeText(spec: PromptSpec): boolean {
  return spec.parser !== 'bool' && spec.parser !== 'codes';
}

/**
 * Read an answer as its prompt declares, or say why it cannot be used:
 * first what holds for every answer (cut short, empty, the prompt read
 * back, a refusal, not in the prompt's language), then the prompt's own
 * format. Thinking blocks are set aside before anything else. `pick`
 * chooses the human turn of a description.
 */
export function readAnswer(spec: PromptSpec, raw: string, pick: (n: number) => number, ctx: AnswerContext = {}): ReadOutcome {
  // The template's instructions are the prompt's: read once per prompt file, not once per answer.
  const text = withoutThinking(raw);
  const bad = unusable(text, { prompt: instructionLinesOf(spec), finishReason: ctx.finishReason ?? null });
  if (bad) return { ok: false, reason: bad };
  const parsed = parseFormat(spec, text, pick, ctx);
  if (!parsed) return { ok: false, reason: 'format' };
  if (isFreeText(spec)) {
    // Every piece of prose that would become information or a turn.
    const pieces = parsed.kind === 'lines' ? parsed.lines : parsed.kind === 'turns' ? parsed.turns.flatMap((t) => [t.question, t.answer]) : [];
    let judged = false;
    for (const p of pieces) {
      if (isRefusal(p)) return { ok: false, reason: 'refusal' };
      if (!isInLanguage(p, spec.language)) return { ok: false, reason: 'language' };
      judged ||= p.length >= 2 * LANGUAGE_MIN_LETTERS;
    }
    // Word salad spread thin over short pieces, none long enough to judge alone: judged as a whole.
    if (!judged && pieces.length > 1 && !isInLanguage(pieces.join('\n'), spec.language)) return { ok: false, reason: 'language' };
  }
  return { ok: true, parsed };
}

const echoLines = new WeakMap<PromptSpec, string[]>();
function instructionLinesOf(spec: PromptSpec): string[] {
  let lines = echoLines.get(spec);
  if (!lines) {
    // Placeholders are data: a line holding one is not an instruction to look for.
    lines = instructionLines(spec.template).filter((l) => !l.includes('{{'));
    echoLines.set(spec, lines);
  }
  return lines;
}

/** `readAnswer` for callers that only need the parsed answer: null when it cannot be used. */
export function parseAnswer(spec: PromptSpec, text: string, pick: (n: number) => number, ctx: AnswerContext = {}): Parsed | null {
  const r = readAnswer(spec, text, pick, ctx);
  return r.ok ? r.parsed : null;
}

function parseFormat(spec: PromptSpec, text: string, pick: (n: number) => number, ctx: AnswerContext): Parsed | null {
  switch (spec.parser) {
    case 'lines': {
      const lines = text
        .split('\n')
        .map((l) => l.replace(/^\s*(?:[-*•]|\d+[.)])\s*/, '').trim())
        .filter(Boolean);
      return lines.length ? { kind: 'lines', lines } : null;
    }
    case 'bool': {
      const value = parseVerdict(text);
      return value === null ? null : { kind: 'bool', value };
    }
    case 'codes': {
      const codes = parseCodes(text, ctx.offeredCodes);
      return codes ? { kind: 'codes', codes } : null;
    }
    case 'description': {
      const answer = text.trim();
      if (!answer || /^\s*(question|answer)\s*:/im.test(answer)) return null;
      const qs = spec.questions!;
      return { kind: 'turns', turns: [{ question: qs[pick(qs.length)]!, answer }] };
    }
    default: {
      const turns = parseQABlocks(text);
      if (!turns.length) return null;
      if (spec.exactTurns !== undefined && turns.length !== spec.exactTurns) return null;
      if (spec.minTurns !== undefined && turns.length < spec.minTurns) return null;
      if (spec.maxAnswerWords !== undefined && turns.some((t) => t.answer.split(/\s+/).length > spec.maxAnswerWords!)) return null;
      if (spec.parser === 'yesno' && turns.some((t) => !/^(yes|no)\b/i.test(t.answer))) return null;
      if (spec.parser === 'truefalse' && turns.some((t) => !/^(true|false)\b/i.test(t.answer))) return null;
      if (spec.parser === 'blank' && turns.some((t) => !/_{3,}/.test(t.question))) return null;
      if (spec.parser === 'choice') {
        // The answer starts with one of the labels shown in the question.
        const t = turns[0]!;
        const label = /^\(?([A-Za-z]|\d+|[ivx]+)[).:]?\s/.exec(t.answer)?.[1];
        if (!label || !new RegExp(`(^|\\n|\\s)\\(?${label}[).:]\\s`, 'i').test(t.question)) return null;
      }
      return { kind: 'turns', turns };
    }
  }
}

/** Codes for reduce: A..Z, then AA, AB, ... */
export function sentenceCode(i: number): string {
  let s = '';
  let n = i;
  do {
    s = String.fromCharCode(65 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return s;
}
