import { pino } from 'pino';
import t from 'tap';
import { createCalendar, daysBetween } from '../../../src/egress/calendar.ts';
import { createWarmup, type WarmupSource } from '../../../src/egress/warmup.ts';
import { FakeClock } from '../../support/fake-clock.ts';
import { tempDir } from '../../support/daemon.ts';

const DAY = 86_400_000;
const START = Date.parse('2026-12-01T09:00:00Z');
const source = (over: Partial<WarmupSource> = {}): WarmupSource => ({ name: 'ip2', start: '2026-12-01', schedule: [3, 5], providers: new Map([['gmail', [1, 2]]]), ...over });

function setup(t: { teardown(fn: () => unknown): void }, sources: WarmupSource[] = [source()], timezone = 'UTC') {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const clock = new FakeClock(START);
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  let changes = 0;
  const open = () => createWarmup({ sources, timezone, stateDir: dir.path }, { clock, log, onChange: () => changes++ });
  return { clock, lines, open, changes: () => changes };
}

t.test('a day\'s cap, then the next step at local midnight, then warm past the schedule', async (t) => {
  const { clock, open } = setup(t);
  const w = open();
  await w.start();
  t.equal(w.cappedUntil('ip2', 'other'), undefined, 'day 0: may send');
  w.take('ip2', 'other', 3);
  t.equal(w.cappedUntil('ip2', 'other'), Date.parse('2026-12-02T00:00:00Z'), 'three sent: capped until midnight');
  t.equal(w.take('ip2', 'other', 1), false, 'a fourth is refused, and not counted');
  w.giveBack('ip2', 'other', 1);
  t.equal(w.take('ip2', 'other', 1), true, 'one given back (it reached no receiver) may go again');
  t.match(w.views()[0], { day: 0, cap: 3, sent: 3, remaining: 0, warm: false });
  await clock.advance(Date.parse('2026-12-02T00:00:00Z') - clock.now());
  t.equal(w.cappedUntil('ip2', 'other'), undefined, 'a new day');
  t.match(w.views()[0], { day: 1, cap: 5, sent: 0, date: '2026-12-02' });
  await clock.advance(DAY);
  t.match(w.views()[0], { day: 2, cap: null, remaining: null, warm: true }, 'past the schedule: warm');
  w.take('ip2', 'other', 10_000);
  t.equal(w.cappedUntil('ip2', 'other'), undefined, 'no cap any more');
  await w.stop();
});

t.test('a provider\'s own cap holds mail to it only', async (t) => {
  const { open } = setup(t);
  const w = open();
  await w.start();
  w.take('ip2', 'gmail', 1);
  t.ok(w.cappedUntil('ip2', 'gmail') !== undefined, 'gmail capped at 1');
  t.equal(w.cappedUntil('ip2', 'other'), undefined, 'the rest still goes');
  t.same(Object.keys(w.capped()), ['ip2|gmail'], 'what shards are told');
  w.take('ip2', 'other', 2);
  t.same(Object.keys(w.capped()).sort(), ['ip2|*', 'ip2|gmail'], 'the total cap (3) reached too');
  await w.stop();
});

t.test('paused, a ramp stays on its step; skip moves it; a start date to come sends nothing', async (t) => {
  const { clock, open } = setup(t, [source(), source({ name: 'later', start: '2026-12-03' })]);
  const w = open();
  await w.start();
  t.ok(w.pause('ip2'));
  await clock.advance(DAY);
  t.match(w.views()[0], { day: 0, paused: true }, 'no step while paused');
  t.ok(w.resume('ip2'));
  await clock.advance(DAY);
  t.match(w.views()[0], { day: 1, paused: false });
  t.ok(w.skip('ip2', 5));
  t.match(w.views()[0], { day: 6, warm: true });
  t.notOk(w.pause('nope'), 'no such source');
  t.match(w.views()[1], { source: 'later', day: 0 }, 'its start day has come');
  await w.stop();

  const early = setup(t, [source({ name: 'later', start: '2026-12-05' })]);
  const e = early.open();
  await e.start();
  t.match(e.views()[0], { day: -1, cap: 0 });
  t.ok(e.cappedUntil('later', 'other') !== undefined, 'nothing before its start');
  await e.stop();
});

