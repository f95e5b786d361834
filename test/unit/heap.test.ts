import t from 'tap';
import { MinHeap } from '../../src/queue/index.ts';

t.test('pops in due order, whatever the push order', async (t) => {
  const heap = new MinHeap<string>();
  const dues = [50, 10, 40, 10, 30, 20, 0, 60, 5];
  dues.forEach((d, i) => heap.push(d, `m${i}`));
  t.equal(heap.size, dues.length);
  t.equal(heap.peek()?.due, 0);
  const out: number[] = [];
  for (let e = heap.pop(); e; e = heap.pop()) out.push(e.due);
  t.same(out, [...dues].sort((a, b) => a - b));
  t.equal(heap.pop(), undefined);
});

t.test('removeWhere drops matching entries and keeps order', async (t) => {
  const heap = new MinHeap<number>();
  for (let i = 0; i < 100; i++) heap.push((i * 37) % 101, i);
  t.equal(heap.removeWhere((v) => v % 2 === 0), 50);
  let last = -1;
  for (let e = heap.pop(); e; e = heap.pop()) {
    t.ok(e.due >= last && e.value % 2 === 1);
    last = e.due;
  }
});
