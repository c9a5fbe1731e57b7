/**
 * Deterministic answers to this project's prompts, made only from the facts
 * inside each prompt: the loopback server uses them so tests and benchmarks
 * exercise the real loop over real HTTP. Each generation answer repeats a
 * fact verbatim, so `check` can verify it by looking it up, and `reduce` can
 * tell which facts were used. `wrong` plants a false answer in a chosen turn.
 */
export interface FakeOptions {
  /** Which turn of a generated conversation gets a false answer (0 = first). */
  wrongTurn?: number | null;
  /** Answer every generation prompt with text that fits no format. */
  unparseable?: boolean;
}

const WRONG = 'A purple elephant is juggling teapots.';

function section(prompt: string, heading: string): string[] {
  const at = prompt.lastIndexOf(`\n${heading}:\n`);
  if (at < 0) return [];
  const rest = prompt.slice(at + heading.length + 3);
  // A section ends at a blank line followed by the next label ("Question: ...", "Facts:").
  const end = rest.search(/\n\n[A-Z][a-z]+:/);
  return (end >= 0 ? rest.slice(0, end) : rest).split('\n').map((l) => l.trim()).filter(Boolean);
}

/** The part of an answer that must be found in the information. */
function core(answer: string): string {
  return answer
    .replace(/^(yes|no|true|false)[,.]?\s*/i, '')
    .replace(/^\(?([A-Za-z]|\d+|[ivx]+)[).:]?\s+/, '')
    .replace(/[.\s]+$/, '')
    .toLowerCase();
}

