import t from 'tap';
import { TokenBucket } from '../../src/lib/token-bucket.ts';

t.test('a rate allows a one-second burst, then paces', async (t) => {
  const bucket = new TokenBucket({ count: 10, perMs: 1000 }, 0);
  for (let i = 0; i < 10; i++) t.equal(bucket.take(0), 0, `burst ${i}`);
  t.equal(bucket.take(0), 100, 'the 11th waits 100 ms');
  t.equal(bucket.take(100), 0, 'and goes after it');
});

t.test('slow rates wait long', async (t) => {
  const bucket = new TokenBucket({ count: 6, perMs: 3_600_000 }, 0);
  t.equal(bucket.take(0), 0);
  t.equal(bucket.take(0), 600_000, '6/h: one every 10 minutes');
});

t.test('tokens can be taken in a batch, as many as there are', async (t) => {
  const bucket = new TokenBucket({ count: 10, perMs: 1000 }, 0);
  t.same(bucket.takeUpTo(4, 0), { taken: 4, wait: 0 });
  t.same(bucket.takeUpTo(10, 0), { taken: 6, wait: 100 }, 'six left, the next in 100 ms');
  t.same(bucket.takeUpTo(3, 250), { taken: 2, wait: 50 });
});

t.test('a lower rate takes effect at once and forfeits the saved-up burst', async (t) => {
  const bucket = new TokenBucket({ count: 100, perMs: 1000 }, 0);
  bucket.setRate({ count: 2, perMs: 1000 }, 0);
  t.same(bucket.takeUpTo(10, 0), { taken: 2, wait: 500 }, 'burst is now two');
  bucket.setRate({ count: 100, perMs: 1000 }, 500);
  t.same(bucket.takeUpTo(100, 1000), { taken: 51, wait: 10 }, 'the higher rate refills from the change on');
});
