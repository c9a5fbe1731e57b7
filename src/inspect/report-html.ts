import type { Box, ImageRecord } from '../types.js';
import type { Conversation, PromptTypeStats } from '../generate/generate.js';

/**
 * The report page as plain functions of its data: no I/O here, so the page
 * can be tested as text. One file, inline CSS and SVG, no script and no
 * network: it opens from file:// as it is.
 */

/** A distinct colour per source, in the order the run lists its sources; saturated so boxes stand out on photos. */
export const SOURCE_COLOURS = ['#ff1f1f', '#00c000', '#1f5fff', '#ff9a00', '#c000ff', '#00d0d0', '#ff00c8', '#8a6d00', '#808080', '#000000'];

export function colourOf(source: string, sources: string[]): string {
  const i = sources.indexOf(source);
  return SOURCE_COLOURS[(i >= 0 ? i : sources.length) % SOURCE_COLOURS.length]!;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A turn the checks took out, as generate's turns-rejected.jsonl has it. */
export interface RejectedTurn {
  image: string;
  prompt_type: string;
  reason: string;
  question: string;
  answer: string;
}

/** A record prepare set aside (or a box of it), as rejects.jsonl has it. */
export interface RejectLine {
  reason: string;
  detail?: string;
  image?: string | null;
}

export interface Card {
  image: string;
  /** The record, when the report could read it (a generate folder names its prepared folder). */
  record: ImageRecord | null;
  /** Thumbnail path relative to the report, its size; null when the image could not be read. */
  thumb: { file: string; width: number; height: number } | null;
  /** Why there is no thumbnail. */
  missing: string | null;
  conversations: Conversation[];
  rejectedTurns: RejectedTurn[];
  rejects: RejectLine[];
}

export interface Histogram {
  title: string;
  /** Bucket labels and counts, in order. */
  buckets: { label: string; count: number }[];
}

export interface ReportSummary {
  kind: 'prepare' | 'generate';
  input: string;
  images: number;
  conversations: number | null;
  sources: Record<string, { fragments?: number; images?: number }>;
  rejects: Record<string, number>;
  perPromptType: Record<string, PromptTypeStats> | null;
  charts: Histogram[];
  settings: Record<string, unknown>;
  sample: { shown: number; of: number; seed: number; pick: string };
}

/** A small bar chart as inline SVG: a bar per bucket, its count above it. */
export function histogramSvg(h: Histogram): string {
  const w = 28;
  const height = 100;
  const max = Math.max(1, ...h.buckets.map((b) => b.count));
  const bars = h.buckets
    .map((b, i) => {
      const bh = Math.round((b.count / max) * 60);
      const x = 4 + i * w;
      return (
        `<rect x="${x}" y="${80 - bh}" width="${w - 6}" height="${bh}" fill="#4a6fa5"><title>${escapeHtml(b.label)}: ${b.count}</title></rect>` +
        `<text x="${x + (w - 6) / 2}" y="${76 - bh}" font-size="9" text-anchor="middle">${b.count}</text>` +
        `<text x="${x + (w - 6) / 2}" y="94" font-size="9" text-anchor="middle">${escapeHtml(b.label)}</text>`
      );
    })
    .join('');
  return `<figure class="chart"><svg width="${8 + h.buckets.length * w}" height="${height}" role="img" aria-label="${escapeHtml(h.title)}">${bars}</svg><figcaption>${escapeHtml(h.title)}</figcaption></figure>`;
}

/** Counts into buckets: exact values up to `exactUpTo`, then ranges doubling in width. */
export function bucketize(values: Map<number, number>, exactUpTo: number, title: string): Histogram {
  const buckets: { label: string; count: number }[] = [];
  const max = Math.max(0, ...values.keys());
  for (let v = 0; v <= Math.min(max, exactUpTo); v++) buckets.push({ label: String(v), count: values.get(v) ?? 0 });
  for (let lo = exactUpTo + 1, width = exactUpTo + 1; lo <= max; lo += width, width *= 2) {
    let count = 0;
    for (const [v, n] of values) if (v >= lo && v < lo + width) count += n;
    buckets.push({ label: `${lo}-${lo + width - 1}`, count });
  }
  // Leading empty buckets say nothing.
  while (buckets.length > 1 && buckets[0]!.count === 0) buckets.shift();
  return { title, buckets };
}

function table(head: string[], rows: (string | number)[][]): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const tr = rows.map((r) => `<tr>${r.map((c) => `<td>${typeof c === 'number' ? c : escapeHtml(c)}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table>`;
}

function summaryHtml(s: ReportSummary, sources: string[], boxSources: string[]): string {
  const parts: string[] = [];
  const counts = [`${s.images} images`, ...(s.conversations !== null ? [`${s.conversations} conversations`] : []), `showing ${s.sample.shown} of ${s.sample.of} (${s.sample.pick}, seed ${s.sample.seed})`];
  parts.push(`<p class="counts">${counts.map(escapeHtml).join(' · ')}</p>`);
  const legend = boxSources.map((src) => `<span class="swatch" style="background:${colourOf(src, sources)}"></span>${escapeHtml(src)}`).join(' ');
  if (boxSources.length) parts.push(`<p class="legend">boxes by source: ${legend}</p>`);
  parts.push('<div class="tables">');
  const srcRows = Object.entries(s.sources).map(([k, v]) => [k, v.fragments ?? '', v.images ?? '']);
  if (srcRows.length) parts.push(`<section><h3>Sources</h3>${table(['source', 'fragments', 'images'], srcRows as (string | number)[][])}</section>`);
  const rejectRows = Object.entries(s.rejects).sort((a, b) => b[1] - a[1]);
  parts.push(`<section><h3>Set aside</h3>${rejectRows.length ? table(['reason', 'count'], rejectRows) : '<p>nothing</p>'}</section>`);
  if (s.perPromptType) {
    const rows = Object.entries(s.perPromptType)
      .filter(([, t]) => t.role !== 'internal')
      .map(([k, t]) => [k, t.generated, t.accepted, t.parseFailures, t.turnsRejected, t.conversationsRejected]);
    parts.push(`<section><h3>Prompt types</h3>${table(['prompt type', 'generated', 'kept', 'parse failures', 'turns rejected', 'conversations rejected'], rows)}</section>`);
  }
  parts.push('</div>');
  if (s.charts.length) parts.push(`<div class="charts">${s.charts.map(histogramSvg).join('')}</div>`);
  parts.push(`<details><summary>Settings (from the manifest)</summary><pre>${escapeHtml(JSON.stringify(s.settings, null, 2))}</pre></details>`);
  return parts.join('\n');
}

function boxRows(boxes: Box[], sources: string[]): string {
  if (!boxes.length) return '<p class="none">no boxes</p>';
  const rows = boxes
    .map(
      (b) =>
        `<tr><td><span class="swatch" style="background:${colourOf(b.source, sources)}"></span>${escapeHtml(b.label)}</td><td>${escapeHtml(b.source)}</td>` +
        `<td>${[b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(3)).join(', ')}</td><td>${b.mask ? escapeHtml(b.mask.format) : ''}</td></tr>`,
    )
    .join('');
  return `<details><summary>${boxes.length} ${boxes.length === 1 ? 'box' : 'boxes'}</summary><table><thead><tr><th>label</th><th>source</th><th>x1, y1, x2, y2</th><th>mask</th></tr></thead><tbody>${rows}</tbody></table></details>`;
}

function informationHtml(r: ImageRecord): string {
  const items: string[] = [];
  for (const c of r.captions) items.push(`<li><span class="tag">caption · ${escapeHtml(c.source)}</span> ${escapeHtml(c.text)}</li>`);
  for (const f of r.facts) items.push(`<li><span class="tag">fact · ${escapeHtml(f.source)}</span> ${escapeHtml(f.text)}</li>`);
  for (const q of r.qa) items.push(`<li><span class="tag">QA · ${escapeHtml(q.source)}</span> ${escapeHtml(q.question)} — ${escapeHtml(q.answer)}</li>`);
  for (const g of r.regions) items.push(`<li><span class="tag">region · ${escapeHtml(g.source)}</span> ${escapeHtml(g.text)}</li>`);
  if (r.absent.length) items.push(`<li><span class="tag">absent</span> ${escapeHtml(r.absent.join(', '))}</li>`);
  return items.length ? `<ul class="info">${items.join('')}</ul>` : '<p class="none">no information</p>';
}

function conversationHtml(c: Conversation): string {
  const turns = c.conversations.map((t) => `<dt>${t.from === 'human' ? 'human' : 'gpt'}</dt><dd>${escapeHtml(t.value.replace(/^<image>\n/, ''))}</dd>`).join('');
  return `<div class="conversation" data-prompt-type="${escapeHtml(c.promptType)}"><h4>${escapeHtml(c.promptType)} <small>${escapeHtml(c.generator)}${c.model !== 'none' ? ` · ${escapeHtml(c.model)}` : ''}</small></h4><dl>${turns}</dl></div>`;
}

function rejectedTurnsHtml(turns: RejectedTurn[]): string {
  if (!turns.length) return '';
  const why = (r: string) => (r === 'first-turn-false' ? 'first turn failed its check: the conversation was dropped' : r === 'check-false' ? 'the check said false' : r);
  const rows = turns.map((t) => `<li><span class="tag">${escapeHtml(t.prompt_type)} · ${escapeHtml(why(t.reason))}</span> Q: ${escapeHtml(t.question)}<br>A: ${escapeHtml(t.answer)}</li>`).join('');
  return `<details class="rejected"><summary>${turns.length} turns the checks rejected</summary><ul>${rows}</ul></details>`;
}

export function cardHtml(card: Card, sources: string[], index: number): string {
  const r = card.record;
  // The test (and anyone curious) can find every drawn box from the card itself.
  const boxesData = r ? JSON.stringify(r.boxes.map((b) => ({ label: b.label, source: b.source, colour: colourOf(b.source, sources), x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 }))) : '[]';
  const picture = card.thumb
    ? `<img src="${escapeHtml(card.thumb.file)}" width="${card.thumb.width}" height="${card.thumb.height}" loading="lazy" alt="${escapeHtml(card.image)} with its boxes">`
    : `<div class="missing">${escapeHtml(card.missing ?? 'no image')}</div>`;
  const size = r && r.width !== null ? ` · ${r.width}×${r.height}` : '';
  const parts = [
    `<article class="card" id="card-${index}" data-image="${escapeHtml(card.image)}" data-boxes="${escapeHtml(boxesData)}">`,
    `<h2>${escapeHtml(card.image)}<small>${r ? ` · ${escapeHtml(r.sources.join(', '))}` : ''}${size}</small></h2>`,
    `<div class="row"><div class="picture">${picture}${r ? boxRows(r.boxes, sources) : ''}</div>`,
    `<div class="text">${r ? `<h3>Tree</h3><pre class="tree">${escapeHtml(r.tree ?? '(no tree)')}</pre><h3>Information</h3>${informationHtml(r)}` : '<p class="none">the prepared record is not available</p>'}`,
  ];
  if (card.rejects.length) parts.push(`<h3>Set aside</h3><ul class="rejects">${card.rejects.map((x) => `<li><span class="tag">${escapeHtml(x.reason)}</span> ${escapeHtml(x.detail ?? '')}</li>`).join('')}</ul>`);
  if (card.conversations.length || card.rejectedTurns.length) {
    parts.push(`<h3>Conversations (${card.conversations.length})</h3>${card.conversations.map(conversationHtml).join('')}${rejectedTurnsHtml(card.rejectedTurns)}`);
  }
  parts.push('</div></div></article>');
  return parts.join('\n');
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:16px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{font-size:16px;margin:0 0 8px;word-break:break-all}h2 small{font-weight:normal;color:#666}
h3{font-size:13px;margin:10px 0 4px;color:#444}h4{margin:6px 0 2px;font-size:13px}h4 small{font-weight:normal;color:#777}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px;margin:12px 0}
.row{display:flex;gap:16px;align-items:flex-start}.picture{flex:0 0 auto;max-width:50%}.picture img{display:block;max-width:100%;height:auto}
.text{flex:1 1 auto;min-width:0}pre{background:#f4f4f4;padding:6px;overflow:auto;font-size:12px;margin:0}
.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px;vertical-align:middle}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.tables{display:flex;gap:24px;flex-wrap:wrap}.charts{display:flex;gap:24px;flex-wrap:wrap}
.chart{margin:8px 0}.chart figcaption{font-size:12px;color:#555}
.tag{display:inline-block;font-size:11px;color:#555;background:#eee;border-radius:3px;padding:0 4px;margin-right:4px}
.info,.rejects,.rejected ul{padding-left:18px;margin:4px 0}dl{margin:0}dt{font-weight:bold;font-size:12px;color:#555}dd{margin:0 0 4px 12px}
.conversation{border-left:3px solid #4a6fa5;padding-left:8px;margin:6px 0}.rejected summary{color:#a33;cursor:pointer}
.missing{width:320px;height:200px;display:flex;align-items:center;justify-content:center;background:#eee;color:#777}
.none{color:#888}
`;

export function pageHtml(title: string, summary: ReportSummary, cards: Card[], sources: string[]): string {
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<style>${CSS}</style></head><body>`,
    `<header><h1>${escapeHtml(title)}</h1><p>${escapeHtml(summary.kind)} output: ${escapeHtml(summary.input)}</p>`,
    summaryHtml(summary, sources, [...new Set(cards.flatMap((c) => c.record?.boxes.map((b) => b.source) ?? []))].sort((a, b) => sources.indexOf(a) - sources.indexOf(b))),
    '</header><main>',
    ...cards.map((c, i) => cardHtml(c, sources, i)),
    '</main></body></html>',
    '',
  ].join('\n');
}
