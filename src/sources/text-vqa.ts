import { planAsGiven } from './files.js';
import { recordHandler, strings } from './records.js';
import { mostCommon } from './vqa.js';
import { emptyFragment, num, str, type HandlerContext, type PlannedFile, type SourceKind } from './types.js';
import type { Fragment } from '../types.js';

/**
 * TextVQA and TextCaps (text in natural images; Open Images photos shared by
 * both, named `train_images/<image_id>.jpg`, test ones under `test_images/`).
 * Files are told apart per record:
 * - TextVQA questions (`TextVQA_0.5.1_*.json`): `question` and ten `answers`;
 * - TextCaps captions (`TextCaps_0.1_*.json`): `caption_str`;
 * - Rosetta OCR (`TextVQA_Rosetta_OCR_v0.2_*.json`) or any record with
 *   `ocr_tokens`: the words become one statement, "The text in the image
 *   reads: ...".
 */
export function textImageFragment(el: Record<string, unknown>, ctx: HandlerContext, file: string, offset: number): Fragment {
  const id = str(el.image_id) ?? '';
  const f = emptyFragment(`textvqa:${id}`, ctx, file, offset);
  f.path = `${str(el.set_name) === 'test' ? 'test_images' : 'train_images'}/${id}.jpg`;
  const w = num(el.image_width);
  const h = num(el.image_height);
  if (w > 0 && h > 0) {
    f.width = w;
    f.height = h;
  }
  return f;
}

export function ocrSentence(tokens: string[]): string | null {
  const words = tokens.map((t) => t.trim()).filter(Boolean);
  return words.length ? `The text in the image reads: ${words.join(' ')}.` : null;
}

function textHandler(what: string) {
  return (file: PlannedFile, ctx: HandlerContext) =>
    recordHandler(file, ctx, {
      what,
      arrayKey: [null, 'data'],
      skipKeys: ['dataset_type', 'dataset_name', 'dataset_version'],
      required: ['image_id'],
      onRecord(el, v) {
        const f = textImageFragment(el, ctx, file.path, v.offset);
        if (typeof el.question === 'string') {
          const answers = strings(el.answers);
          const answer = mostCommon(answers);
          if (answer) f.qa.push({ id: str(el.question_id), question: el.question.trim(), answer, answers });
        }
        if (typeof el.caption_str === 'string' && el.caption_str.trim()) f.captions.push(el.caption_str.trim());
        const ocr = ocrSentence(strings(el.ocr_tokens));
        if (ocr) f.facts.push(ocr);
        if (f.qa.length || f.captions.length || f.facts.length || f.width !== null) ctx.sink.emit(f);
      },
    });
}

export const textvqa: SourceKind = {
  kind: 'textvqa',
  family: 'textvqa',
  expects: 'TextVQA_0.5.1_*.json (questions, ten answers) [+ TextVQA_Rosetta_OCR_v0.2_*.json (OCR tokens)]',
  plan: async (paths) => planAsGiven(paths, 'auto'),
  handler: textHandler('TextVQA'),
};

export const textcaps: SourceKind = {
  kind: 'textcaps',
  family: 'textvqa',
  expects: 'TextCaps_0.1_*.json (caption_str per image) [+ Rosetta OCR files]',
  plan: async (paths) => planAsGiven(paths, 'auto'),
  handler: textHandler('TextCaps'),
};
