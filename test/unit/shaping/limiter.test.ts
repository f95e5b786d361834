import t from 'tap';
import { Limiter } from '../../../src/shaping/limiter.ts';
import type { PathSettings } from '../../../src/model/path.ts';

const BASE: PathSettings = {
  max_connections: 2, max_messages_per_connection: 100, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'opportunistic',
};

t.test('connection leases: at most max_connections out at once; a release makes room', async (t) => {
  let now = 0;
  const limiter = new Limiter(() => now);
  limiter.configure('p', BASE);
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 5 }]), [{ granted: 2 }], 'a batch gets what fits');
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 1 }]), [{ granted: 0 }], 'full: ask again after a release');
  limiter.release('p', 1);
  t.equal(limiter.leases('p'), 1);
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 1 }, { path: 'unknown', kind: 'connection', count: 1 }]), [{ granted: 1 }, { granted: 0 }]);
});

t.test('connection and message rates pace grants and say when to ask again', async (t) => {
  let now = 0;
  const limiter = new Limiter(() => now);
  limiter.configure('p', { ...BASE, max_connections: 10, max_connection_rate: { count: 2, perMs: 1000 }, max_message_rate: { count: 10, perMs: 1000 } });
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 3 }]), [{ granted: 2, retryAt: 500 }]);
  t.same(limiter.acquire([{ path: 'p', kind: 'message', count: 16 }]), [{ granted: 10, retryAt: 100 }], 'messages in a batch');
  now = 100;
  t.same(limiter.acquire([{ path: 'p', kind: 'message', count: 1 }]), [{ granted: 1 }]);
});

t.test('a lower limit holds for the next grant; leases already out stay out', async (t) => {
  let now = 0;
  const limiter = new Limiter(() => now);
  limiter.configure('p', { ...BASE, max_connections: 5 });
  limiter.acquire([{ path: 'p', kind: 'connection', count: 4 }]);
  limiter.configure('p', { ...BASE, max_connections: 2, max_message_rate: { count: 1, perMs: 1000 } });
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 1 }]), [{ granted: 0 }]);
  t.equal(limiter.leases('p'), 4);
  t.same(limiter.acquire([{ path: 'p', kind: 'message', count: 3 }]), [{ granted: 1, retryAt: 1000 }], 'a rate where there was none');
  limiter.release('p', 3);
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 2 }]), [{ granted: 1 }]);
  limiter.forget('p');
  t.equal(limiter.leases('p'), 2, 'a path with leases out is not forgotten');
  limiter.release('p', 2);
  limiter.forget('p');
  t.same(limiter.acquire([{ path: 'p', kind: 'connection', count: 1 }]), [{ granted: 0 }], 'forgotten: unknown until configured again');
});
