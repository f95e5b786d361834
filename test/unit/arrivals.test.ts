import t from 'tap';
import { newQueueId } from '../../src/model/ids.ts';
import { Arrivals } from '../../src/queue/arrivals.ts';

t.test('the oldest arrival, to the minute, as messages come and go in any order', async (t) => {
  const arrivals = new Arrivals();
  t.equal(arrivals.oldest(), undefined, 'empty');
  const at = Date.parse('2026-12-06T10:00:30Z');
  const first = newQueueId(at);
  const second = newQueueId(at + 20_000);
  const later = newQueueId(at + 3_600_000);
  for (const id of [later, first, second]) arrivals.add(id);
  t.equal(arrivals.oldest(), Date.parse('2026-12-06T10:00:00Z'), 'the minute the oldest arrived in');
  arrivals.remove(first);
  t.equal(arrivals.oldest(), Date.parse('2026-12-06T10:00:00Z'), 'another of that minute still waits');
  arrivals.remove(second);
  t.equal(arrivals.oldest(), Date.parse('2026-12-06T11:00:00Z'));
  arrivals.remove(later);
  t.equal(arrivals.oldest(), undefined, 'empty again');
});
