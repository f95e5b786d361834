/**
 * Memory with a million queued recipients (issue 2: "memory must stay bounded"). The real queue
 * with in-memory ports: every message's destination is temporarily unresolvable, so everything
 * stays queued. Bodies never enter memory (they live in the spool); this measures what the queue
 * itself keeps: one heap entry per waiting message, plus up to max_active loaded envelopes.
 * Run: node --expose-gc bench/micro/queue/memory.bench.ts   (MESSAGES=1000000 RCPTS=1)
 *
 * THREADS=N (1) runs the queue as shards do (ADR 0010): N worker threads, each a queue of its own
 * holding MESSAGES/N with MAX_ACTIVE/N and MAX_ACTIVE_RECIPIENTS/N (src/shards/config.ts divides
 * them so), and reports the process's RSS, which covers every thread's heap.
 */
import { cpus } from 'node:os';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { classifyReplies, createClassifier, defaultRules } from '../../../src/bounce/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import type { Envelope } from '../../../src/model/envelope.ts';
import { newQueueId, type QueueId } from '../../../src/model/ids.ts';
import { createQueue } from '../../../src/queue/index.ts';

const THREADS = Math.max(1, Number(process.env.THREADS ?? 1));
const share = (total: number): number => Math.max(1, Math.floor(total / THREADS));
const MESSAGES = share(Number(process.env.MESSAGES ?? 1_000_000));
const RCPTS = Number(process.env.RCPTS ?? 1);
const MAX_ACTIVE = share(Number(process.env.MAX_ACTIVE ?? 10_000));
const MAX_ACTIVE_RECIPIENTS = share(Number(process.env.MAX_ACTIVE_RECIPIENTS ?? 50_000));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const mb = (n: number) => Math.round(n / 1024 / 1024);

function envelope(id: QueueId): Envelope {
  return {
    id, sender: 'news@campaign.example', messageId: `<${id}@tern.example>`, meta: { campaign: 'c42', delivery: 'd7' },
    recipients: Array.from({ length: RCPTS }, (_, i) => ({ address: `user${i}-${id.slice(-8)}@example${i % 1000}.test` })),
    receivedAt: Date.now(), expiresAt: Date.now() + 3 * 86_400_000, smtputf8: false, eightBit: false,
    client: { ip: '127.0.0.1', helo: 'campaign' }, bodySize: 10_240,
  };
}

/** One shard's figures: printed alone, or sent to the main thread, which adds the process's. */
function report(figures: Record<string, unknown>): void {
  if (isMainThread) console.log(JSON.stringify(figures));
  else parentPort?.postMessage(figures);
}

if (isMainThread && THREADS > 1) {
  // The main thread only watches: the process's RSS over every shard's queue, at its peak and once all are filled.
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const started = performance.now();
  const shards = await Promise.all(Array.from({ length: THREADS }, () => new Promise<Record<string, unknown>>((resolve, reject) => {
    // V8's flags (--expose-gc) are the process's: every worker has gc() too.
    const worker = new Worker(new URL(import.meta.url), { env: process.env });
    worker.once('message', (m: Record<string, unknown>) => resolve(m));
    worker.once('error', reject);
  })));
  clearInterval(sampler);
  const sum = (key: string): number => shards.reduce((n, s) => n + Number(s[key] ?? 0), 0);
  console.log(JSON.stringify({
    bench: 'queue-memory', node: process.version, cpus: cpus().length, threads: THREADS, msgs: sum('msgs'), rcpts_per_msg: RCPTS,
    queued_recipients: sum('queued_recipients'), active: sum('active'), seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
    heap_used_mb: sum('heap_used_mb'), peak_heap_mb_summed: sum('peak_heap_mb'), rss_mb: mb(process.memoryUsage().rss), peak_rss_mb: mb(peakRss),
  }));
  process.exit(0);
}
gc();
const before = process.memoryUsage();
const queue = createQueue(
  { retry: { base: 1_200_000, max: 21_600_000, jitter: 0.1 }, maxActive: MAX_ACTIVE, maxActiveRecipients: MAX_ACTIVE_RECIPIENTS, stallAfter: 3_600_000 },
  {
    load: async (id) => ({ envelope: envelope(id), states: Array.from({ length: RCPTS }, () => ({ attempts: 0, nextAt: 0 })) }),
    journal: async () => undefined,
    remove: async () => undefined,
    quarantine: async () => undefined,
    openBody: () => Readable.from([]),
    route: async () => ({ kind: 'temporary', detail: 'bench: no DNS' }),
    deliver: async () => { throw new Error('unreachable'); },
    classify: classifyReplies(createClassifier(defaultRules())),
  },
  { clock: systemClock, log: pino({ level: 'silent' }) },
);
const started = performance.now();
// As after a restart: every message is on disk, the queue knows only ids and counts.
for (let i = 0; i < MESSAGES; i++) queue.enqueue(envelope(newQueueId(Date.now())));
gc();
const enqueued = process.memoryUsage();
let peakHeap = 0;
let peakRss = 0;
let peakTotal = 0;
let peakExternal = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peakHeap = Math.max(peakHeap, m.heapUsed);
  peakRss = Math.max(peakRss, m.rss);
  peakTotal = Math.max(peakTotal, m.heapTotal);
  peakExternal = Math.max(peakExternal, m.external + m.arrayBuffers);
}, 20);
queue.start();
await new Promise((r) => setTimeout(r, 3_000)); // let the active window fill, attempt and reschedule
clearInterval(sampler);
gc();
const after = process.memoryUsage();
const snap = queue.snapshot();
report({
  bench: 'queue-memory', node: process.version, cpus: cpus().length, msgs: MESSAGES, rcpts_per_msg: RCPTS,
  queued_recipients: snap.recipients, scheduled: snap.scheduled, active: snap.active, max_active: MAX_ACTIVE,
  seconds_to_enqueue: Number(((performance.now() - started) / 1000 - 3).toFixed(2)),
  heap_used_mb: mb(after.heapUsed - before.heapUsed), rss_mb: mb(after.rss), rss_after_enqueue_mb: mb(enqueued.rss), peak_heap_mb: mb(peakHeap), peak_rss_mb: mb(peakRss), peak_heap_total_mb: mb(peakTotal), peak_external_mb: mb(peakExternal), heap_after_enqueue_mb: mb(enqueued.heapUsed - before.heapUsed), bytes_per_recipient: Math.round((after.heapUsed - before.heapUsed) / snap.recipients),
});
await queue.stop(0);
if (isMainThread) process.exit(0);
