import t from 'tap';
import { HeldLists } from '../../src/queue/held.ts';

t.test('held lists: earliest placed first, at most what is asked, entries that left on their own skipped', async (t) => {
  const lists = new HeldLists<{ n: number; gone?: boolean }>();
  const entries: { n: number; gone?: boolean }[] = Array.from({ length: 5000 }, (_, n) => ({ n }));
  for (const e of entries) lists.add('p', e);
  t.same(lists.take('other', 3), []);
  t.same(lists.take('p', 3).map((e) => e.n), [0, 1, 2]);
  entries[3]!.gone = true;
  entries[5]!.gone = true;
  lists.trim('p');
  t.same(lists.take('p', 2).map((e) => e.n), [4, 6], 'gone entries skipped');
  // Most leave on their own, in order: the list is trimmed and compacted, and keeps its order.
  for (const e of entries.slice(7, 4000)) {
    e.gone = true;
    lists.trim('p');
  }
  t.same(lists.take('p', 2).map((e) => e.n), [4000, 4001]);
  t.equal(lists.take('p', Infinity).length, 998, 'the rest');
  t.same(lists.take('p', 1), [], 'and then nothing');
});
