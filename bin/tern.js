#!/usr/bin/env node
// Spool writes fsync in libuv's thread pool; the default of 4 threads caps concurrent commits.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { existsSync } from 'node:fs';

// A checkout runs the TypeScript sources directly (Node >= 22.18 strips types); production
// (NODE_ENV=production, or an install without src/) runs the compiled dist/ from `npm run build`.
const built = new URL('../dist/src/cli/index.js', import.meta.url);
const source = new URL('../src/cli/index.ts', import.meta.url);
const useBuilt = existsSync(built) && (process.env.NODE_ENV === 'production' || !existsSync(source));
const { run } = await import((useBuilt ? built : source).href);
const code = await run(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
