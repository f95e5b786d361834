import t from 'tap';
import { formatDuration, parseDuration, parseRate, parseSize } from '../../src/lib/units.ts';

t.test('durations in the units operators write', async (t) => {
  const cases: [string, number | undefined][] = [
    ['90s', 90_000], ['20m', 1_200_000], ['4h', 14_400_000], ['3d', 259_200_000], ['1w', 604_800_000],
    ['1h30m', 5_400_000], ['250ms', 250], ['0', 0], ['1.5s', 1_500],
    ['', undefined], ['3x', undefined], ['h', undefined], ['10', undefined], ['-5s', undefined], ['5s junk', undefined],
  ];
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, JSON.stringify(text));
  t.equal(formatDuration(259_200_000), '3d');
  t.equal(formatDuration(5_400_000), '90m');
  t.equal(formatDuration(1_500), '1500ms');
});

t.test('sizes are decimal unless they say iB', async (t) => {
  t.equal(parseSize('25MB'), 25_000_000);
  t.equal(parseSize('25MiB'), 25 * 1024 * 1024);
  t.equal(parseSize('512 KiB'), 512 * 1024);
  t.equal(parseSize('1TB'), 1e12);
  t.equal(parseSize('100'), 100);
  t.equal(parseSize('lots'), undefined);
  t.equal(parseSize('5 PB'), undefined);
});

t.test('rates are a count per period', async (t) => {
  t.same(parseRate('100/s'), { count: 100, perMs: 1_000 });
  t.same(parseRate('6000/h'), { count: 6_000, perMs: 3_600_000 });
  t.same(parseRate('10/5m'), { count: 10, perMs: 300_000 });
  t.equal(parseRate('0/s'), undefined);
  t.equal(parseRate('100'), undefined);
  t.equal(parseRate('100/y'), undefined);
});
