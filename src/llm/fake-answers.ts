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
