import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Conversation } from './generate/generate.js';
import { expectOutputOf, readShards } from './shard-reader.js';
import { llmCall, type CallStats } from './generate/caller.js';
import { boxList, runLoop } from './generate/loop.js';
import { loadDistribution, loadPrompts, render } from './generate/prompts.js';
import { InstructifyError } from './errors.js';
import { LlmClient, type LlmClientOptions } from './llm/client.js';
import type { ImageRecord } from './types.js';

/**
 * `stats` and `preview`: looking at what a run made, and at what a run
 * would send, before spending GPU time on it.
 */
export interface FolderStats {
  kind: 'prepare' | 'generate';
  status: string;
  images: number;
  conversations?: number;
  byPromptType?: Record<string, { conversations: number; turns: number; avgQuestionChars: number; avgAnswerChars: number; acceptRate: number | null }>;
  byGenerator?: Record<string, number>;
  counts?: Record<string, number>;
  rejects: Record<string, number>;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InstructifyError('E_OPTION', `no manifest.json here: is this a prepare or generate output folder?`, { file, cause: err });
  }
}

async function rejectsByReason(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const text = await readFile(path.join(dir, 'rejects.jsonl'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line) continue;
    const r = (JSON.parse(line) as { reason?: string }).reason ?? 'unknown';
    out[r] = (out[r] ?? 0) + 1;
  }
  return out;
}

export async function folderStats(dir: string): Promise<FolderStats> {
  const m = await readJson(path.join(dir, 'manifest.json'));
  const rejects = await rejectsByReason(dir);
  if (m.command === 'prepare') {
    const counts = (m.counts ?? {}) as Record<string, number>;
    return { kind: 'prepare', status: String(m.status), images: counts.images ?? 0, counts, rejects };
  }
  const perType = (m.perPromptType ?? {}) as Record<string, { generated: number; accepted: number }>;
  const by: NonNullable<FolderStats['byPromptType']> = {};
  const gens: Record<string, number> = {};
  const images = new Set<string>();
  const sums: Record<string, { q: number; a: number; turns: number }> = {};
  let conversations = 0;
  for await (const c of readShards<Conversation>(dir, /^part-[\w-]+\.(parquet|jsonl)$/)) {
    conversations++;
    images.add(c.image);
    gens[c.generator] = (gens[c.generator] ?? 0) + 1;
    const s = (sums[c.promptType] ??= { q: 0, a: 0, turns: 0 });
    const e = (by[c.promptType] ??= { conversations: 0, turns: 0, avgQuestionChars: 0, avgAnswerChars: 0, acceptRate: null });
    e.conversations++;
    for (const t of c.conversations) {
      if (t.from === 'human') {
        s.q += t.value.replace('<image>\n', '').length;
        e.turns++;
      } else s.a += t.value.length;
    }
    s.turns = e.turns;
  }
  for (const [k, e] of Object.entries(by)) {
    e.avgQuestionChars = Math.round(sums[k]!.q / Math.max(1, e.turns));
    e.avgAnswerChars = Math.round(sums[k]!.a / Math.max(1, e.turns));
    const t = perType[k];
    e.acceptRate = t && t.generated ? Math.round((1000 * t.accepted) / t.generated) / 1000 : null;
  }
  return { kind: 'generate', status: String(m.status), images: images.size, conversations, byPromptType: by, byGenerator: gens, rejects };
}

