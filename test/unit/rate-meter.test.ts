import t from 'tap';
import { PeakMeter, RateMeter } from '../../src/lib/rate-meter.ts';

t.test('a rate meter counts the last minute, second by second, and forgets what falls out', async (t) => {
  const m = new RateMeter(60);
  for (let i = 1; i <= 60; i++) m.add(i * 1000);
  t.equal(m.total(60_000), 60);
  t.equal(m.perSecond(60_000), 1);
  t.equal(m.total(61_000), 59, 'the first second is out of the window');
  m.add(59_500, 5);
  t.equal(m.total(60_000), 65, 'a late count lands in its own second');
  m.add(0, 100);
  t.equal(m.total(60_000), 65, 'one older than the window is ignored');
  m.add(200_000);
  t.equal(m.total(200_000), 1, 'a long gap clears the ring');
  t.equal(m.total(199_000), 0);
  t.equal(new RateMeter().total(5_000), 0, 'an unused meter reads zero');
});

t.test('a peak meter gives the highest value since a time, within its window', async (t) => {
  const p = new PeakMeter(60);
  p.note(10_000, 3);
  p.note(10_500, 2);
  p.note(20_000, 1);
  t.equal(p.maxSince(0, 20_000), 3);
  t.equal(p.maxSince(15_000, 20_000), 1);
  t.equal(p.maxSince(0, 75_000), 1, 'the second at 10 s has left the minute');
  t.equal(p.maxSince(0, 200_000), 0);
});
