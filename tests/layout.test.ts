import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

/**
 * The layout the README's Architecture section promises: a folder per stage,
 * no loose files in src/ but the entry points, a table row for every folder,
 * and no function too long to read in one screen or two.
 */
const ENTRY_POINTS = ['cli.ts', 'errors.ts', 'types.ts', 'version.ts'];
const MAX_FUNCTION_LINES = 120;

function architectureRows(): { folder: string; tests: string[] }[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Architecture'), readme.indexOf('\n## ', readme.indexOf('## Architecture') + 5));
  return [...section.matchAll(/^\| `([^`]+)\/` \|[^\n]*\| ([^|\n]+) \|$/gm)].map((m) => ({
    folder: m[1]!,
    tests: [...m[2]!.matchAll(/`([\w-]+)`/g)].map((t) => t[1]!),
  }));
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith('.ts') && !n.endsWith('.d.ts') ? [p] : [];
  });
}

describe('layout', () => {
  it('src/ holds only the entry points and stage folders, and the README table has a row for each folder and no other', () => {
    const entries = readdirSync(path.join(ROOT, 'src'), { withFileTypes: true });
    expect(entries.filter((e) => e.isFile()).map((e) => e.name).sort()).toEqual(ENTRY_POINTS);
    const folders = entries.filter((e) => e.isDirectory()).map((e) => `src/${e.name}`).sort();
    const rows = architectureRows();
    expect(rows.map((r) => r.folder).filter((f) => f.startsWith('src/')).sort()).toEqual(folders);
    expect(rows.map((r) => r.folder)).toContain('transforms');
  });

  it('every test file the table names exists', () => {
    const tests = new Set(readdirSync(path.join(ROOT, 'tests')).filter((n) => n.endsWith('.test.ts')).map((n) => n.replace(/\.test\.ts$/, '')));
    const named = architectureRows().flatMap((r) => r.tests);
    expect(named.length).toBeGreaterThan(20);
    expect(named.filter((t) => !tests.has(t))).toEqual([]);
  });

  it(`no function in src/, transforms/ or bench/ is over ${MAX_FUNCTION_LINES} lines`, () => {
    const long: string[] = [];
    for (const file of ['src', 'transforms', 'bench'].flatMap((d) => tsFiles(path.join(ROOT, d)))) {
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) && 'body' in node && node.body) {
          const from = source.getLineAndCharacterOfPosition(node.getStart()).line;
          const to = source.getLineAndCharacterOfPosition(node.getEnd()).line;
          if (to - from + 1 > MAX_FUNCTION_LINES) long.push(`${path.relative(ROOT, file)}:${from + 1} (${to - from + 1} lines)`);
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(long).toEqual([]);
  });
});
