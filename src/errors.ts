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
  | 'E_OUTPUT'            // the output folder is not this command's to write (exit 2)
  | 'E_EMPTY'             // nothing to write: prepare set every record aside, or generate got no record (exit 3)
  | 'E_FILE_FORMAT'       // an input is a known other format (a pickle, an archive): the message says how to convert it
  | 'E_DEPENDENCY'        // a native part did not load (better-sqlite3's binding): the message says how to fix it
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

/** What to do about a file system error, by its code. */
const IO_REMEDIES: Record<string, string> = {
  ENOSPC: 'the disk is full: free some space, or write elsewhere (--out, --tmp-dir)',
  EDQUOT: 'the disk quota is used up: free some space, or write elsewhere (--out, --tmp-dir)',
  EACCES: 'no permission: check the owner and mode of the file or folder, or use another one',
  EPERM: 'not permitted: check the owner and mode of the file or folder, or use another one',
  EROFS: 'the file system is read-only: write elsewhere',
  EISDIR: 'a folder was given where a file is needed: give the file inside it',
  ENOTDIR: 'a file was given where a folder is needed (or a file is in the way of a folder): check the path',
  EEXIST: 'a file is in the way: move it, or choose another path',
  ENOENT: 'no such file or folder: check the path',
  EMFILE: 'too many open files: raise the limit (ulimit -n) or lower the concurrency',
  ENFILE: 'too many open files on this machine: raise the limit or lower the concurrency',
  EBUSY: 'the file is busy: something else holds it',
  ENAMETOOLONG: 'the path is too long: use a shorter one',
};

/** A remedy for a file system error code, or '' when there is none to give. */
export function ioRemedy(code: string | undefined): string {
  return (code && IO_REMEDIES[code]) ?? '';
}

/**
 * A file system error as an E_IO that names its path (Node leaves it out of
 * errors on open files: "EISDIR: illegal operation on a directory, read"),
 * what was being done, and what to do about it.
 */
export function ioError(err: NodeJS.ErrnoException, file: string, doing: string): InstructifyError {
  if (err instanceof InstructifyError) return err;
  const code = err.code ?? 'EIO';
  const remedy = ioRemedy(code);
  const base = (err.message ?? String(err)).replace(/^[A-Z]+: /, '');
  return new InstructifyError('E_IO', `${code}: could not ${doing}: ${base}${remedy ? `; ${remedy}` : ''}`, { file, cause: err });
}
