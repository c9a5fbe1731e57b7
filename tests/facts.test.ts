import { describe, expect, it } from 'vitest';
import { factConversations, positionPhrase } from '../src/generate/facts.js';
import { generate } from '../src/generate/generate.js';
import type { ImageRecord } from '../src/types.js';
import { COCO_CAPTIONS, COCO_INSTANCES, VG_DIR, VQA_ANNOTATIONS, VQA_QUESTIONS, duckdb, readJsonlShards, runPrepare, tmpDir } from './helpers.js';

describe('conversations from facts alone (no LLM)', async () => {
  const { result, out } = await runPrepare({
    sources: [
      { kind: 'coco-captions', paths: [COCO_CAPTIONS] },
      { kind: 'coco-instances', paths: [COCO_INSTANCES] },
      { kind: 'vg', paths: [VG_DIR] },
      { kind: 'vqav2', paths: [VQA_QUESTIONS, VQA_ANNOTATIONS] },
    ],
    format: 'jsonl',
  });
  const records = await readJsonlShards<ImageRecord>(out, result);

  it('answers only what each record says', () => {
    const seen = new Set<string>();
    for (const rec of records) {
      for (const conv of factConversations(rec, { seed: 1, maxTurns: 50 })) {
        seen.add(conv.promptType);
        for (const t of conv.turns) {
          const a = t.answer;
          switch (conv.promptType) {
            case 'facts-describe':
              // A caption as written, with a full stop added when it had no closing mark.
              expect(rec.captions.some((c) => a === c.text.trim() || a === `${c.text.trim()}.`)).toBe(true);
              break;
            case 'facts-count':
              expect(a).toMatch(/^There (?:is one .+|are \d+ .+|are many .+|is a group of .+)\.$/);
              break;
            case 'facts-where':
              expect(a).toMatch(/^The .+ is (?:on the left|on the right|in the middle|in the centre)/);
              break;
            case 'facts-is-there':
              expect(a.startsWith('Yes, ')).toBe(true);
              break;
            case 'facts-qa':
              // The dataset's answer, character for character.
              expect(rec.qa.some((q) => t.question.toLowerCase() === q.question.trim().toLowerCase() && (a === q.answer.trim() || a === `${q.answer.trim()}.`))).toBe(true);
              break;
            case 'facts-region':
              expect(rec.regions.some((r) => a.toLowerCase().startsWith(r.text.toLowerCase().replace(/\.$/, '')))).toBe(true);
              break;
            case 'facts-relation':
              // A sentence with the relation's predicate and object, about a box that has it.
              expect(rec.boxes.some((b) => b.relations.some((rel) => a.startsWith(`The ${b.label} `) && a.endsWith(` ${rel}.`)))).toBe(true);
              break;
            default:
              throw new Error(`unexpected type ${conv.promptType}`);
          }
        }
      }
    }
    expect([...seen].sort()).toEqual(['facts-count', 'facts-describe', 'facts-is-there', 'facts-qa', 'facts-region', 'facts-relation', 'facts-where']);
  });

  it('positions follow the tree: y up, thirds of the image', () => {
    expect(positionPhrase({ cx: 0.1, cy: 0.9 })).toBe('on the left of the image, near the top');
    expect(positionPhrase({ cx: 0.5, cy: 0.5 })).toBe('in the centre of the image');
    expect(positionPhrase({ cx: 0.9, cy: 0.1 })).toBe('on the right of the image, near the bottom');
  });

  it('generate without --llm-url writes the same conversation shards, marked generator "facts"', async () => {
    const out2 = await tmpDir();
    const r = await generate({ input: out, out: out2, distribution: 'instructify-mix' });
    expect(r.requests).toBe(0);
    const [row] = await duckdb<{ n: string; gens: string; models: string }>(
      `select count(*)::varchar as n, string_agg(distinct generator, ',') as gens, string_agg(distinct model, ',') as models from '${out2}/part-*.parquet'`,
    );
    expect(row).toEqual({ n: String(r.conversations), gens: 'facts', models: 'none' });
    expect(r.conversations).toBeGreaterThan(records.length);
  });
});
