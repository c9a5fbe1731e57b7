import { afterAll } from 'vitest';
import { removeTmpDirs } from './helpers.js';

// Every test file's temporary folders go when the file is done.
afterAll(removeTmpDirs);
