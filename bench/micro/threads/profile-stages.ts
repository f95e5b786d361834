/**
 * Event-loop CPU per pipeline stage, from a V8 CPU profile of a bench run (ADR 0010's table):
 *
 *   BENCH_MTAS=tern BENCH_TERN_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" node bench/e2e/relay.ts
 *   node bench/micro/threads/profile-stages.ts /tmp/prof/CPU.*.cpuprofile MESSAGES
 *
 * Self time is charged to the Tern source folder of the nearest Tern frame on the stack (so
 * node:net work a stage asked for is that stage's), else to "node (no Tern frame)", "gc" or
 * "idle". MESSAGES: how many messages the profiled process handled (warm-up included).
 */
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

const [file, messagesArg] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-stages.ts PROFILE [MESSAGES]');
const messages = Number(messagesArg ?? 1);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

function stageOf(id: number): string {
  const self = byId.get(id)!.callFrame;
  if (self.functionName === '(garbage collector)') return 'gc';
  if (self.functionName === '(idle)') return 'idle';
  if (self.functionName === '(program)') return 'program';
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const m = /\/src\/([^/]+)\//.exec(byId.get(at)!.callFrame.url) ?? (/\/src\/daemon\.ts$/.test(byId.get(at)!.callFrame.url) ? [, 'daemon'] : null);
    if (m) return m[1] as string;
  }
  return 'node (no Tern frame)';
}

const us = new Map<string, number>();
const stageCache = new Map<number, string>();
profile.samples.forEach((id, i) => {
  const stage = stageCache.get(id) ?? stageOf(id);
  stageCache.set(id, stage);
  us.set(stage, (us.get(stage) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const busy = [...us].filter(([s]) => s !== 'idle').reduce((a, [, v]) => a + v, 0);
console.log(`| stage | ms | µs per message | share of busy |`);
console.log(`|---|---|---|---|`);
for (const [stage, t] of [...us].sort((a, b) => b[1] - a[1])) {
  if (stage === 'idle') continue;
  console.log(`| ${stage} | ${(t / 1000).toFixed(0)} | ${(t / messages).toFixed(0)} | ${((100 * t) / busy).toFixed(1)} % |`);
}
console.log(`| busy | ${(busy / 1000).toFixed(0)} | ${(busy / messages).toFixed(0)} | |`);
