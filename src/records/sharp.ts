/**
 * sharp, loaded on first use. Loading it (its native library included)
 * takes about 0.1 s a thread, and most threads that import the modules using
 * it never read an image: a worker lane of a run without `--images` or
 * `--depth-dir` only builds records and writes shards.
 */
type Sharp = typeof import('sharp').default;

let loading: Promise<Sharp> | null = null;

export function loadSharp(): Promise<Sharp> {
  return (loading ??= import('sharp').then((m) => m.default));
}
