import os from 'node:os';
import path from 'node:path';
import type { Box } from '../types.js';
import { loadTesseract, type OcrWord, type TesseractWorker } from './runtime.js';

/**
 * OCR with tesseract.js and the English data of @tesseract.js-data/eng,
 * read from the installed package: no download. Words above a confidence
 * become labelled boxes, and the text one fact.
 */
export interface OcrResult {
  words: OcrWord[];
  /** "The text in the image reads: ...", or null when nothing was read. */
  fact: string | null;
  boxes: Box[];
}

export const OCR_SOURCE = 'ocr';

export class OcrReader {
  private constructor(private readonly worker: TesseractWorker, readonly minConfidence: number) {}

  static async start(minConfidence: number): Promise<OcrReader> {
    const { tesseract, langPath, gzip } = loadTesseract();
    // cachePath: where tesseract.js keeps the unpacked data between runs (not a download).
    const worker = await tesseract.createWorker('eng', 1, { langPath, gzip, cachePath: path.join(os.tmpdir(), 'instructify-tesseract'), logger: () => {} });
    return new OcrReader(worker, minConfidence);
  }

  async read(file: string, width: number, height: number): Promise<OcrResult> {
    const r = await this.worker.recognize(file, {}, { blocks: true, text: true });
    const lines = (r.data.blocks ?? []).flatMap((b) => b.paragraphs.flatMap((p) => p.lines));
    const kept = lines.map((l) => l.words.filter((w) => w.confidence >= this.minConfidence && /\w/.test(w.text)));
    const words = kept.flat();
    const text = kept.map((ws) => ws.map((w) => w.text).join(' ')).filter(Boolean).join(' ');
    const boxes: Box[] = words.map((w) => ({
      label: `text "${w.text}"`,
      x1: Math.max(0, w.bbox.x0 / width),
      y1: Math.max(0, w.bbox.y0 / height),
      x2: Math.min(1, w.bbox.x1 / width),
      y2: Math.min(1, w.bbox.y1 / height),
      attributes: [],
      relations: [],
      source: OCR_SOURCE,
      iscrowd: false,
      sourceId: null,
      mask: null,
    }));
    return { words, fact: text ? `The text in the image reads: "${text}".` : null, boxes };
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
