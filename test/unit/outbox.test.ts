import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openOutbox, type OutboxOptions } from '../../src/feedback/outbox.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';

const event = (i: number, time = new Date().toISOString()): FeedbackEvent => ({
  id: `Q${i}.0.r`, type: 'relayed', status: 'taken_into_account', time, queue_id: `Q${i}`, message_id: '<m@x>', sender: 's@x.test', recipient: `r${i}@y.test`, meta: { campaign: 'c1' },
});

function outboxAt(dir: string, overrides: Partial<OutboxOptions> = {}) {
  const drops: [number, string][] = [];
  const outbox = openOutbox({ dir, segmentBytes: 1_048_576, maxBytes: 1 << 30, retentionMs: 86_400_000, now: () => Date.now(), onDrop: (n, why) => drops.push([n, why]), ...overrides });
  return { outbox, drops };
}

t.test('appended events come back in order, once, and stay until acknowledged', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const { outbox } = outboxAt(dir.path);
  await outbox.recover(() => undefined);
  const stored = await outbox.append([event(1), event(2), event(3)]);
  t.same(stored.map((s) => s.n), [1, 2, 3]);
  const first = await outbox.take(2);
  t.same(first.map((s) => s.event.id), ['Q1.0.r', 'Q2.0.r']);
  t.same((await outbox.take(10)).map((s) => s.event.id), ['Q3.0.r'], 'nothing is handed out twice');
  await outbox.ack(first);
  t.same(outbox.stats().pending, 1);
  await outbox.close();

  const again = outboxAt(dir.path).outbox;
  const seen: [string, boolean][] = [];
  await again.recover((s, acked) => seen.push([s.event.id, acked]));
  t.same(seen, [['Q1.0.r', true], ['Q2.0.r', true], ['Q3.0.r', false]], 'a restart sees every event and which were acknowledged');
  t.same((await again.take(10)).map((s) => s.event.id), ['Q3.0.r'], 'only the unacknowledged one is sent again');
  const next = await again.append([event(4)]);
  t.same(next.map((s) => s.n), [4], 'numbering continues');
  await again.close();
});

t.test('a torn last line is ignored; a fully acknowledged sealed segment is deleted once allowed', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  let allowed = 0;
  const { outbox } = outboxAt(dir.path, { segmentBytes: 600, deletable: (lastN) => lastN <= allowed });
  await outbox.recover(() => undefined);
  for (let i = 1; i <= 6; i++) await outbox.append([event(i)]);
  t.ok(readdirSync(dir.path).filter((f) => f.endsWith('.log')).length >= 2, 'small segments rolled');
  await outbox.ack(await outbox.take(6));
  await outbox.sweep();
  const before = readdirSync(dir.path).filter((f) => f.endsWith('.log')).length;
  t.ok(before >= 2, 'kept while the KPI snapshot does not cover them');
  allowed = 6;
  await outbox.sweep();
  t.same(readdirSync(dir.path).filter((f) => f.endsWith('.log')).length, 1, 'only the segment being written is left');
  await outbox.close();

  const torn = tempDir();
  t.teardown(() => torn.remove());
  const a = outboxAt(torn.path).outbox;
  await a.recover(() => undefined);
  await a.append([event(1)]);
  await a.close();
  appendFileSync(join(torn.path, '000000000001.log'), '{"n":2,"e":{"id":"Q2.0');
  const b = outboxAt(torn.path).outbox;
  const ids: string[] = [];
  await b.recover((s) => ids.push(s.event.id));
  t.same(ids, ['Q1.0.r']);
  await b.close();
});

t.test('a backlog larger than memory is read back from disk in order', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const { outbox } = outboxAt(dir.path, { segmentBytes: 256 * 1024 });
  await outbox.recover(() => undefined);
  const total = 12_500;
  for (let i = 1; i <= total; i += 500) await outbox.append(Array.from({ length: 500 }, (_, k) => event(i + k)));
  const got: number[] = [];
  let appendedWhileBehind = 0;
  for (;;) {
    const batch = await outbox.take(3_000);
    if (batch.length === 0) break;
    got.push(...batch.map((s) => s.n));
    await outbox.ack(batch);
    // New events arrive while the backlog is being read back: they must come after it, once.
    if (appendedWhileBehind < 2_000) {
      await outbox.append(Array.from({ length: 500 }, (_, k) => event(total + appendedWhileBehind + k + 1)));
      appendedWhileBehind += 500;
    }
  }
  t.equal(got.length, total + appendedWhileBehind);
  t.ok(got.every((n, i) => n === i + 1), 'every event once, in order');
  t.equal(outbox.stats().pending, 0);
  await outbox.close();
});

