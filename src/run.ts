import { PassThrough } from 'node:stream';
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { generate, type GenerateOptions, type GenerateResult } from './generate/generate.js';
import { prepare, type PrepareOptions, type PrepareResult } from './prepare.js';
import type { ImageRecord } from './types.js';

/**
 * `run`: prepare and generate in one streaming pipeline. Records leave
 * prepare's main-thread lane into a bounded object stream that generate
 * reads as it goes; nothing is written in between. When generate falls
 * behind, the stream fills and prepare waits.
 */
export interface RunOptions {
  prepare: Omit<PrepareOptions, 'out' | 'recordStream'>;
  generate: Omit<GenerateOptions, 'input'>;
  /** Records waiting between the two, at most. */
  buffer?: number;
}

export async function run(o: RunOptions): Promise<{ prepared: PrepareResult; generated: GenerateResult }> {
  await mkdir(o.generate.out, { recursive: true });
  const channel = new PassThrough({ objectMode: true, highWaterMark: o.buffer ?? 512 });
  const records = channel as unknown as AsyncIterable<ImageRecord>;
  // Errors reach generate through its iterator; this listener only keeps an
  // error raised before it starts reading from being "unhandled".
  channel.on('error', () => {});
  const prepared = prepare({ ...o.prepare, out: '-', rejects: o.prepare.rejects ?? path.join(o.generate.out, 'prepare-rejects.jsonl'), recordStream: channel });
  // If prepare fails, generate must not wait for records that will never come.
  prepared.catch((err: Error) => channel.destroy(err));
  const generated = generate({ ...o.generate, input: records });
  generated.catch(() => channel.destroy());
  const [p, g] = await Promise.allSettled([prepared, generated]);
  // A failing generate closes the channel, which prepare then reports: the first cause is the one to show.
  if (g.status === 'rejected') throw g.reason;
  if (p.status === 'rejected') throw p.reason;
  return { prepared: p.value, generated: g.value };
}
