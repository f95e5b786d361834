import t from 'tap';
import { age, chartData, count, mergeMinute, type MinuteRow } from '../src/format.ts';

/** What the pages compute from the stream: how numbers read, and the chart's series. */
t.test('counts and ages read at a glance', async (t) => {
  t.equal(count(0), '0');
  t.equal(count(9_999), '9999');
  t.equal(count(12_345), '12.3 k');
  t.equal(count(2_500_000), '2.5 M');
  t.equal(count(Number.NaN), '–');
  t.equal(age(0), '–', 'nothing waiting');
  t.equal(age(45), '45 s');
  t.equal(age(720), '12 min');
  t.equal(age(3 * 3_600 + 300), '3 h 5 min');
  t.equal(age(2 * 86_400 + 4 * 3_600), '2 d 4 h');
});

const row = (minute: number, n: number): MinuteRow => ({ minute, received: n, delivered: n - 1, deferred: 1, failed: 0 });

t.test('the chart has one point a minute, minutes without traffic at zero', async (t) => {
  const now = Date.UTC(2026, 11, 6, 10, 30, 20);
  const at = (m: number): number => Date.UTC(2026, 11, 6, 10, m);
  const [xs, received, delivered] = chartData([row(at(28), 5), row(at(30), 9)], now, 4);
  t.same(xs, [at(27), at(28), at(29), at(30)].map((ms) => ms / 1000), 'x in seconds, the last minute is the current one');
  t.same(received, [0, 5, 0, 9]);
  t.same(delivered, [0, 4, 0, 8]);
});

t.test('the stream resends the current minute; merging replaces it and keeps the newest', async (t) => {
  const rows = [row(60_000, 1), row(120_000, 2)];
  t.same(mergeMinute(rows, row(120_000, 7), 10).map((r) => r.received), [1, 7], 'same minute: replaced');
  t.same(mergeMinute(rows, row(180_000, 3), 2).map((r) => r.minute), [120_000, 180_000], 'a new minute, the oldest dropped past keep');
  t.same(mergeMinute(rows, undefined, 10), rows, 'no minute yet: unchanged');
});
