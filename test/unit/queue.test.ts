import { Readable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import type { Envelope, RecipientState } from '../../src/model/envelope.ts';
import { newQueueId, type QueueId, type SiteName } from '../../src/model/ids.ts';
import type { JournalRecord } from '../../src/model/journal.ts';
import type { AttemptOutcome } from '../../src/model/outcome.ts';
import { parseReply } from '../../src/model/reply.ts';
import { createQueue, type QueueJob, type QueuePorts, type RecipientOutcome } from '../../src/queue/index.ts';
import { classifyReplies, createClassifier, defaultRules } from '../../src/bounce/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';

const MIN = 60_000;

function envelope(clock: FakeClock, recipients: string[], validity = 3 * 24 * 60 * MIN): Envelope {
  const id = newQueueId(clock.now());
  return {
    id, sender: 's@x.test', recipients: recipients.map((address) => ({ address })), messageId: '<m@x>', meta: {},
    receivedAt: clock.now(), expiresAt: clock.now() + validity, smtputf8: false, eightBit: false, client: { ip: '127.0.0.1', helo: 'h' }, bodySize: 10,
  };
}

/** In-memory ports: a spool in a Map, DNS that always routes, delivery the test scripts. */
function harness(clock: FakeClock, deliver: (job: QueueJob) => Promise<AttemptOutcome>, options: Partial<Parameters<typeof createQueue>[0]> = {}) {
  const disk = new Map<QueueId, { envelope: Envelope; journal: JournalRecord[] }>();
  const outcomes: RecipientOutcome[] = [];
  const quarantined: QueueId[] = [];
  const logs: Record<string, unknown>[] = [];
  const ports: QueuePorts = {
    load: async (id) => {
      const entry = disk.get(id);
      if (!entry) throw new Error(`no ${id}`);
      const states: RecipientState[] = entry.envelope.recipients.map(() => ({ attempts: 0, nextAt: 0 }));
      for (const r of entry.journal) {
        const s = states[r.r] as RecipientState;
        s.attempts = r.n;
        if (r.reply) s.lastReply = r.reply;
        if (r.t === 'final') s.final = r.v;
        else {
          s.nextAt = r.next;
          if (r.p) s.path = r.p;
        }
      }
      return { envelope: entry.envelope, states };
    },
    journal: async (id, records) => { disk.get(id)?.journal.push(...records); },
    classify: classifyReplies(createClassifier(defaultRules())),
    remove: async (id) => { disk.delete(id); },
    quarantine: async (id) => { quarantined.push(id); disk.delete(id); },
    openBody: () => Readable.from([]),
    route: async (domain) => ({ kind: 'route', site: domain as SiteName, hosts: [{ name: `mx.${domain}`, preference: 10, addresses: ['127.0.0.2'] }], implicit: false }),
    deliver,
    observe: (o) => outcomes.push(o),
  };
  const queue = createQueue(
    { retry: { base: 20 * MIN, max: 6 * 60 * MIN, jitter: 0 }, maxActive: 100, maxActiveRecipients: 1000, stallAfter: 10 * MIN, ...options },
    ports,
    { clock, log: pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) }), random: () => 0.5 },
  );
  const store = (e: Envelope) => disk.set(e.id, { envelope: e, journal: [] });
  return { queue, disk, outcomes, store, quarantined, logs, ports };
}

const accepted = (job: QueueJob): AttemptOutcome => ({ kind: 'transaction', route: { mx: 'mx' }, replies: job.envelope.recipients.map(() => parseReply('250 ok')) });
const deferred = (): AttemptOutcome => ({ kind: 'site-unreachable', route: {}, reply: parseReply('421 4.7.0 try later') });