export function formatStats(s: FolderStats): string {
  const lines = [`${s.kind} output, ${s.status}: ${s.images} images`];
  if (s.counts) lines.push(`  ${Object.entries(s.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (s.byPromptType) {
    lines.push(`  ${s.conversations} conversations; by generator: ${Object.entries(s.byGenerator!).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    lines.push('  prompt type            conversations  turns  avg question  avg answer  accepted');
    for (const [k, v] of Object.entries(s.byPromptType).sort()) {
      lines.push(`  ${k.padEnd(22)} ${String(v.conversations).padStart(13)} ${String(v.turns).padStart(6)} ${String(v.avgQuestionChars).padStart(13)} ${String(v.avgAnswerChars).padStart(11)}  ${v.acceptRate === null ? '-' : `${Math.round(100 * v.acceptRate)}%`}`);
    }
  }
  lines.push(`  rejects: ${Object.entries(s.rejects).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  return lines.join('\n');
}

export interface PreviewOptions {
  input: string;
  count: number;
  distribution: string;
  promptDirs?: string[];
  llm?: LlmClientOptions;
  seed?: number;
  log: (s: string) => void;
}

/**
 * Show, for a few records, the information, the tree and the prompts that
 * would be sent. With an LLM, run the loop and show every prompt and answer.
 */
export async function preview(o: PreviewOptions): Promise<void> {
  const prompts = loadPrompts(o.promptDirs ?? []);
  const distribution = loadDistribution(o.distribution, prompts);
  const client = o.llm ? new LlmClient(o.llm) : null;
  await expectOutputOf(o.input, 'prepare', 'preview');
  const rule = (title: string) => o.log(`\n── ${title} ${'─'.repeat(Math.max(0, 70 - title.length))}`);
  let n = 0;
  try {
    for await (const rec of readShards<ImageRecord>(o.input)) {
      if (n++ >= o.count) break;
      rule(`${rec.image} (${rec.width ?? '?'}x${rec.height ?? '?'}, ${rec.sources.join(', ')})`);
      o.log('captions:');
      for (const c of rec.captions) o.log(`  ${c.text}`);
      if (rec.facts?.length) {
        o.log('facts:');
        for (const f of rec.facts) o.log(`  ${f.text}`);
      }
      if (rec.qa.length) {
        o.log('question/answer pairs:');
        for (const q of rec.qa) o.log(`  Q: ${q.question}  A: ${q.answer}`);
      }
      if (rec.tree) {
        o.log('tree:');
        for (const l of rec.tree.split('\n')) o.log(`  ${l}`);
      }
      if (client) {
        const stats: CallStats = { requests: {}, cacheHits: 0, promptTokens: 0, completionTokens: 0 };
        const inner = llmCall(client, null, stats);
        const r = await runLoop(rec, {
          prompts,
          distribution,
          options: { seed: o.seed ?? 0 },
          call: async (spec, text) => {
            const answer = await inner(spec, text);
            rule(`prompt: ${spec.name}`);
            o.log(text);
            rule(`answer: ${spec.name}`);
            o.log(answer);
            return answer;
          },
        });
        rule(`kept: ${r.results.length} conversations (stopped: ${r.stats.stop})`);
        for (const c of r.results) for (const t of c.turns) o.log(`  [${c.promptType}] Q: ${t.question}\n    A: ${t.answer}`);
        continue;
      }
      // No LLM: the prompts as they would be sent first.
      if (rec.qa.length) {
        rule('prompt: qa-to-facts');
        o.log(render(prompts.get('qa-to-facts')!, { qa: rec.qa.map((q) => `Q: ${q.question}\nA: ${q.answer}`).join('\n') }));
      }
      if (rec.tree) {
        rule('prompt: tree-to-description');
        o.log(render(prompts.get('tree-to-description')!, { tree: rec.tree }));
      }
      const first = prompts.get(distribution.types[0]!.prompt)!;
      rule(`prompt: ${first.name} (the first of the ${distribution.name} mix; the LLM's facts from QA and the tree join the captions below)`);
      o.log(
        render(first, {
          information: [...rec.captions, ...(rec.facts ?? [])].map((c) => c.text).join("\n"),
          boxes: boxList(rec),
          task: first.tasks?.[0] ?? '',
          option_count: '4',
          label_style: 'A, B, C, ...',
          answer_instruction: "Answer with the option's letter.",
        }),
      );
    }
  } finally {
    await client?.close();
  }
}
