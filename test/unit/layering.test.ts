import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const SRC = new URL('../../src/', import.meta.url).pathname;
// config is the read-only Config every stage is given (types only in practice).
const SHARED = new Set(['model', 'lib', 'config']);
const COMPOSITION = new Set(['cli', 'shards']);

t.test('a stage imports only model/, lib/ and its own files (ADR 0004)', async (t) => {
  const stages = readdirSync(SRC, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  const violations: string[] = [];
  for (const stage of stages) {
    for (const file of readdirSync(join(SRC, stage), { recursive: true }).map(String).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(SRC, stage, file), 'utf8');
      for (const match of text.matchAll(/from '\.\.\/([\w-]+)\//g)) {
        const target = match[1] as string;
        // cli, like daemon.ts, is an entry point, and shards, like pipeline.ts, wires the stages
        // (in worker threads, ADR 0010): they may call any stage.
        if (target !== stage && !SHARED.has(target) && !COMPOSITION.has(stage)) {
          violations.push(`${stage}/${file} imports ${target}/`);
        }
      }
    }
  }
  t.same(violations, []);
  t.ok(stages.includes('queue') && stages.includes('delivery'), 'the scan saw the stages');
});
