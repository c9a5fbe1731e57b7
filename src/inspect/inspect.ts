import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Conversation, PromptTypeStats } from '../generate/generate.js';
import { expectOutputOf, readShards } from '../write/shard-reader.js';
import { llmCall, type CallStats } from '../generate/caller.js';
import { boxList, runLoop } from '../generate/loop.js';
import { loadDistribution, loadPrompts, render } from '../generate/prompts.js';
import { InstructifyError } from '../errors.js';
import { LlmClient, type LlmClientOptions } from '../llm/client.js';
import type { ImageRecord } from '../types.js';

/**
 * `stats` and `preview`: looking at what a run made, and at what a run
 * would send, before spending GPU time on it.
 */
export interface PromptTypeRow {
  role: string;
  /** Answers asked for. */
  asks: number;
  /** Answers that parsed into a conversation. */
  generated: number;
  /** Conversations kept (as the run counted them). */
  kept: number;
  /** Conversations in the shards (equal to kept for a complete run). */
  conversations: number;
  turns: number;
  avgQuestionChars: number;
  avgAnswerChars: number;
  parseFailures: number;
  refusals: number;
  unusable: Record<string, number>;
  /** kept / generated; null when nothing parsed. */
  acceptRate: number | null;
}

export interface FolderStats {
  kind: 'prepare' | 'generate';
  status: string;
  /** prepare: images written; generate: images worked on. */
  images: number;
  /** generate: images with at least one conversation in the shards. */
  imagesWithConversations?: number;
  /** generate: images where no generation answer could be used. */
  unusableImages?: number;
  conversations?: number;
  byPromptType?: Record<string, PromptTypeRow>;
  byGenerator?: Record<string, number>;
  /** generate: requests sent to servers, and answers replayed from the cache instead. */
  requests?: number;
  cacheReplays?: number;
  treeDescriptions?: Record<string, number>;
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

type ManifestTypeStats = Partial<Omit<PromptTypeStats, 'unusable'>> & { unusable?: Record<string, number> };

export async function folderStats(dir: string): Promise<FolderStats> {
  const m = await readJson(path.join(dir, 'manifest.json'));
  const rejects = await rejectsByReason(dir);
  if (m.command === 'prepare') {
    const counts = (m.counts ?? {}) as Record<string, number>;
    return { kind: 'prepare', status: String(m.status), images: counts.images ?? 0, counts, rejects };
  }
  const perType = (m.perPromptType ?? {}) as Record<string, ManifestTypeStats>;
  const by: Record<string, PromptTypeRow> = {};
  const row = (k: string): PromptTypeRow => {
    const t = perType[k] ?? {};
    return (by[k] ??= {
      role: t.role ?? (k.startsWith('facts-') ? 'facts' : 'generate'),
      asks: t.asks ?? 0,
      generated: t.generated ?? 0,
      kept: t.accepted ?? 0,
      conversations: 0,
      turns: 0,
      avgQuestionChars: 0,
      avgAnswerChars: 0,
      parseFailures: t.parseFailures ?? 0,
      refusals: t.refusals ?? 0,
      unusable: t.unusable ?? {},
      acceptRate: t.generated ? Math.round((1000 * (t.accepted ?? 0)) / t.generated) / 1000 : null,
    });
  };
  // Every prompt type the run counted, those that kept nothing included.
  for (const k of Object.keys(perType)) row(k);
  const gens: Record<string, number> = {};
  const images = new Set<string>();
  const sums: Record<string, { q: number; a: number }> = {};
  let conversations = 0;
  // A run that kept nothing wrote no shard: its manifest still has everything to say.
  const shardNames = (await readdir(dir)).filter((n) => /^part-[\w-]+\.(parquet|jsonl)$/.test(n));
  for await (const c of shardNames.length ? readShards<Conversation>(dir, /^part-[\w-]+\.(parquet|jsonl)$/) : []) {
    conversations++;
    images.add(c.image);
    gens[c.generator] = (gens[c.generator] ?? 0) + 1;
    const s = (sums[c.promptType] ??= { q: 0, a: 0 });
    const e = row(c.promptType);
    e.conversations++;
    for (const t of c.conversations) {
      if (t.from === 'human') {
        s.q += t.value.replace('<image>\n', '').length;
        e.turns++;
      } else s.a += t.value.length;
    }
  }
  for (const [k, e] of Object.entries(by)) {
    e.avgQuestionChars = Math.round((sums[k]?.q ?? 0) / Math.max(1, e.turns));
    e.avgAnswerChars = Math.round((sums[k]?.a ?? 0) / Math.max(1, e.turns));
  }
  return {
    kind: 'generate',
    status: String(m.status),
    // Older manifests have no count of images worked on: the images with conversations are all that is known.
    images: typeof m.images === 'number' ? m.images : images.size,
    imagesWithConversations: images.size,
    unusableImages: typeof m.unusableImages === 'number' ? m.unusableImages : 0,
    conversations,
    byPromptType: by,
    byGenerator: gens,
    requests: typeof m.requests === 'number' ? m.requests : 0,
    cacheReplays: typeof m.cacheHits === 'number' ? m.cacheHits : 0,
    treeDescriptions: (m.treeDescriptions ?? {}) as Record<string, number>,
    rejects,
  };
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function formatStats(s: FolderStats): string {
  if (s.kind === 'prepare') {
    const lines = [`prepare output, ${s.status}: ${plural(s.images, 'image')}`];
    if (s.counts) lines.push(`  ${Object.entries(s.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    lines.push(`  rejects: ${Object.entries(s.rejects).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
    return lines.join('\n');
  }
  const lines = [
    `generate output, ${s.status}: ${plural(s.images, 'image')} worked on, ${s.imagesWithConversations} with conversations, ${plural(s.conversations ?? 0, 'conversation')} kept`,
    `  ${plural(s.requests ?? 0, 'request')} to servers, ${plural(s.cacheReplays ?? 0, 'answer')} replayed from the cache; by generator: ${Object.entries(s.byGenerator ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
  ];
  if (s.unusableImages) lines.push(`  ${plural(s.unusableImages, 'image')} where no answer of the model could be used`);
  const table = formatPromptTable(s.byPromptType ?? {});
  lines.push(...table.map((l) => `  ${l}`));
  const td = Object.entries(s.treeDescriptions ?? {});
  if (td.length) lines.push(`  tree descriptions: ${td.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`  rejects: ${Object.entries(s.rejects).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  return lines.join('\n');
}

/**
 * One line per prompt type: generation prompts with what they made and
 * kept, the loop's own prompts as asks and failures only (a check keeps
 * no conversation, so "0/0 kept" would say nothing).
 */
export function formatPromptTable(by: Record<string, Pick<PromptTypeRow, 'role' | 'asks' | 'generated' | 'kept' | 'parseFailures' | 'refusals' | 'unusable'> & { turns?: number }>): string[] {
  const entries = Object.entries(by).sort(([a, x], [b, y]) => (x.role === y.role ? (a < b ? -1 : 1) : x.role === 'internal' ? 1 : -1));
  if (!entries.length) return ['prompt types: none'];
  const lines = ['prompt type            asks  parsed  kept  unusable  refusals  why unusable'];
  for (const [k, v] of entries) {
    const why = Object.entries(v.unusable).filter(([r]) => r !== 'refusal').map(([r, n]) => `${r} ${n}`).join(', ');
    const internal = v.role === 'internal';
    // Facts conversations are read off the record: nothing is asked, nothing can fail to parse.
    const asked = v.role !== 'facts';
    lines.push(
      `${(internal ? `(${k})` : k).padEnd(22)} ${(asked ? String(v.asks) : '-').padStart(5)} ${(internal ? '-' : String(v.generated)).padStart(7)} ${(internal ? '-' : String(v.kept)).padStart(5)} ${(asked ? String(v.parseFailures) : '-').padStart(9)} ${(asked ? String(v.refusals) : '-').padStart(9)}  ${why}`.trimEnd(),
    );
  }
  return lines;
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
            o.log(answer.content);
            if (answer.finishReason !== 'stop' && answer.finishReason !== null) o.log(`(finish_reason: ${answer.finishReason})`);
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
