import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { francAll } from 'franc-min';

/**
 * Tests every free-text answer of a model must pass before any parser or
 * check looks at it. A weak or broken model answers with noise, refusals,
 * another language, the prompt read back, or its own reasoning: none of
 * that may become training data, and none of it may be read as a verdict.
 */

/** Why an answer was not used. 'format' is the parser's own "this is not the declared form". */
export type UnusableReason = 'empty' | 'truncated' | 'refusal' | 'language' | 'echo' | 'format';

export const UNUSABLE_REASONS: readonly UnusableReason[] = ['empty', 'truncated', 'refusal', 'language', 'echo', 'format'];

/**
 * Reasoning models put their thinking before the answer. vLLM and SGLang
 * return it apart (`reasoning_content`, which the client never reads);
 * llama.cpp and Ollama may leave `<think>...</think>` in the content. A
 * block that never closes means the answer is all thinking: nothing is left.
 */
export function withoutThinking(text: string): string {
  let out = text.replace(/<(think|thinking|reasoning)>[\s\S]*?<\/\1>/gi, '');
  // Some chat templates open the block in the prompt, so only its end shows.
  const lone = /<\/(think|thinking|reasoning)>/i.exec(out);
  if (lone) out = out.slice(lone.index + lone[0].length);
  if (/<(think|thinking|reasoning)>/i.test(out)) out = out.slice(0, out.search(/<(think|thinking|reasoning)>/i));
  return out.trim();
}

/**
 * A model declining the task. Specific phrases only: an avoidance answer
 * ("I cannot see a dragon in this image") is training data, not a refusal.
 */
