#!/usr/bin/env node
// Spool writes fsync in libuv's thread pool; the default of 4 threads caps concurrent commits.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { existsSync } from 'node:fs';

// Production runs the compiled dist/; a checkout runs the TypeScript sources directly.
const built = new URL('../dist/src/cli/index.js', import.meta.url);
const { run } = await import(existsSync(built) ? built.href : new URL('../src/cli/index.ts', import.meta.url).href);
const code = await run(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