t.test('retries follow the schedule and the message is removed once all are final', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const h = harness(clock, async (job) => (++calls < 3 ? deferred() : accepted(job)));
  h.queue.start();
  const e = envelope(clock, ['a@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  t.equal(calls, 1);
  t.equal(h.queue.oldestArrival(), Math.floor(clock.now() / MIN) * MIN, 'waiting since the minute it came');
  await clock.advance(19 * MIN);
  t.equal(calls, 1, 'nothing before 20 minutes');
  await clock.advance(1 * MIN);
  t.equal(calls, 2, 'second attempt at 20 minutes');
  await clock.advance(39 * MIN);
  t.equal(calls, 2);
  await clock.advance(1 * MIN);
  t.equal(calls, 3, 'third attempt 40 minutes later');
  t.same(h.outcomes.map((o) => [o.verdict.kind, o.attempt]), [['retry', 1], ['retry', 2], ['delivered', 3]]);
  t.equal(h.disk.size, 0, 'removed from the spool');
  t.same(h.queue.snapshot(), { scheduled: 0, active: 0, recipients: 0 });
  t.equal(h.queue.oldestArrival(), undefined, 'nothing waits: no oldest');
  await h.queue.stop(0);
});

t.test('a recipient expires at the last attempt whose successor would pass validity', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const h = harness(clock, async () => { calls++; return deferred(); });
  h.queue.start();
  const e = envelope(clock, ['a@x.test'], 70 * MIN);
  h.store(e);
  h.queue.enqueue(e);
  await clock.advance(3 * 60 * MIN);
  t.equal(calls, 3, 'attempts at 0, 20 and 60 min; the next would be at 140 min, past the 70 min validity');
  t.match(h.outcomes.at(-1), { attempt: 3, verdict: { kind: 'failed', cause: 'expired' } }, 'expired right after the third attempt, not at 140 min');
  await h.queue.stop(0);
});

t.test('the active window is bounded in recipients', async (t) => {
  const clock = new FakeClock();
  let inFlight = 0;
  let peak = 0;
  const h = harness(clock, async (job) => {
    inFlight += job.envelope.recipients.length;
    peak = Math.max(peak, inFlight);
    await settle();
    inFlight -= job.envelope.recipients.length;
    return accepted(job);
  }, { maxActiveRecipients: 50 });
  for (let i = 0; i < 5; i++) {
    const e = envelope(clock, Array.from({ length: 40 }, (_, k) => `r${k}@x.test`));
    h.store(e);
    h.queue.enqueue(e);
  }
  h.queue.start();
  for (let i = 0; i < 20; i++) await clock.advance(1);
  t.equal(h.disk.size, 0, 'all delivered');
  t.equal(peak, 40, 'never two 40-recipient messages at once under a 50-recipient window');
  await h.queue.stop(0);
});