const REFUSALS = [
  /\bas an (ai|a\.i\.|artificial intelligence|language model|llm)\b/i,
  /\b(i am|i'm|i’m) (so |very |truly )?sorry\b/i,
  /\bi apologi[sz]e\b/i,
  /\bi (cannot|can't|can’t|am unable to|'m unable to|am not able to|do not|don't|don’t) (see|view|access|open|process|look at|analy[sz]e) (the |this |that |any )?(images?|pictures?|photos?|photographs?)\b/i,
  /\bi (cannot|can't|can’t|won't|won’t|am unable to|'m unable to|am not able to) (help|assist|comply|fulfil|fulfill|do that|complete (this|that|the) (task|request))\b/i,
  /\b(i do not|i don't|i don’t) have (the )?(ability|access|capability) to (see|view|access)\b/i,
  /\bwithout (seeing|access to) the (image|picture|photo)\b/i,
];

export function isRefusal(text: string): boolean {
  return REFUSALS.some((r) => r.test(text));
}

/** Letters of `text` by script: Latin, and everything else. */
function letterScripts(text: string): { latin: number; other: number } {
  const letters = text.match(/\p{L}/gu)?.length ?? 0;
  const latin = text.match(/\p{Script=Latin}/gu)?.length ?? 0;
  return { latin, other: letters - latin };
}

/** A word made of letters of two scripts ("TRUEβcurr") is noise in any language. */
function hasMixedScriptWord(text: string): boolean {
  for (const m of text.matchAll(/\p{L}+/gu)) {
    const w = m[0];
    if (/\p{Script=Latin}/u.test(w) && /[^\p{Script=Latin}]/u.test(w)) return true;
  }
  return false;
}

/**
 * Below this many letters a language detector guesses; shorter answers
 * ("Yes", "two", "ec-agg") are judged by their script alone.
 */
export const LANGUAGE_MIN_LETTERS = 20;
/**
 * franc's score for the prompt's language, relative to its best guess (1),
 * at least. Measured on the real COCO captions and VQA questions in
 * ../shared/data: English scored 0.68 at the lowest (short captions);
 * one-sentence German, French, Spanish, Italian, Dutch and Portuguese
 * scored 0.33-0.62.
 */
export const LANGUAGE_MIN_SCORE = 0.65;
/**
 * Share of an English text's words that are English words, at least
 * (texts of 6 words or more). Real captions and questions: 0.78 at the
 * lowest. Salad of made-up Latin syllables fools a trigram detector (0.94
 * "English") but not this: 0.33.
 */
export const ENGLISH_WORD_SHARE = 0.6;
/**
 * Past this share of English words the text is English without asking
 * franc: every real caption and question in ../shared/data is (0.78 at the
 * lowest, 0.89 for the first percentile), one-sentence European languages
 * are not (Dutch 0.75, French, Spanish, Italian 0.43-0.44, Portuguese 0.36,
 * German 0.25).
 */
export const ENGLISH_SURE_SHARE = 0.8;

/** 32-bit FNV-1a of a word's UTF-16 code units. */
function wordHash(w: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * ~275,000 English words (an-array-of-english-words) as a sorted array of
 * their 32-bit hashes, loaded on first use (0.1 s). Not a Set of strings: a
 * quarter of a million strings held for the whole run made every full
 * garbage collection longer, and the run's request slots stood idle for it
 * (bench/generate lost ~2% of its rate). A hash collision (about 1 in
 * 15,000 lookups) counts a non-word as a word: a rounding error in a share.
 */
let englishHashes: Uint32Array | null = null;

function loadEnglishHashes(): Uint32Array {
  // Read and parsed here, not through require(), which would keep the array alive in its cache.
  const file = createRequire(import.meta.url).resolve('an-array-of-english-words');
  const words = JSON.parse(readFileSync(file, 'utf8')) as string[];
  const hashes = new Uint32Array(words.length);
  for (let i = 0; i < words.length; i++) hashes[i] = wordHash(words[i]!);
  return hashes.sort();
}

function hasHash(h: number): boolean {
  const a = (englishHashes ??= loadEnglishHashes());
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = a[mid]!;
    if (v === h) return true;
    if (v < h) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function isEnglishWord(w: string): boolean {
  if (hasHash(wordHash(w))) return true;
  const bare = w.replace(/['’]s$/, '');
  return bare !== w && hasHash(wordHash(bare));
}

/**
 * Load the word list now (0.1-0.2 s, synchronous): a run calls this before
 * its first request, so the load does not stall the event loop later with
 * hundreds of answers waiting.
 */
export function preloadLanguageData(): void {
  isEnglishWord('the');
}

/** Share of the words of `text` that are English words; null below `minWords` words (too few to tell). */
export function englishWordShare(text: string, minWords = 6): number | null {
  const words = text.toLowerCase().match(/\p{L}+(?:['’]\p{L}+)*/gu) ?? [];
  if (words.length < minWords) return null;
  return words.filter(isEnglishWord).length / words.length;
}

/**
 * True when the text is in the prompt's language as far as can be told:
 * written in its script (Latin for English; a few foreign letters are
 * allowed, as a name or a sign may have them), no word mixing scripts, and,
 * for text long enough to tell, recognised as that language by franc and,
 * for English, mostly made of English words.
 * Only English prompts ship; `language` is an ISO 639-3 code.
 */
export function isInLanguage(text: string, language = 'eng'): boolean {
  let letters: number;
  // Plain ASCII (most answers): all letters Latin, no word of two scripts; counted without Unicode classes.
  if (/^[\x00-\x7f]*$/.test(text)) letters = text.replace(/[^A-Za-z]/g, '').length;
  else {
    if (hasMixedScriptWord(text)) return false;
    const { latin, other } = letterScripts(text);
    letters = latin + other;
    const latinLanguage = language === 'eng' || language === 'fra' || language === 'deu' || language === 'spa' || language === 'ita' || language === 'por' || language === 'nld';
    if (letters > 0 && latinLanguage && other / letters > 0.1) return false;
  }
  if (letters < LANGUAGE_MIN_LETTERS) return true;
  if (language === 'eng') {
    const share = englishWordShare(text, 3);
    // Almost all English words: no other language gets here (one-sentence Dutch, the closest, 0.75),
    // and the trigram detector, most of this test's CPU, is not needed.
    if (share !== null && share >= ENGLISH_SURE_SHARE) return true;
    if (share !== null && share < ENGLISH_WORD_SHARE && englishWordShare(text) !== null) return false;
  }
  const scores = francAll(text, { minLength: 10 });
  const mine = scores.find(([code]) => code === language)?.[1] ?? 0;
  return mine >= LANGUAGE_MIN_SCORE;
}

/**
 * The lines of a prompt that are its instructions, not its data: those
 * before the first line that is a bare label ("Facts:", "Object list:"),
 * 40 characters or longer, with runs of spaces made one. An answer holding
 * one of them read the prompt back. Computed once per template.
 */
export function instructionLines(prompt: string): string[] {
  const out: string[] = [];
  for (const raw of prompt.split('\n')) {
    const l = raw.trim();
    if (/^[A-Z][A-Za-z ]{1,30}:$/.test(l)) break;
    if (l.length >= 40) out.push(l.replace(/\s+/g, ' '));
  }
  return out;
}

/** The model read the prompt back: a line of the prompt's own instructions appears in the answer. */
export function isEcho(answer: string, promptOrLines: string | readonly string[]): boolean {
  const lines = typeof promptOrLines === 'string' ? instructionLines(promptOrLines) : promptOrLines;
  if (!lines.length) return false;
  const a = /\s{2}|[\t\n]/.test(answer) ? answer.replace(/\s+/g, ' ') : answer;
  return lines.some((l) => a.includes(l));
}

/**
 * The first test of every answer (its thinking already set aside, see
 * `withoutThinking`): null when it may go on to its parser, else why not.
 * The language of prose is the parser's to judge, piece by piece
 * (`readAnswer`); verdicts and codes have strict parsers of their own.
 * `prompt`: the prompt, or its instruction lines.
 */
export function unusable(text: string, o: { prompt: string | readonly string[]; finishReason: string | null }): UnusableReason | null {
  // Cut off by the token limit or a filter: a sentence that stops mid-way ("The man is holding a").
  if (o.finishReason === 'length' || o.finishReason === 'content_filter') return 'truncated';
  if (!text.trim()) return 'empty';
  if (isEcho(text, o.prompt)) return 'echo';
  if (isRefusal(text)) return 'refusal';
  return null;
}
