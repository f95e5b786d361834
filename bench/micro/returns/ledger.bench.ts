/**
 * The sent ledger's cost (docs/bounces.md, "The sent ledger"): what recording delivered
 * recipients costs (synced appends, in batches as the pipeline records events), and what finding
 * one message's recipients costs when a bounce comes back, with the arrival minute as full as a
 * shard delivering RATE recipients an hour makes it.
 *   node bench/micro/returns/ledger.bench.ts      (RECIPIENTS=200000 BATCH=50 RATE=1000000 LOOKUPS=200)
 * No warm-up: the first lookup is reported apart (cold page cache is not simulated; the files
 * were just written).
 */
import { pino } from 'pino';
import { performance } from 'node:perf_hooks';
import { systemClock } from '../../../src/lib/clock.ts';
import { newQueueId, queueIdTime, type QueueId } from '../../../src/model/ids.ts';
import { findSent, SentLedger } from '../../../src/returns/ledger.ts';
import { tempDir } from '../../../test/support/daemon.ts';

const RECIPIENTS = Number(process.env.RECIPIENTS ?? 200_000);
const BATCH = Number(process.env.BATCH ?? 50);
const RATE = Number(process.env.RATE ?? 1_000_000);
const LOOKUPS = Number(process.env.LOOKUPS ?? 200);

const dir = tempDir('tern-ledger-bench-');
const ledger = new SentLedger(dir.path, 0, systemClock, pino({ level: 'warn' }));
const sent = (queueId: string, index: number) => ({
  queue_id: queueId, index, recipient: `user${index}@example.net`, sender: 'news@campaign.example',
  message_id: `<${queueId}@campaign.example>`, meta: { campaign: 'c-2026-12', segment: 'b' }, at: Date.now(),
});

// 1. Recording: BATCH recipients per flush, as one event-loop turn of deliveries records them.
const ids: QueueId[] = [];
let started = performance.now();
for (let i = 0; i < RECIPIENTS; i += BATCH) {
  const id = newQueueId(Date.now());
  ids.push(id);
  for (let j = 0; j < BATCH && i + j < RECIPIENTS; j++) ledger.record(sent(id, j));
  await ledger.flush();
}
const recordMs = performance.now() - started;

// 2. One minute's file as full as RATE an hour makes it, for one arrival minute.
const perMinute = Math.round(RATE / 60);
const minute = Date.now() + 3_600_000;
const inMinute: QueueId[] = [];
for (let i = 0; i < perMinute; i += BATCH) {
  const id = newQueueId(minute + Math.floor((i / perMinute) * 59_000));
  inMinute.push(id);
  for (let j = 0; j < BATCH && i + j < perMinute; j++) ledger.record(sent(id, j));
  if (inMinute.length % 20 === 0) await ledger.flush();
}
await ledger.flush();

const lookup = async (id: QueueId): Promise<number> => {
  const t0 = performance.now();
  const found = await findSent(dir.path, id);
  if (found.length === 0) throw new Error(`nothing found for ${id} (${new Date(queueIdTime(id)).toISOString()})`);
  return performance.now() - t0;
};
const first = await lookup(inMinute[Math.floor(inMinute.length / 2)] as QueueId);
const times: number[] = [];
started = performance.now();
for (let i = 0; i < LOOKUPS; i++) times.push(await lookup(inMinute[(i * 7919) % inMinute.length] as QueueId));
times.sort((a, b) => a - b);
const pct = (p: number): string => (times[Math.min(times.length - 1, Math.floor(p * times.length))] as number).toFixed(2);

console.log(`sent ledger, ${RECIPIENTS} recipients recorded in batches of ${BATCH} (one fdatasync each)`);
console.log(`  record: ${(RECIPIENTS / (recordMs / 1000)).toFixed(0)} recipients/s, ${((recordMs * 1000) / RECIPIENTS).toFixed(1)} µs each, ${(recordMs / (RECIPIENTS / BATCH)).toFixed(2)} ms a batch`);
console.log(`lookup in a minute of ${perMinute} recipients (${RATE}/h): first ${first.toFixed(2)} ms; then p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms over ${LOOKUPS}`);
dir.remove();