t.test('the watchdog reschedules an attempt that never finishes', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const h = harness(clock, (job) => (++calls === 1 ? new Promise<AttemptOutcome>(() => undefined) : Promise.resolve(accepted(job))));
  h.queue.start();
  const e = envelope(clock, ['a@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await clock.advance(5 * MIN);
  t.equal(h.queue.snapshot().active, 1, 'stuck');
  await clock.advance(10 * MIN);
  t.equal(calls, 2, 'abandoned and tried again');
  t.equal(h.disk.size, 0);
  await h.queue.stop(0);
});

t.test('recovery schedules each message at its recorded next attempt and drops finished ones', async (t) => {
  const clock = new FakeClock();
  const delivered: string[] = [];
  const h = harness(clock, async (job) => { delivered.push(...job.envelope.recipients); return accepted(job); });
  const later = envelope(clock, ['later@x.test', 'done@x.test']);
  const finished = envelope(clock, ['old@x.test']);
  h.store(later);
  h.store(finished);
  h.disk.get(later.id)!.journal.push({ t: 'retry', r: 0, n: 1, next: clock.now() + 30 * MIN }, { t: 'final', r: 1, n: 1, v: 'delivered' });
  h.disk.get(finished.id)!.journal.push({ t: 'final', r: 0, n: 2, v: 'failed' });
  h.queue.start();
  await h.queue.recover([later.id, finished.id]);
  t.equal(h.disk.has(finished.id), false, 'a message with no owed recipient is removed');
  t.same(h.queue.snapshot(), { scheduled: 1, active: 0, recipients: 1 });
  t.ok(h.queue.oldestArrival() !== undefined, 'a recovered message counts as waiting');
  await clock.advance(29 * MIN);
  t.same(delivered, []);
  await clock.advance(1 * MIN);
  t.same(delivered, ['later@x.test'], 'only the owed recipient, at its time');
  t.match(h.outcomes[0], { attempt: 2 });
  await h.queue.stop(0);
});

t.test('an unreadable message is set aside, not retried forever', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const h = harness(clock, async (job) => { calls++; return accepted(job); });
  const bad = envelope(clock, ['a@x.test']);
  h.store(bad);
  const load = h.disk.get(bad.id)!;
  // Corrupt it after storing: load() now fails the way the spool reports a torn file.
  h.disk.set(bad.id, { ...load, get envelope(): Envelope { throw Object.assign(new Error('no valid trailer'), { code: 'TERN_SPOOL_CORRUPT' }); } } as never);
  h.queue.start();
  await h.queue.recover([bad.id]);
  t.same(h.quarantined, [bad.id]);
  t.equal(h.queue.oldestArrival(), undefined, 'set aside: no longer the oldest in the queue');
  await clock.advance(60 * MIN);
  t.equal(calls, 0);
  t.same(h.queue.snapshot(), { scheduled: 0, active: 0, recipients: 0 });
  await h.queue.stop(0);
});

t.test('each failed recipient is classified; a code mismatch is resolved by the reply code and logged', async (t) => {
  const clock = new FakeClock();
  const h = harness(clock, async () => ({
    kind: 'transaction', route: { mx: 'mx' },
    replies: [parseReply('550 4.2.2 mailbox full', { command: 'RCPT' }), parseReply('452 4.2.2 over quota', { command: 'RCPT' })],
  }));
  h.queue.start();
  const e = envelope(clock, ['full@x.test', 'later@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  t.match(h.outcomes.map((o) => o.verdict), [
    { kind: 'failed', cause: 'bounce', bounce: { reason: 'mailboxfull', class: 22, retry: false } },
    { kind: 'retry', bounce: { reason: 'mailboxfull', retry: true } },
  ]);
  const failed = h.logs.find((l) => l.event === 'failed');
  t.match(failed, { recipient: 'full@x.test', bounce: { reason: 'mailboxfull', class: 22, category: 'soft', type: 'soft' }, bounce_note: /550 and enhanced code 4\.2\.2 disagree; the reply code decides/ });
});

const ROUTE = { path: 'default|mx.x.test', provider: 'big' };
const held = (until: number): AttemptOutcome => ({ kind: 'held', route: ROUTE, reply: parseReply('451 4.4.5 paused by rule r', { origin: 'local' }), until, reason: 'paused' });

