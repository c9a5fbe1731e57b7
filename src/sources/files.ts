import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InstructifyError } from '../errors.js';
import type { PlannedFile } from './types.js';

/**
 * Expand folders into the files whose names match a role, and give explicit
 * files their role by name. `roles` maps a role to the pattern its file name
 * matches; the order of `roles` is the reading order.
 */
export async function planByName(kind: string, paths: string[], roles: [string, RegExp][], firstRoles: string[] = []): Promise<PlannedFile[]> {
  const found: PlannedFile[] = [];
  for (const p of paths) {
    if (p === '-') {
      throw new InstructifyError('E_OPTION', `source ${kind} tells its files apart by name, so it cannot read stdin (-); give the folder or the files`);
    }
    let st;
    try {
      st = await stat(p);
    } catch (err) {
      throw new InstructifyError('E_IO', `cannot read input for source ${kind}: ${(err as Error).message}`, { file: p, cause: err });
    }
    const names = st.isDirectory() ? (await readdir(p)).sort().map((n) => path.join(p, n)) : [p];
    let matched = 0;
    for (const f of names) {
      const base = path.basename(f);
      const role = roles.find(([, re]) => re.test(base));
      if (role) {
        found.push({ path: f, role: role[0], first: firstRoles.includes(role[0]) });
        matched++;
      } else if (!st.isDirectory()) {
        throw new InstructifyError('E_OPTION', `source ${kind}: cannot tell what ${base} is; expected one of: ${roles.map(([r]) => `${r}.json`).join(', ')}`, { file: f });
      }
    }
    if (st.isDirectory() && matched === 0) {
      throw new InstructifyError('E_OPTION', `source ${kind}: folder has none of the expected files (${roles.map(([r]) => `${r}.json`).join(', ')})`, { file: p });
    }
  }
  const order = roles.map(([r]) => r);
  return found.sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role));
}

/** Files whose role is told by their content: every path is taken as given, role assigned on reading. */
export function planAsGiven(paths: string[], role: string): PlannedFile[] {
  return paths.map((p) => ({ path: p, role }));
}
