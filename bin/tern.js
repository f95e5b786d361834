#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';

// Tern runs its TypeScript with Node's own type stripping and uses APIs of 22.19: on an older Node
// it would die on a syntax error far from the cause. EX_CONFIG (78): the unit does not restart it.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`tern: needs Node.js 22.19 or later; ${process.execPath} is ${process.version}\n`);
  process.exit(78);
}

// Spool writes fsync in libuv's thread pool, which every shard shares (ADR 0010); the default of
// 4 threads caps concurrent commits. Two a CPU serves the default tuning.threads ("auto").
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(16, 2 * availableParallelism()));

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