t.test('a day with too many throttles and blocks holds the ramp, and the log says why', async (t) => {
  const { clock, open, lines } = setup(t, [source({ schedule: [100, 200, 300] })]);
  const w = open();
  await w.start();
  w.take('ip2', 'other', 40);
  for (let i = 0; i < 4; i++) w.replied('ip2', true, 1);
  await clock.advance(DAY);
  t.match(w.views()[0], { day: 0, held: /10% of the replies on 2026-12-01 were throttles or blocks \(over 5%\)/ });
  t.ok(lines.some((l) => String(l.msg).startsWith('warm-up: ip2 holds at day 0')), 'logged');
  w.take('ip2', 'other', 40);
  await clock.advance(DAY);
  t.match(w.views()[0], { day: 1, held: null }, 'a clean day: the ramp climbs again');
  await w.stop();
});

t.test('progress survives a restart', async (t) => {
  const { clock, open } = setup(t);
  const first = open();
  await first.start();
  await clock.advance(DAY);
  first.take('ip2', 'other', 4);
  first.pause('ip2');
  await first.stop();
  const again = open();
  await again.start();
  t.match(again.views()[0], { day: 1, sent: 4, paused: true, remaining: 1 });
  await again.stop();
});

t.test('days are the operator\'s: local midnight in the configured zone, daylight saving included', async (t) => {
  const tokyo = createCalendar('Asia/Tokyo');
  t.equal(tokyo.date(Date.parse('2026-12-01T16:00:00Z')), '2026-12-02', '01:00 in Tokyo is the next day');
  t.equal(tokyo.nextMidnight(Date.parse('2026-12-01T09:00:00Z')), Date.parse('2026-12-01T15:00:00Z'));
  const paris = createCalendar('Europe/Paris');
  // 29 March 2026: clocks go from 02:00 to 03:00; the day after starts at 22:00 UTC, not 23:00.
  t.equal(paris.nextMidnight(Date.parse('2026-03-29T10:00:00Z')), Date.parse('2026-03-29T22:00:00Z'));
  t.equal(paris.nextMidnight(Date.parse('2026-03-28T10:00:00Z')), Date.parse('2026-03-28T23:00:00Z'));
  t.equal(daysBetween('2026-12-30', '2027-01-02'), 3);
});

t.test('in a fleet, the caps count every node\'s sends; a ramp moved on one node moves on the others', async (t) => {
  const { clock, open, changes } = setup(t);
  const w = open();
  await w.start();
  w.take('ip2', 'other', 1);
  t.same(w.counts(), [{ source: 'ip2', date: '2026-12-01', counts: { sent: 1, bad: 0, judged: 1, 'p:other': 1 } }], 'this node\'s own counts, to be tallied');
  const before = changes();
  w.setOthers('ip2', '2026-12-01', { sent: 2, 'p:gmail': 1 });
  t.ok(w.cappedUntil('ip2', 'other') !== undefined, '1 here + 2 elsewhere: the day\'s 3 are spent');
  t.ok(w.cappedUntil('ip2', 'gmail') !== undefined, 'gmail\'s 1 was sent by another node');
  t.ok(changes() > before, 'the shards are told of the new cap');
  t.match(w.views()[0], { sent: 3, remaining: 0, providers: { gmail: { sent: 1, remaining: 0 } } }, 'the view shows the fleet\'s sends');
  w.setOthers('ip2', '2026-11-30', { sent: 100 });
  t.match(w.views()[0], { sent: 3 }, 'counts of another day are not taken');

  t.same(w.ramp('ip2'), { date: '2026-12-01', day: 0, paused: false });
  t.equal(w.setRamp('ip2', { date: '2026-12-01', day: 1, paused: true }), true, 'another node\'s operator skipped a day and paused');
  t.match(w.views()[0], { day: 1, paused: true, cap: 5 });
  t.equal(w.setRamp('ip2', { date: '2026-12-01', day: 1, paused: true }), false, 'the same ramp again changes nothing');
  t.equal(w.setRamp('ip2', { date: '2026-11-30', day: 4, paused: false }), false, 'nor one of another day');
  t.equal(w.setRamp('nope', { date: '2026-12-01', day: 4, paused: false }), false, 'nor one for a source not warming here');

  await clock.advance(Date.parse('2026-12-02T00:00:00Z') - clock.now());
  t.match(w.views()[0], { date: '2026-12-02', sent: 0 }, 'a new day starts from nothing, the others\' counts too');
  await w.stop();
});

t.test('in a fleet, the hold on a bad day judges every node\'s replies', async (t) => {
  const { clock, open } = setup(t);
  const w = open();
  await w.start();
  w.take('ip2', 'other', 3);
  w.setOthers('ip2', '2026-12-01', { sent: 0, bad: 400, judged: 500 });
  await clock.advance(Date.parse('2026-12-02T00:00:00Z') - clock.now());
  t.match(w.views()[0], { day: 0, held: /80% of the replies on 2026-12-01/ }, 'the others\' throttles hold the ramp here too');
  await w.stop();
});
