import { MessageChannel } from 'node:worker_threads';
import t from 'tap';
import { answer, caller } from '../../../src/shards/rpc.ts';

t.test('a request over a real MessagePort gets its answer; errors and unknown requests come back as errors', async (t) => {
  const { port1, port2 } = new MessageChannel();
  t.teardown(() => {
    port1.close();
    port2.close();
  });
  answer(port2, {
    double: (n) => (n as number) * 2,
    later: async (n) => new Promise((resolve) => setTimeout(() => resolve(n), 10)),
    broken: () => {
      throw new Error('the shard says no');
    },
  });
  const rpc = caller(port1);
  // Answers are matched to their requests, whatever order they come back in.
  t.same(await Promise.all([rpc.call('later', 'slow'), rpc.call('double', 21)]), ['slow', 42]);
  await t.rejects(rpc.call('broken'), /the shard says no/);
  await t.rejects(rpc.call('missing'), /no such request: missing/);
});

t.test('a shard gone: calls waiting and calls after fail with the reason, none hangs', async (t) => {
  const { port1, port2 } = new MessageChannel();
  t.teardown(() => {
    port1.close();
    port2.close();
  });
  answer(port2, { never: () => new Promise(() => undefined) });
  const rpc = caller(port1);
  const waiting = rpc.call('never');
  rpc.fail(new Error('shard 1 exited with code 1'));
  await t.rejects(waiting, /shard 1 exited/);
  await t.rejects(rpc.call('never'), /shard 1 exited/);
});
