import pino from 'pino';
import t from 'tap';
import { createRelayedRecorder } from '../../src/feedback/relayed.ts';
import type { Envelope } from '../../src/model/envelope.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';

const envelope = (id: string): Envelope => ({
  id, sender: 'a@example.test', recipients: [{ address: 'x@example.test' }, { address: 'y@example.test' }],
  messageId: `<${id}@tern>`, meta: {}, receivedAt: 0, expiresAt: 1e12, smtputf8: false, eightBit: false,
  client: { ip: '127.0.0.1', helo: 'client' }, bodySize: 10,
} as unknown as Envelope);

function harness(failures: number) {
  const clock = new FakeClock();
  const recorded: FeedbackEvent[][] = [];
  const queued: string[] = [];
  let calls = 0;
  const recorder = createRelayedRecorder({
    record: async (events) => {
      calls += 1;
      if (calls <= failures) throw new Error('ENOSPC: no space left on device');
      recorded.push([...events]);
    },
    onRecorded: (e) => queued.push(e.id),
    clock,
    log: pino({ level: 'silent' }),
  });
  return { clock, recorder, recorded, queued, calls: () => calls };
}

t.test('relayed events are recorded, then the message is queued', async (t) => {
  const h = harness(0);
  h.recorder.accepted(envelope('m1'));
  t.same(h.queued, [], 'not queued before its events are recorded');
  await settle();
  t.same(h.recorded.map((b) => b.map((e) => `${e.id} ${e.type}`)), [['m1.0.r relayed', 'm1.1.r relayed']]);
  t.same(h.queued, ['m1']);
});

t.test('an outbox that cannot be written holds the message and is retried with backoff', async (t) => {
  const h = harness(3);
  h.recorder.accepted(envelope('m2'));
  await settle();
  t.equal(h.calls(), 1);
  t.same(h.queued, [], 'a message without durable relayed events is not queued');
  t.equal(h.recorder.waiting(), 1, 'ingress is told to take no new mail');
  await h.clock.advance(999);
  t.equal(h.calls(), 1, 'waits a second before trying again');
  await h.clock.advance(1);
  t.equal(h.calls(), 2);
  await h.clock.advance(2_000);
  t.equal(h.calls(), 3, 'then two seconds');
  t.same(h.queued, []);
  await h.clock.advance(4_000);
  t.equal(h.calls(), 4);
  t.same(h.queued, ['m2'], 'queued once recorded');
  t.equal(h.recorder.waiting(), 0, 'ingress takes mail again');
  t.equal(h.recorded.length, 1, 'recorded once');
});

t.test('stop waits for recordings in flight and abandons retries', async (t) => {
  const h = harness(Infinity);
  h.recorder.accepted(envelope('m3'));
  await settle();
  const stopped = h.recorder.stop();
  let done = false;
  void stopped.then(() => { done = true; });
  await settle();
  t.ok(done, 'a pending retry does not hold stop');
  await h.clock.advance(60_000);
  t.equal(h.calls(), 1, 'no retry after stop');
  t.same(h.queued, []);
});

t.test('a write that never returns counts as waiting after 5 s', async (t) => {
  const clock = new FakeClock();
  const recorder = createRelayedRecorder({
    record: () => new Promise<void>(() => undefined),
    onRecorded: () => t.fail('never recorded'),
    clock,
    log: pino({ level: 'silent' }),
  });
  recorder.accepted(envelope('m4'));
  await clock.advance(4_999);
  t.equal(recorder.waiting(), 0, 'an fsync in progress is normal');
  await clock.advance(2);
  t.equal(recorder.waiting(), 1, 'a stalled one holds ingress');
});

t.test('stop waits for a recording in flight, which still queues its message', async (t) => {
  const clock = new FakeClock();
  let finish = (): void => undefined;
  const queued: string[] = [];
  const recorder = createRelayedRecorder({
    record: () => new Promise<void>((resolve) => { finish = resolve; }),
    onRecorded: (e) => queued.push(e.id),
    clock,
    log: pino({ level: 'silent' }),
  });
  recorder.accepted(envelope('m5'));
  let done = false;
  void recorder.stop().then(() => { done = true; });
  await settle();
  t.notOk(done, 'stop is held by the write in progress');
  finish();
  await settle();
  t.ok(done, 'and resolves once it is durable');
  t.same(queued, ['m5']);
});
