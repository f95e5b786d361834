/**
 * Feedback event throughput: how many events per second Tern makes durable in its outbox and
 * delivers to a webhook on loopback (a real HTTP receiver in this process that answers 200).
 *   node bench/micro/feedback/events.bench.ts      (EVENTS=200000 WRITERS=20 PER_CALL=2)
 * WRITERS concurrent callers each record PER_CALL events at a time (the relayed events of a
 * two-recipient message); the clock stops when the receiver has acknowledged every event.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { pino } from 'pino';
import { createFeedback } from '../../../src/feedback/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import type { FeedbackEvent } from '../../../src/model/event.ts';
import { tempDir } from '../../../test/support/daemon.ts';

const EVENTS = Number(process.env.EVENTS ?? 200_000);
const WRITERS = Number(process.env.WRITERS ?? 20);
const PER_CALL = Number(process.env.PER_CALL ?? 2);

let received = 0;
let requests = 0;
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received += (JSON.parse(Buffer.concat(chunks).toString()) as unknown[]).length;
    requests += 1;
    res.writeHead(200).end();
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;

const dir = tempDir('tern-feedback-bench-');
const feedback = createFeedback(
  { dir: dir.path, retentionMs: 86_400_000, maxDiskBytes: 1 << 30, webhooks: [{ url, secret: 's', maxBatch: 500, maxWaitMs: 50, timeoutMs: 10_000, concurrency: 4, backoffBaseMs: 1_000, backoffMaxMs: 60_000 }] },
  { clock: systemClock, log: pino({ level: 'warn' }) },
);
await feedback.recover();
feedback.start();

const event = (i: number): FeedbackEvent => ({
  id: `Q${i}.0.r`, type: 'relayed', status: 'taken_into_account', time: new Date().toISOString(), queue_id: `01JQ${String(i).padStart(22, '0')}`,
  message_id: `<${i}@campaign.example>`, sender: 'news@campaign.example', recipient: `user${i}@example.com`, meta: { campaign: 'c42', delivery: 'd7', recipient_id: `r${i}` },
});

const started = performance.now();
const latencies: number[] = [];
let next = 0;
await Promise.all(Array.from({ length: WRITERS }, async () => {
  while (next < EVENTS) {
    const batch = Array.from({ length: PER_CALL }, () => event(next++));
    const t0 = performance.now();
    await feedback.record(batch);
    latencies.push(performance.now() - t0);
  }
}));
const durable = (performance.now() - started) / 1000;
while (received < next) await new Promise((r) => setTimeout(r, 5));
const delivered = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number): number => Number((latencies[Math.ceil(p * latencies.length) - 1] as number).toFixed(2));
console.log(JSON.stringify({
  bench: 'feedback-events', node: process.version, cpus: cpus().length, events: next, writers: WRITERS, per_call: PER_CALL,
  durable_per_s: Math.round(next / durable), delivered_per_s: Math.round(next / delivered), record_p50_ms: pct(0.5), record_p99_ms: pct(0.99),
  webhook_requests: requests, events_per_request: Math.round(received / requests),
}));
await feedback.stop();
server.close();
dir.remove();