export function fakeAnswer(prompt: string, o: FakeOptions = {}): string {
  if (prompt.includes('\nDescription to check:\n')) {
    // Faithful when every object the description names is in the list.
    const list = prompt.slice(prompt.lastIndexOf('\nObject list:\n'), prompt.lastIndexOf('\nDescription to check:\n')).toLowerCase();
    const description = prompt.slice(prompt.lastIndexOf('\nDescription to check:\n') + 23).split('\n\n')[0]!;
    const named = description.split('\n').filter(Boolean).map((l) => /^There is an? (.+?) in the picture\.$/.exec(l.trim())?.[1]);
    return named.length && named.every((n) => n !== undefined && list.includes(n.toLowerCase())) ? 'True' : 'False';
  }
  if (prompt.includes('Rewrite every pair as a plain statement')) {
    const lines = section(prompt, 'Questions and answers');
    const out: string[] = [];
    for (let i = 0; i + 1 < lines.length; i += 2) out.push(`The answer to "${lines[i]!.replace(/^Q:\s*/, '')}" is ${lines[i + 1]!.replace(/^A:\s*/, '')}.`);
    return out.join('\n');
  }
  if (prompt.includes('Write a dense, factual description')) {
    const objects = section(prompt, 'Object list')
      .map((l) => /^(?:->\s*)?(?:\d+|several|many)?\s*([a-z][a-z ]*?)\s*(?:\(|\[|\{)/i.exec(l.replace(/^\s*(->\s*)?/, ''))?.[1]?.trim())
      .filter((l): l is string => !!l && l !== 'Object Counts');
    return [...new Set(objects)].map((l) => `There is a ${l} in the picture.`).join('\n');
  }
  if (prompt.includes('Reply with one word: True or False.')) {
    const info = section(prompt, 'Information').join('\n').toLowerCase();
    const answer = /\nAnswer: (.*)$/s.exec(prompt)?.[1] ?? '';
    const c = core(answer);
    if (c.startsWith('i cannot see')) return 'True';
    // Every sentence of the answer must be found in the information.
    const parts = c.split(/(?<=\.)\s+/).map((s) => s.replace(/\.$/, '').trim()).filter(Boolean);
    return parts.length && parts.every((p) => info.includes(p)) ? 'True' : 'False';
  }
  if (prompt.includes('List the codes of every fact')) {
    const facts = section(prompt, 'Facts');
    const answers = section(prompt, 'Questions')
      .filter((l) => l.startsWith('Answer: '))
      .map((l) => core(l.slice(8)));
    const parts = answers.flatMap((a) => a.split(/(?<=\.)\s+/).map((s) => s.replace(/\.$/, '').trim())).filter(Boolean);
    const used = facts.filter((f) => parts.some((a) => f.toLowerCase().includes(a))).map((f) => f.split('.')[0]!);
    return used.length ? used.join(', ') : 'none';
  }
  if (o.unparseable) return 'I would rather talk about something else.';
  const facts = section(prompt, 'Facts');
  const wrongAt = (i: number, text: string) => (o.wrongTurn === i ? WRONG : text);
  if (prompt.includes('single-sentence caption') || prompt.includes('one thorough description') || prompt.includes('Write a fine-grained description')) return facts.join(' ');
  if (prompt.includes('multiple-choice question')) {
    return `Question: Which of these is in the picture?\nA) ${facts[0]}\nB) ${WRONG}\nAnswer: ${wrongAt(0, `A ${facts[0]}`)}`;
  }
  const qa = (q: string, a: string) => `Question: ${q}\nAnswer: ${a}`;
  if (prompt.includes('needs reasoning')) return qa('What can be said about this scene?', wrongAt(0, facts[0] ?? ''));
  if (prompt.includes('asking the assistant to')) return qa('Please tell me one thing that is in this picture.', wrongAt(0, facts[0] ?? ''));
  if (prompt.includes('false premise')) return [qa('What colour is the dragon?', 'I cannot see a dragon in this image.'), qa('Where is the spaceship?', 'I cannot see a spaceship in this image.')].join('\n');
  const turns = facts.slice(0, 4).map((f, i) => {
    if (prompt.includes('true or false')) return qa(`True or false: ${f}`, wrongAt(i, `True, ${f}`));
    if (prompt.includes('fill-in-the-blank')) {
      const words = f.replace(/\.$/, '').split(/\s+/);
      const last = words.pop() ?? '';
      return qa(`Fill in the blank: ${[...words, '___'].join(' ')}.`, wrongAt(i, last));
    }
    if (prompt.includes('yes/no questions')) return qa(`Is it so that ${f.replace(/\.$/, '')}?`, wrongAt(i, `Yes, ${f}`));
    if (prompt.includes('one to four words')) return qa(`Which words start this fact: ${f}?`, wrongAt(i, f.split(/\s+/).slice(0, 3).join(' ')).split(/\s+/).slice(0, 4).join(' '));
    return qa(`What does the picture show (${i + 1})?`, wrongAt(i, f));
  });
  return turns.join('\n');
}

/**
 * Weak and broken models, as the tests and benchmarks play them: each
 * answers every prompt the way such a model does. Nothing any of them
 * says may become training data, except 'thinking' and 'reasoning-field',
 * which are a good model that shows its reasoning (set aside, the answer
 * is the good one).
 */
export const BROKEN_MODELS = ['noise', 'refusal', 'foreign', 'empty', 'truncated-json', 'echo', 'buried-verdict', 'cut-short', 'thinking', 'reasoning-field', 'capitals'] as const;
export type BrokenModel = (typeof BROKEN_MODELS)[number];

export interface FakeReply {
  content: string | null;
  finishReason?: string;
  reasoningContent?: string;
}

/** A small deterministic generator from a string (FNV-1a, then xorshift). */
function seeded(key: string): () => number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  let x = h || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const SYLLABLES = ['blor', 'qua', 'xim', 'zet', 'vro', 'nak', 'ple', 'dru', 'fos', 'kle', 'mip', 'sor', 'tuv', 'gna'];
const FOREIGN = ['βcurr', 'жизнь', '日本', 'λόγος', 'край', 'ありがとう', 'مرحبا', 'ĦĦ'];
const STRAY = ['True', 'false', 'TRUE', 'A', 'B, C', 'AB', 'none', 'Question', 'yes'];

/**
 * Word salad with stray verdict words and lone capitals inside it, and
 * words of two scripts glued together. It never ends on a clean verdict or
 * code list: its last word is salad. Seeded by the request (seed included),
 * so a retry gets other noise, as from a real sampler.
 */
export function noise(key: string): string {
  const r = seeded(key);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const words: string[] = [];
  const n = 12 + Math.floor(r() * 30);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.15) words.push(pick(STRAY));
    else if (k < 0.3) words.push(pick(STRAY).toUpperCase() + pick(FOREIGN));
    else if (k < 0.4) words.push(pick(FOREIGN));
    else words.push(pick(SYLLABLES) + pick(SYLLABLES) + (r() < 0.3 ? pick(SYLLABLES) : ''));
    if (r() < 0.1) words.push('\n');
  }
  words.push(pick(SYLLABLES) + pick(FOREIGN));
  return words.join(' ').replace(/ \n /g, '\n');
}

/** The prompt kinds a broken model answers differently. */
function promptKind(prompt: string): 'check' | 'reduce' | 'lines' | 'generate' {
  if (prompt.includes('Reply with one word: True or False.')) return 'check';
  if (prompt.includes('List the codes of every fact')) return 'reduce';
  if (prompt.includes('Rewrite every pair as a plain statement') || prompt.includes('Write a dense, factual description')) return 'lines';
  return 'generate';
}

export function brokenAnswer(req: { messages: { content: string }[]; seed?: number }, model: BrokenModel): FakeReply {
  const prompt = req.messages.at(-1)!.content;
  const kind = promptKind(prompt);
  switch (model) {
    case 'noise':
      return { content: noise(`${req.seed ?? ''}\u0000${prompt}`) };
    case 'refusal':
      return { content: "I'm sorry, but I cannot see images, so I can't help with describing this photograph." };
    case 'foreign':
      if (kind === 'check') return { content: 'Wahr' };
      if (kind === 'reduce') return { content: 'Keine der Fakten wurde verwendet, soweit ich das beurteilen kann.' };
      if (kind === 'generate' && !prompt.includes('one thorough description') && !prompt.includes('single-sentence caption')) {
        return { content: 'Question: Was zeigt das Bild?\nAnswer: Auf dem Bild sieht man einen Hund, der im Park spielt und einen roten Ball jagt, während die Sonne scheint.' };
      }
      return { content: 'Auf dem Bild sieht man einen Hund, der im Park spielt und einen roten Ball jagt. Im Hintergrund stehen einige Bäume und ein kleines Haus.' };
    case 'empty':
      return { content: '' };
    case 'truncated-json':
      return { content: '{"question": "What is on the table?", "answer": "A plate of' };
    case 'echo':
      return { content: prompt };
    case 'buried-verdict':
      if (kind === 'check') return { content: 'The answer is partly True, since the information mentions it, but it may be False about the details, so it is hard to be sure about it.' };
      if (kind === 'reduce') return { content: 'I cannot tell. B. A fire hydrant is perhaps used, and C might be as well.' };
      return { content: 'Well, there seem to be things in the picture, and the answer would depend on what one means.' };
    case 'capitals':
      // Lone capitals and verdict words in prose: never codes, never a verdict.
      return { content: kind === 'check' ? 'It is not true that the answer is right, so: maybe' : 'I cannot tell. A. B.' };
    case 'cut-short': {
      const good = fakeAnswer(prompt);
      return { content: good.slice(0, Math.max(1, Math.floor(good.length * 0.6))), finishReason: 'length' };
    }
    case 'thinking':
      return { content: `<think>The list has A and B. Is it True or False? Maybe False. Codes: A, B, C.</think>\n${fakeAnswer(prompt)}` };
    case 'reasoning-field':
      return { content: fakeAnswer(prompt), reasoningContent: 'Considering codes A, B and whether it is True or False. Question: what? Answer: nothing.' };
  }
}
