import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ChatMessage, ChatResult, Sampling } from './client.js';
import { InstructifyError } from '../errors.js';

/**
 * LLM answers kept in SQLite, keyed by a hash of the model, the messages and
 * the sampling parameters. A rerun after a crash (or with the same settings)
 * replays answers from here instead of asking the server again.
 */
export function cacheKey(model: string, messages: ChatMessage[], sampling: Sampling): string {
  return createHash('sha256').update(JSON.stringify([model, messages, sampling.temperature, sampling.maxTokens, sampling.seed])).digest('hex');
}

/**
 * better-sqlite3 is native: its binding is built or downloaded by its
 * install script, which npm 11 runs only once the user approves it. When
 * it cannot load, the user gets what happened and the two ways on, not a
 * bare MODULE_NOT_FOUND. (INSTRUCTIFY_SQLITE_BINDING names another binding
 * file: the tests point it at a missing one.)
 */
function openDatabase(file: string): Database.Database {
  const binding = process.env.INSTRUCTIFY_SQLITE_BINDING;
  try {
    return new Database(file, binding ? { nativeBinding: binding } : {});
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const message = e.message ?? String(err);
    if (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_DLOPEN_FAILED' || /bindings|\.node\b|NODE_MODULE_VERSION|invalid ELF/i.test(message)) {
      throw new InstructifyError(
        'E_DEPENDENCY',
        `the answer cache needs better-sqlite3's native binding, which did not load (${message.split('\n')[0]}). Build it with "npm rebuild better-sqlite3" (and allow its install script if npm asks: npm 11 runs install scripts only once approved), or run without the cache: --no-cache`,
        { file: file === ':memory:' ? undefined : file, cause: err },
      );
    }
    throw err;
  }
}

/** Load the binding now, before anything is written, so a run that cannot cache says so at once. */
export function checkCacheBinding(): void {
  openDatabase(':memory:').close();
}

export class ResponseCache {
  private readonly db: Database.Database;
  private readonly getStmt: Database.Statement<[string], { content: string; finish_reason: string | null; prompt_tokens: number; completion_tokens: number }>;
  private readonly putStmt: Database.Statement<[string, string, string, string | null, number, number, number]>;
  hits = 0;
  misses = 0;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = openDatabase(file);
    // WAL: readers never wait for the writer, and a crash loses at most the last transaction.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`create table if not exists answers (
      key text primary key,
      model text not null,
      content text not null,
      prompt_tokens integer not null,
      completion_tokens integer not null,
      created integer not null
    )`);
    // Caches made before finish reasons were kept gain the column; their rows read as null (not cut short).
    const columns = this.db.prepare('select name from pragma_table_info(?)').all('answers') as { name: string }[];
    if (!columns.some((c) => c.name === 'finish_reason')) this.db.exec('alter table answers add column finish_reason text');
    this.getStmt = this.db.prepare('select content, finish_reason, prompt_tokens, completion_tokens from answers where key = ?');
    this.putStmt = this.db.prepare('insert or replace into answers (key, model, content, finish_reason, prompt_tokens, completion_tokens, created) values (?, ?, ?, ?, ?, ?, ?)');
  }

  get(key: string): Pick<ChatResult, 'content' | 'finishReason' | 'usage'> | null {
    const row = this.getStmt.get(key);
    if (!row) {
      this.misses++;
      return null;
    }
    this.hits++;
    return { content: row.content, finishReason: row.finish_reason, usage: { promptTokens: row.prompt_tokens, completionTokens: row.completion_tokens } };
  }

  put(key: string, model: string, r: Pick<ChatResult, 'content' | 'finishReason' | 'usage'>): void {
    this.putStmt.run(key, model, r.content, r.finishReason, r.usage.promptTokens, r.usage.completionTokens, Date.now());
  }

  size(): number {
    return (this.db.prepare('select count(*) as n from answers').get() as { n: number }).n;
  }

  close(): void {
    this.db.close();
  }
}
