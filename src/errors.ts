/**
 * One error class for everything instructify reports, in the manner of undici:
 * a stable `code` that scripts can match on, plus the context a user needs to
 * find the problem (which file, which byte, which image), and `cause` for the
 * underlying error.
 */
export type ErrorCode =
  | 'E_OPTION'            // bad command-line option or config value
  | 'E_JSON_SYNTAX'       // malformed JSON in an input file
  | 'E_JSON_TRUNCATED'    // input ended inside a value
  | 'E_CSV_SYNTAX'        // malformed CSV/TSV (csv-parse's message, with the line)
  | 'E_PARQUET'           // a Parquet file that cannot be read
  | 'E_WRONG_KIND'        // file does not look like what the source expects
  | 'E_BAD_RECORD'        // a record is invalid (fatal only in strict mode)
  | 'E_IO'                // reading or writing files
  | 'E_PIPE_CLOSED'       // the reader of stdout went away (`| head`): a normal end
  | 'E_LLM'               // an LLM request failed for good (after retries, or a 4xx)
  | 'E_INTERRUPTED'       // stopped by SIGINT/SIGTERM; the output says "interrupted"
  | 'E_INTERNAL';

export interface ErrorContext {
  file?: string;
  offset?: number;
  imageId?: string;
  source?: string;
  cause?: unknown;
}

export class InstructifyError extends Error {
  readonly code: ErrorCode;
  readonly file?: string;
  readonly offset?: number;
  readonly imageId?: string;
  readonly source?: string;
  /** The message without the context prefix (to rebuild the error in another thread). */
  readonly detail: string;

  constructor(code: ErrorCode, message: string, ctx: ErrorContext = {}) {
    super(formatMessage(message, ctx), ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = 'InstructifyError';
    this.code = code;
    this.detail = message;
    this.file = ctx.file;
    this.offset = ctx.offset;
    this.imageId = ctx.imageId;
    this.source = ctx.source;
  }
}

function formatMessage(message: string, ctx: ErrorContext): string {
  const where: string[] = [];
  if (ctx.file !== undefined) where.push(ctx.file + (ctx.offset !== undefined ? ` at byte ${ctx.offset}` : ''));
  else if (ctx.offset !== undefined) where.push(`at byte ${ctx.offset}`);
  if (ctx.imageId !== undefined) where.push(`image ${ctx.imageId}`);
  return where.length ? `${where.join(', ')}: ${message}` : message;
}

export function optionError(message: string): InstructifyError {
  return new InstructifyError('E_OPTION', message);
}

/** An error as plain data, to post from a worker thread (Error objects lose their fields on the way). */
export interface ErrorData {
  code: string;
  detail: string;
  file?: string;
  offset?: number;
  imageId?: string;
  source?: string;
}

export function errorToData(err: unknown): ErrorData {
  if (err instanceof InstructifyError) return { code: err.code, detail: err.detail, file: err.file, offset: err.offset, imageId: err.imageId, source: err.source };
  return { code: 'E_INTERNAL', detail: err instanceof Error ? err.message : String(err) };
}

export function errorFromData(d: ErrorData): InstructifyError {
  return new InstructifyError(d.code as ErrorCode, d.detail, { file: d.file, offset: d.offset, imageId: d.imageId, source: d.source });
}
