import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The project root, and the shared real-data folder beside it. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED = path.resolve(ROOT, '..', 'shared', 'data');
