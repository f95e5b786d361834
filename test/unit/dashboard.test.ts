import t from 'tap';
import { History, overviewOf, readExposition } from '../../src/dashboard/overview.ts';
import { cookieValue, SESSION_LIMITS, SessionBook } from '../../src/dashboard/session.ts';
import { FakeClock } from '../support/fake-clock.ts';

/** The dashboard's server side on its own: sessions and the overview read from the metrics. */
t.test('a session lapses when unused, is touched by use, and ends with the token', async (t) => {
  const clock = new FakeClock(1_000_000);
  const book = new SessionBook(clock);
  const s = book.open();
  t.not(s.id, s.csrf, 'the CSRF token is not the session id');
  t.equal(book.find(`other=1; tern_session=${s.id}`)?.id, s.id, 'found by its cookie among others');
  await clock.advance(SESSION_LIMITS.idleMs - 1);
  t.ok(book.find(`tern_session=${s.id}`), 'used just in time: touched');
  await clock.advance(SESSION_LIMITS.idleMs - 1);
  t.ok(book.find(`tern_session=${s.id}`), 'still alive: the last use counts');
  await clock.advance(SESSION_LIMITS.idleMs);
  t.equal(book.find(`tern_session=${s.id}`), undefined, 'unused for the idle time: gone');
  const again = book.open();
  book.closeAll();
  t.equal(book.find(`tern_session=${again.id}`), undefined, 'a new admin.token ends every session');
  t.equal(book.find('tern_session=made-up'), undefined);
  t.equal(book.find(undefined), undefined);
});

t.test('sessions are bounded; guessing the token is limited per address', async (t) => {
  const clock = new FakeClock(0);
  const book = new SessionBook(clock);
  const first = book.open();
  for (let i = 0; i < SESSION_LIMITS.max; i++) book.open();
  t.equal(book.find(`tern_session=${first.id}`), undefined, 'past the maximum the least recently used goes');
  for (let i = 0; i < SESSION_LIMITS.failures; i++) {
    t.ok(book.mayTry('192.0.2.1'), `try ${i + 1}`);
    book.failed('192.0.2.1');
  }
  t.notOk(book.mayTry('192.0.2.1'), 'refused after the limit');
  t.ok(book.mayTry('192.0.2.2'), 'another address may still try');
  await clock.advance(SESSION_LIMITS.failureWindowMs + 1);
  t.ok(book.mayTry('192.0.2.1'), 'after the window, again');
});

t.test('cookies are read by name, not by prefix', async (t) => {
  t.equal(cookieValue('a=1; tern_session=x; b=2', 'tern_session'), 'x');
  t.equal(cookieValue('not_tern_session=y', 'tern_session'), undefined);
  t.equal(cookieValue('x'.repeat(10_000), 'tern_session'), undefined, 'an oversized header is not parsed');
});

const SCRAPE = `# HELP tern_recipients_accepted_total x
# TYPE tern_recipients_accepted_total counter
tern_recipients_accepted_total 120
tern_events_total{type="relayed"} 120
tern_events_total{type="delivered"} 100
tern_events_total{type="failed"} 3
tern_deferrals_total{provider="gmail",reason="speeding"} 4
tern_deferrals_total{provider="other",reason="paused"} 6
tern_queue_recipients 17
tern_queue_messages 9
tern_queue_oldest_message_age_seconds 42
tern_delivery_connections{provider="gmail"} 3
tern_delivery_connections{provider="other"} 2
tern_ingress_sessions 4
tern_feedback_pending_events 5
tern_feedback_oldest_pending_age_seconds 1.5
`;

t.test('the overview is what /metrics says, summed over labels', async (t) => {
  t.same(overviewOf(SCRAPE, 7), {
    time: 7,
    totals: { received: 120, delivered: 100, deferred: 10, failed: 3 },
    queue: { recipients: 17, messages: 9, oldestSeconds: 42 },
    connections: { in: 4, out: 5 },
    webhook: { pending: 5, oldestSeconds: 1.5 },
  });
  t.equal(readExposition('garbage\n{}\nname NaN\n').sum('name'), 0, 'lines that are not samples are skipped');
});

t.test('the history is minute by minute: deltas of the totals, restarts and old minutes handled', async (t) => {
  const h = new History();
  const at = (minute: number, second: number, received: number, delivered: number) => overviewOf(`tern_recipients_accepted_total ${received}\ntern_events_total{type="delivered"} ${delivered}\n`, minute * 60_000 + second * 1000);
  h.add(at(10, 0, 100, 90));
  t.same(h.rows(), [], 'the first sample is only a baseline');
  h.add(at(10, 20, 130, 95));
  h.add(at(10, 40, 150, 120));
  h.add(at(11, 5, 160, 150));
  t.match(h.rows(), [{ minute: 600_000, received: 50, delivered: 30 }, { minute: 660_000, received: 10, delivered: 30 }]);
  h.add(at(11, 30, 4, 2));
  t.match(h.rows().at(-1), { received: 14, delivered: 32 }, 'a counter that went down was reset: its new value all counts');
  h.add(at(11 + 400, 0, 10, 2));
  t.same(h.rows().map((r) => r.minute), [(11 + 400) * 60_000], 'minutes older than six hours are dropped');
});
