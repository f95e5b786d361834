import { pino } from 'pino';
import t from 'tap';
import { createCalendar } from '../../../src/egress/calendar.ts';
import { ReputationBook } from '../../../src/egress/reputation.ts';
import { tempDir } from '../../support/daemon.ts';
import { FakeClock } from '../../support/fake-clock.ts';

const DAY = 86_400_000;
const throttle = { category: 'block', reason: 'badreputation', type: 'ignored', retry: true } as const;
const unknown = { category: 'hard', reason: 'userunknown', type: 'hard', retry: false } as const;
const full = { category: 'soft', reason: 'mailboxfull', type: 'soft', retry: true } as const;

t.test('per source and site, a day at a time over a window; kept across a restart', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const clock = new FakeClock(Date.parse('2026-12-01T12:00:00Z'));
  const open = () => new ReputationBook({ days: 3, dir: dir.path, calendar: createCalendar('UTC') }, { clock, log: pino({ level: 'silent' }) });
  const book = open();
  await book.start();
  book.delivered('ip1', 'mx.a.test', 90);
  book.refused('ip1', 'mx.a.test', throttle, 5);
  book.refused('ip1', 'mx.a.test', unknown, 3);
  book.refused('ip1', 'mx.a.test', full, 2);
  book.refused('ip1', 'mx.a.test', throttle, 0); // a refused session
  t.same(book.summary('ip1', 'mx.a.test'), { days: 1, delivered: 90, deferred: { badreputation: 5, mailboxfull: 2 }, bounced: { hard: 3 }, throttled: 6, throttle_share: 0.06 });
  t.equal(book.summary('ip2', 'mx.a.test'), undefined, 'no history, no summary');
  await clock.advance(DAY);
  book.delivered('ip1', 'mx.a.test', 10);
  book.delivered('ip2', 'mx.b.test', 1);
  t.match(book.summary('ip1', 'mx.a.test'), { days: 2, delivered: 100 });
  t.same(book.list({ source: 'ip1' }).map((p) => p.site), ['mx.a.test']);
  t.same(book.list().map((p) => `${p.source}|${p.site}`), ['ip1|mx.a.test', 'ip2|mx.b.test'], 'worst throttle share first');
  await book.stop();

  const again = open();
  await again.start();
  t.match(again.summary('ip1', 'mx.a.test'), { days: 2, delivered: 100, throttled: 6 }, 'read back after a restart');
  await clock.advance(2 * DAY);
  t.match(again.summary('ip1', 'mx.a.test'), { days: 1, delivered: 10 }, 'the first day has left the 3-day window');
  await clock.advance(DAY);
  t.equal(again.summary('ip1', 'mx.a.test'), undefined, 'idle past the window: forgotten');
  await again.stop();
});