t.test('retention and the disk bound drop events, and say so', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const old = outboxAt(dir.path, { retentionMs: 60_000 });
  await old.outbox.recover(() => undefined);
  await old.outbox.append([event(1, new Date(Date.now() - 120_000).toISOString()), event(2)]);
  t.same((await old.outbox.take(10)).map((s) => s.event.id), ['Q2.0.r']);
  t.same(old.drops, [[1, 'older than feedback.retention']]);
  await old.outbox.close();

  const small = tempDir();
  t.teardown(() => small.remove());
  const bounded = outboxAt(small.path, { segmentBytes: 2_000, maxBytes: 5_000 });
  await bounded.outbox.recover(() => undefined);
  for (let i = 1; i <= 40; i++) await bounded.outbox.append([event(i)]);
  t.ok(bounded.outbox.stats().bytes <= 5_000 + 2_000, `disk use bounded: ${bounded.outbox.stats().bytes} bytes`);
  t.ok(bounded.drops.reduce((n, [c]) => n + c, 0) > 0 && bounded.drops.every(([, why]) => why === 'outbox over feedback.max_disk'));
  const left = await bounded.outbox.take(100);
  t.equal(left.at(-1)?.event.id, 'Q40.0.r', 'the newest events are kept');
  await bounded.outbox.close();
});

t.test('stalledMs counts from when events began to wait, and an acknowledgement resets it', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  let now = 1_000_000;
  const { outbox } = outboxAt(dir.path, { now: () => now });
  await outbox.recover(() => undefined);
  now += 60_000;
  t.equal(outbox.stalledMs(), 0, 'nothing waiting: not stalled, however long it has been quiet');
  await outbox.append([event(1)]);
  now += 30_000;
  t.equal(outbox.stalledMs(), 30_000, 'the clock starts when the first event waits, not at the last acknowledgement');
  await outbox.append([event(2)]);
  now += 10_000;
  t.equal(outbox.stalledMs(), 40_000, 'more events do not restart it');
  await outbox.ack(await outbox.take(1));
  t.equal(outbox.stalledMs(), 0, 'an acknowledgement is progress');
  now += 5_000;
  t.equal(outbox.stalledMs(), 5_000, 'one still waits: the clock runs from that acknowledgement');
  await outbox.ack(await outbox.take(1));
  now += 5_000;
  t.equal(outbox.stalledMs(), 0, 'all acknowledged');
  await outbox.close();
});

t.test('the oldest pending event: when it was appended, as events are acknowledged and after a restart', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  let now = Date.parse('2026-12-06T10:00:00Z');
  const { outbox } = outboxAt(dir.path, { segmentBytes: 600, now: () => now });
  await outbox.recover(() => undefined);
  t.equal(outbox.oldestPendingAt(), undefined, 'none waits');
  const times: number[] = [];
  for (let i = 1; i <= 6; i++) {
    times.push(now);
    await outbox.append([event(i, new Date(now).toISOString())]);
    now += 5_000;
  }
  t.equal(outbox.oldestPendingAt(), times[0]);
  const taken = await outbox.take(6);
  // Out of order, as concurrent POSTs finish: the oldest is the lowest number not acknowledged.
  await outbox.ack([taken[0]!, taken[2]!]);
  t.equal(outbox.oldestPendingAt(), times[1], 'the first acknowledged: the second is the oldest');
  await outbox.ack([taken[1]!]);
  t.equal(outbox.oldestPendingAt(), times[3], 'across a segment boundary too');
  await outbox.close();

  const again = outboxAt(dir.path, { now: () => now }).outbox;
  await again.recover(() => undefined);
  t.equal(again.oldestPendingAt(), times[3], 'a restart reads the times back from the events');
  await again.ack(await again.take(10));
  t.equal(again.oldestPendingAt(), undefined, 'all acknowledged');
  await again.close();
});