t.test('mail for a paused path waits until the pause ends, using up no attempt and no back-off', async (t) => {
  const clock = new FakeClock();
  const pauseEnds = clock.now() + 90 * MIN;
  let calls = 0;
  const h = harness(clock, async (job) => (++calls === 1 ? held(pauseEnds) : accepted(job)));
  h.queue.start();
  const e = envelope(clock, ['a@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  t.match(h.outcomes[0], { attempt: 0, verdict: { kind: 'retry', counts: false, held: 'paused', at: pauseEnds } });
  t.match(h.disk.get(e.id)?.journal, [{ t: 'retry', n: 0, next: pauseEnds, p: 'default|mx.x.test' }], 'journalled with its path, attempts untouched');
  t.same([...h.queue.queuedByPath()], [['default|mx.x.test', 1]]);
  await clock.advance(90 * MIN - 1);
  t.equal(calls, 1, 'nothing while paused (not the 20-minute retry either)');
  await clock.advance(1);
  t.equal(calls, 2);
  t.match(h.outcomes[1], { attempt: 1, verdict: { kind: 'delivered' } }, 'the first real attempt is attempt 1');
  t.same([...h.queue.queuedByPath()], []);
  await h.queue.stop(0);
});

t.test('a pause that outlasts validity ends the message at its validity, as expired', async (t) => {
  const clock = new FakeClock();
  const h = harness(clock, async () => held(clock.now() + 10 * 24 * 60 * MIN));
  h.queue.start();
  const e = envelope(clock, ['a@x.test'], 60 * MIN);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  await clock.advance(60 * MIN);
  t.match(h.outcomes.at(-1), { verdict: { kind: 'failed', cause: 'expired', reply: { text: /validity period expired; last reply: 451 4\.4\.5 paused by rule r/ } } });
  await h.queue.stop(0);
});

t.test('a path an adaptive rule fails: its mail fails with cause "adaptive", and what waits for it is made due at once', async (t) => {
  const clock = new FakeClock();
  let failing = false;
  const h = harness(clock, async (job) => (failing
    ? { kind: 'path-failed', route: ROUTE, reply: parseReply('554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org'), rule: 'bin' }
    : { kind: 'site-unreachable', route: ROUTE, reply: parseReply('421 4.7.0 try later') }) as AttemptOutcome);
  h.queue.start();
  const e = envelope(clock, ['a@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  t.match(h.outcomes[0], { attempt: 1, verdict: { kind: 'retry' } });
  failing = true;
  t.equal(h.queue.expedite('default|mx.x.test'), 1, 'one message waited for the path');
  t.equal(h.queue.expedite('default|other'), 0);
  await clock.advance(0);
  t.match(h.outcomes[1], { attempt: 1, verdict: { kind: 'failed', cause: 'adaptive', reply: { code: 554 }, bounce: { reason: 'blocked' } } }, 'failed now, not in 20 minutes; no attempt used');
  await h.queue.stop(0);
});

t.test('when a path\'s limits are lifted, mail it held back comes forward; mail it deferred keeps its back-off', async (t) => {
  const clock = new FakeClock();
  const tried: string[] = [];
  let phase: 'hold' | 'accept' = 'hold';
  const h = harness(clock, async (job) => {
    const to = job.envelope.recipients[0] as string;
    tried.push(to);
    if (to.startsWith('deferred')) return { kind: 'transaction', route: ROUTE, replies: [parseReply('451 4.7.0 [TSS04] try later')] };
    return phase === 'hold' ? held(clock.now() + 4 * MIN) : accepted(job);
  });
  h.queue.start();
  const heldBack = envelope(clock, ['held@x.test']);
  const deferredOne = envelope(clock, ['deferred@x.test']);
  for (const e of [heldBack, deferredOne]) {
    h.store(e);
    h.queue.enqueue(e);
  }
  await settle();
  t.same(tried.sort(), ['deferred@x.test', 'held@x.test']);
  phase = 'accept';
  t.equal(h.queue.release('default|other'), 0, 'another path: nothing');
  t.equal(h.queue.release('default|mx.x.test'), 1, 'only the message that was held, not the one deferred');
  await clock.advance(0);
  t.match(h.outcomes.find((o) => o.envelope.id === heldBack.id && o.verdict.kind === 'delivered'), { attempt: 1 }, 'delivered now, not in 4 minutes');
  t.equal(tried.filter((r) => r === 'deferred@x.test').length, 1, 'the deferred recipient waits out its back-off');
  await h.queue.stop(0);
});

t.test('a path with room takes the mail it held, the earliest placed first and no more than asked; none comes twice', async (t) => {
  const clock = new FakeClock();
  const tries = new Map<string, number>();
  let holding = true;
  const h = harness(clock, async (job) => {
    const to = job.envelope.recipients[0] as string;
    tries.set(to, (tries.get(to) ?? 0) + 1);
    return holding ? held(clock.now() + 10 * MIN + tries.size * 1000) : accepted(job);
  });
  h.queue.start();
  const names = ['m0', 'm1', 'm2', 'm3', 'm4'];
  for (const n of names) {
    const e = envelope(clock, [`${n}@x.test`]);
    h.store(e);
    h.queue.enqueue(e);
    await settle();
  }
  holding = false;
  t.equal(h.queue.release('default|mx.x.test', 2), 2);
  await clock.advance(0);
  t.same(names.map((n) => tries.get(`${n}@x.test`)), [2, 2, 1, 1, 1], 'the two placed first went now');
  t.equal(h.queue.snapshot().scheduled, 3, 'three still wait');
  await clock.advance(11 * MIN);
  t.same(names.map((n) => tries.get(`${n}@x.test`)), [2, 2, 2, 2, 2], 'the rest at their own time, the released ones not again');
  t.equal(h.queue.snapshot().scheduled, 0);
  t.equal(h.queue.release('default|mx.x.test', 2), 0, 'nothing left to release');
  await h.queue.stop(0);
});

t.test('after a restart, waiting mail is known by the path it last went', async (t) => {
  const clock = new FakeClock();
  const h = harness(clock, async () => held(clock.now() + 60 * MIN));
  h.queue.start();
  const e = envelope(clock, ['a@x.test', 'b@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  await h.queue.stop(0);
  const again = harness(clock, async (job) => accepted(job));
  again.disk.set(e.id, h.disk.get(e.id)!);
  await again.queue.recover([e.id]);
  t.same([...again.queue.queuedByPath()], [['default|mx.x.test', 2]]);
});

t.test('outcomes that cannot be written (disk full) are written again later; a recipient that got 250 is never sent to again', async (t) => {
  const clock = new FakeClock();
  const sent: string[] = [];
  // a@ is accepted, b@ deferred: the message needs a journal record, and the disk is full.
  const h = harness(clock, async (job) => {
    sent.push(...job.envelope.recipients);
    return { kind: 'transaction', route: { mx: 'mx' }, replies: job.envelope.recipients.map((r) => parseReply(r.startsWith('a@') ? '250 ok' : '450 4.2.0 later')) };
  });
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  let full = true;
  let journalWrites = 0;
  let reports = 0;
  const realJournal = h.ports.journal;
  h.ports.journal = async (id, records) => {
    journalWrites++;
    if (full) throw enospc;
    return realJournal(id, records);
  };
  h.ports.report = async () => {
    reports++;
    if (full && reports === 1) throw enospc;
  };
  h.queue.start();
  const e = envelope(clock, ['a@x.test', 'b@x.test']);
  h.store(e);
  h.queue.enqueue(e);
  await settle();
  t.same(sent, ['a@x.test', 'b@x.test'], 'one attempt');
  for (let i = 0; i < 10; i++) await clock.advance(5_000);
  t.same(sent, ['a@x.test', 'b@x.test'], 'fifty seconds of a full disk: written again, never sent again');
  t.equal(reports, 2, 'the events, once written, are not reported again');
  t.ok(journalWrites >= 9, `the journal write is retried every 5 s (${journalWrites} tries)`);
  t.equal(h.logs.filter((l) => /cannot record delivery outcomes/.test(String(l.msg))).length, 1, 'one log line for the run of failures');
  full = false;
  await clock.advance(5_000);
  t.same(h.disk.get(e.id)?.journal.map((r) => [r.t, r.r]), [['final', 0], ['retry', 1]], 'once space returns the journal holds both');
  await clock.advance(20 * MIN);
  t.same(sent, ['a@x.test', 'b@x.test', 'b@x.test'], 'only the deferred recipient is tried again, on its own schedule');
  await h.queue.stop(0);
});
