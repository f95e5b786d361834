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
