import { pino } from 'pino';
import t from 'tap';
import { openOutbox } from '../../src/feedback/outbox.ts';
import { createWebhookSender, type WebhookOptions } from '../../src/feedback/webhook.ts';
import { systemClock } from '../../src/lib/clock.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';
import { until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';

const SECRET = 'hush';
const event = (q: number, r: number, type: FeedbackEvent['type'] = 'relayed'): FeedbackEvent => ({
  id: `Q${q}.${r}.${type}`, type, status: 'taken_into_account', time: new Date().toISOString(), queue_id: `Q${q}`, message_id: '<m@x>', sender: 's@x.test', recipient: `r${r}@y.test`, meta: {},
});

async function rig(t: { teardown(fn: () => Promise<void>): void }, options: Partial<WebhookOptions> = {}, ackFault?: () => Error | undefined) {
  const receiver = new WebhookReceiver(SECRET);
  const url = await receiver.start();
  const dir = tempDir();
  const logs: Record<string, unknown>[] = [];
  const outbox = openOutbox({ dir: dir.path, segmentBytes: 1 << 20, maxBytes: 1 << 30, retentionMs: 86_400_000, now: Date.now, onDrop: () => undefined });
  await outbox.recover(() => undefined);
  const results: string[] = [];
  const sender = createWebhookSender(
    { url, secret: SECRET, maxBatch: 50, maxWaitMs: 30, timeoutMs: 500, concurrency: 3, backoffBaseMs: 20, backoffMaxMs: 100, ...options },
    {
      clock: systemClock,
      log: pino({ level: 'warn' }, { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) }),
      take: (max) => outbox.take(max),
      ack: (events) => {
        const fault = ackFault?.();
        return fault ? Promise.reject(fault) : outbox.ack(events);
      },
      onResult: (result) => results.push(result),
    },
  );
  sender.start();
  t.teardown(async () => {
    await sender.stop();
    await outbox.close();
    await receiver.stop();
    dir.remove();
  });
  const append = async (events: FeedbackEvent[]): Promise<void> => {
    await outbox.append(events);
    sender.wake();
  };
  return { receiver, outbox, append, logs, results };
}

t.test('events arrive in signed batches of at most max_batch, each recipient in order', async (t) => {
  const { receiver, outbox, append } = await rig(t);
  const events: FeedbackEvent[] = [];
  for (let q = 0; q < 40; q++) for (let r = 0; r < 3; r++) events.push(event(q, r));
  await append(events);
  await append(events.map((e) => ({ ...e, id: e.id.replace('relayed', 'delivered'), type: 'delivered' as const, status: 'sent' as const })));
  await until(() => receiver.acknowledged.length === 240, 5_000);
  t.ok(receiver.batches.every((b) => b.signatureValid), 'every batch carries a valid X-Tern-Signature');
  t.ok(receiver.batches.every((b) => b.events.length <= 50), 'batches respect max_batch');
  t.ok(new Set(receiver.batches.map((b) => b.batchId)).size === receiver.batches.length, 'each batch has its own id');
  const order = new Map<string, string[]>();
  for (const e of receiver.acknowledged) order.set(`${e.queue_id}|${e.recipient}`, [...(order.get(`${e.queue_id}|${e.recipient}`) ?? []), e.type]);
  t.ok([...order.values()].every((types) => types.join() === 'relayed,delivered'), 'relayed before delivered for every recipient');
  await until(() => outbox.stats().pending === 0, 2_000);
});

t.test('a partial batch waits at most max_wait', async (t) => {
  const { receiver, append } = await rig(t, { maxWaitMs: 150, concurrency: 1 });
  const started = Date.now();
  await append([event(1, 0)]);
  await until(() => receiver.batches.length === 1, 2_000);
  const waited = Date.now() - started;
  t.ok(waited >= 140 && waited < 1_500, `sent after ${waited} ms`);
});

t.test('a failing endpoint gets the same batch again, with back-off, until it answers 2xx', async (t) => {
  const { receiver, append, results, logs } = await rig(t, { concurrency: 1 });
  receiver.answer = (n) => (n === 1 ? { status: 500 } : n === 2 ? 'drop' : n === 3 ? { status: 200, delayMs: 800 } : { status: 200 });
  await append([event(1, 0), event(2, 0)]);
  // The receiver also records the slow answer Tern gave up on: wait for Tern's own verdict.
  await until(() => results.includes('ok'), 5_000);
  t.same(results.slice(0, 4), ['failed', 'failed', 'failed', 'ok'], '500, dropped connection, timeout, then ok');
  const ids = receiver.batches.map((b) => b.batchId);
  t.equal(new Set(ids).size, 1, 'the retried batch keeps its id and body');
  t.ok(logs.some((l) => /webhook delivery failed/.test(String(l.msg))));
});

t.test('a 4xx other than 408/429 is logged loudly and retried, not dropped', async (t) => {
  const { receiver, append, logs } = await rig(t, { concurrency: 1 });
  receiver.answer = () => ({ status: 400 });
  await append([event(1, 0)]);
  await until(() => logs.some((l) => /refused a batch with 400/.test(String(l.msg))), 3_000);
  const refusal = logs.find((l) => /refused a batch with 400/.test(String(l.msg)));
  t.match(refusal, { level: 50, status: 400 });
  t.ok((refusal?.retry_in_ms as number) >= 48_000, 'retried no faster than about once a minute');
});

t.test('an acknowledgement that cannot be written (disk full) is retried with back-off; the batch is not posted again', async (t) => {
  const ackTimes: number[] = [];
  const { receiver, outbox, append, logs } = await rig(t, { concurrency: 1, backoffBaseMs: 50, backoffMaxMs: 200 }, () => {
    ackTimes.push(Date.now());
    return ackTimes.length <= 5 ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined;
  });
  await append([event(1, 0), event(2, 0)]);
  await until(() => outbox.stats().pending === 0, 5_000, 'the acknowledgement written once space returned');
  t.equal(receiver.batches.length, 1, 'one POST for the batch, whatever the disk did');
  t.equal(ackTimes.length, 6, 'five failed writes, then one that worked');
  const gaps = ackTimes.slice(1).map((at, i) => at - (ackTimes[i] as number));
  t.ok(gaps.every((g) => g >= 35), `the write is retried with back-off, not in a loop (gaps ${gaps.join(', ')} ms)`);
  t.equal(logs.filter((l) => /acknowledgement cannot be recorded/.test(String(l.msg))).length, 1, 'logged once for the run of failures, not once each');
});
