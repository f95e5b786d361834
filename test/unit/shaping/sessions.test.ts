/**
 * The coordinator's count of sessions past the greeting (src/shaping/sessions.ts): what shards
 * hear, the level an `observed` cut is taken from, and what it forgets.
 */
import t from 'tap';
import { SessionTally, SESSIONS_IDLE_MS } from '../../../src/shaping/sessions.ts';

const PEAK_WINDOW = 60_000;

t.test('every change reaches the listeners with the path\'s open sessions and a number that only grows', async (t) => {
  const tally = new SessionTally(PEAK_WINDOW);
  const heard: [string, number, number][] = [];
  const stop = tally.listen((path, s) => heard.push([path, s.open, s.opened]));
  tally.change('p', 1, 1_000);
  tally.change('q', 1, 1_000);
  tally.change('p', 1, 1_000);
  tally.change('p', -1, 2_000);
  t.same(heard, [['p', 1, 1], ['q', 1, 2], ['p', 2, 3], ['p', 1, 3]]);
  stop();
  tally.change('p', -1, 3_000);
  t.equal(heard.length, 4, 'no word after unsubscribing');
  t.same(tally.sessions('p'), { open: 0, opened: 3, openedAt: 1_000 }, 'the last greeted at 1 s');
  tally.change('r', -1, 3_000);
  t.equal(tally.sessions('r'), undefined, 'an end of a session it never counted is ignored, not a negative count');
});

t.test('levels: the count at the time, or the peak since peakFrom; never below what the shard saw itself', async (t) => {
  const tally = new SessionTally(PEAK_WINDOW);
  for (let i = 0; i < 4; i++) tally.change('p', 1, 10_000);
  for (let i = 0; i < 3; i++) tally.change('p', -1, 20_000);
  t.equal(tally.levels('p', { connections: 1, sentOnConnection: 0 }, 30_000).connections, 1, 'now: one open');
  t.equal(tally.levels('p', { connections: 1, sentOnConnection: 0, peakFrom: 5_000 }, 30_000).connections, 4, 'since 5 s: four at once at 10 s');
  t.equal(tally.levels('p', { connections: 1, sentOnConnection: 0, peakFrom: 25_000 }, 30_000).connections, 1, 'since 25 s: the one left');
  t.equal(tally.levels('p', { connections: 1, sentOnConnection: 0, peakFrom: 15_000 }, 30_000).connections, 3, 'since 15 s: three, still open at 20 s until the first of them closed');
  t.equal(tally.levels('p', { connections: 2, sentOnConnection: 0 }, 30_000).connections, 2, 'a shard that saw more than the tally (a message in flight) keeps its own');
  t.same(tally.levels('other', { connections: 2, sentOnConnection: 5 }, 30_000), { connections: 2, sentOnConnection: 5 }, 'a path never counted: the shard\'s levels as they are');
});

t.test('a path idle past its peak window is forgotten; met again, its opened number still grows', async (t) => {
  const tally = new SessionTally(PEAK_WINDOW);
  tally.change('p', 1, 0);
  tally.change('p', -1, 1_000);
  const before = tally.sessions('p')!.opened;
  tally.change('q', 1, 1_000 + Math.max(SESSIONS_IDLE_MS, PEAK_WINDOW) + 2_000);
  t.equal(tally.sessions('p'), undefined, 'forgotten');
  tally.change('p', 1, 1_000 + Math.max(SESSIONS_IDLE_MS, PEAK_WINDOW) + 3_000);
  t.ok(tally.sessions('p')!.opened > before, 'a pool comparing against the old number still sees a new session opened');
  t.equal(tally.sessions('q')!.open, 1, 'a path with a session open is kept');
});
