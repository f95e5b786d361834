/**
 * Memory with a million queued recipients (issue 2: "memory must stay bounded"). The real queue
 * with in-memory ports: every message's destination is temporarily unresolvable, so everything
 * stays queued. Bodies never enter memory (they live in the spool); this measures what the queue
 * itself keeps: one heap entry per waiting message, plus up to max_active loaded envelopes.
 * Run: node --expose-gc bench/micro/queue/memory.bench.ts   (MESSAGES=1000000 RCPTS=1)
 */
import { cpus } from 'node:os';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { classifyReplies, createClassifier, defaultRules } from '../../../src/bounce/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import type { Envelope } from '../../../src/model/envelope.ts';
import { newQueueId, type QueueId } from '../../../src/model/ids.ts';
import { createQueue } from '../../../src/queue/index.ts';

const MESSAGES = Number(process.env.MESSAGES ?? 1_000_000);
const RCPTS = Number(process.env.RCPTS ?? 1);
const MAX_ACTIVE = Number(process.env.MAX_ACTIVE ?? 10_000);
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

gc();
const before = process.memoryUsage();
const queue = createQueue(
  { retry: { base: 1_200_000, max: 21_600_000, jitter: 0.1 }, maxActive: MAX_ACTIVE, maxActiveRecipients: Number(process.env.MAX_ACTIVE_RECIPIENTS ?? 50_000), stallAfter: 3_600_000 },
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
console.log(JSON.stringify({
  bench: 'queue-memory', node: process.version, cpus: cpus().length, msgs: MESSAGES, rcpts_per_msg: RCPTS,
  queued_recipients: snap.recipients, scheduled: snap.scheduled, active: snap.active, max_active: MAX_ACTIVE,
  seconds_to_enqueue: Number(((performance.now() - started) / 1000 - 3).toFixed(2)),
  heap_used_mb: mb(after.heapUsed - before.heapUsed), rss_mb: mb(after.rss), rss_after_enqueue_mb: mb(enqueued.rss), peak_heap_mb: mb(peakHeap), peak_rss_mb: mb(peakRss), peak_heap_total_mb: mb(peakTotal), peak_external_mb: mb(peakExternal), heap_after_enqueue_mb: mb(enqueued.heapUsed - before.heapUsed), bytes_per_recipient: Math.round((after.heapUsed - before.heapUsed) / snap.recipients),
}));
await queue.stop(0);
process.exit(0);
