import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InstructifyError } from '../errors.js';

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

/**
 * Parse an answer as its prompt declares; null when it does not fit (the
 * loop then asks again). `pick` chooses the human turn of a description.
 */
export function parseAnswer(spec: PromptSpec, text: string, pick: (n: number) => number): Parsed | null {
  switch (spec.parser) {
    case 'lines': {
      const lines = text
        .split('\n')
        .map((l) => l.replace(/^\s*(?:[-*•]|\d+[.)])\s*/, '').trim())
        .filter(Boolean);
      return lines.length ? { kind: 'lines', lines } : null;
    }
    case 'bool': {
      const m = /\b(true|false)\b/i.exec(text);
      return m ? { kind: 'bool', value: m[1]!.toLowerCase() === 'true' } : null;
    }
    case 'codes': {
      if (/^\s*none\b/i.test(text)) return { kind: 'codes', codes: [] };
      const codes = text.match(/\b[A-Z]{1,3}\b/g);
      return codes ? { kind: 'codes', codes: [...new Set(codes)] } : null;
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
