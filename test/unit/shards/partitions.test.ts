import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import t from 'tap';
import { validateConfig } from '../../../src/config/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import type { Envelope } from '../../../src/model/envelope.ts';
import { newQueueId, type QueueId } from '../../../src/model/ids.ts';
import { partitionDir, partitionsOf, presentPartitions, resolveThreads, shardConfig } from '../../../src/shards/index.ts';
import { joinSpools, openSpool, type Spool } from '../../../src/spool/index.ts';
import { tempDir } from '../../support/daemon.ts';

t.test('each partition left by a larger N has exactly one owner, and a shard runs its own first', async (t) => {
  t.same(partitionsOf(0, 1, []), [0], 'a single loop with nothing to adopt');
  t.same(partitionsOf(0, 1, [1, 2, 3]), [0, 1, 2, 3], 'back to one loop: it adopts every shard folder');
  t.same(partitionsOf(1, 4, [1, 2, 3]), [1], 'nothing to adopt when N is what it was');
  // From 8 threads down to 3: 3..7 are adopted, each once.
  const present = [1, 2, 3, 4, 5, 6, 7];
  const owners = [0, 1, 2].map((k) => partitionsOf(k, 3, present));
  t.same(owners, [[0, 3, 6], [1, 4, 7], [2, 5]]);
  const adopted = owners.flatMap(([, ...rest]) => rest).sort();
  t.same(adopted, [3, 4, 5, 6, 7], 'every stranded partition, none twice');
  t.same(partitionsOf(1, 3, [4, 4, 7]), [1, 4, 7], 'a partition named twice (spool and feedback folders) is adopted once');
  t.throws(() => partitionsOf(3, 3, []), /shard 3 of 3 does not exist/);
});

t.test('partition folders: 0 is the configured folder itself, K is shard-K under it', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  t.equal(partitionDir(dir.path, 0), dir.path, 'a single-loop spool is shard 0\'s as it is');
  t.equal(partitionDir(dir.path, 2), join(dir.path, 'shard-2'));
  for (const name of ['shard-2', 'shard-10', 'shard-0', 'shard-x', 'msg', 'seg']) mkdirSync(join(dir.path, name));
  t.same(presentPartitions(dir.path).sort((a, b) => a - b), [2, 10], 'shard-0 and other folders are not partitions');
  t.same(presentPartitions(join(dir.path, 'absent')), [], 'no folder yet: none');
});

t.test('tuning.threads: "auto" is the CPUs available less one; a number is taken as it is', async (t) => {
  t.equal(resolveThreads('auto', 16), 15);
  t.equal(resolveThreads('auto', 2), 1, 'one loop on two CPUs');
  t.equal(resolveThreads('auto', 1), 1);
  t.equal(resolveThreads(3, 16), 3);
  const ok = validateConfig({ tuning: { threads: 'auto' } }, 'test', process.cwd());
  t.ok(ok.ok);
  const bad = validateConfig({ tuning: { threads: 0 } }, 'test', process.cwd());
  t.notOk(bad.ok);
  if (!bad.ok) t.match(bad.problems.map((p) => p.path).join(), /tuning\.threads/, 'the problem names the key');
  const defaults = validateConfig({}, 'test', process.cwd());
  t.equal(defaults.ok && defaults.config.tuning.threads, 'auto');
});

t.test('a shard gets 1/N of what bounds the process, and per-client limits as written', async (t) => {
  const loaded = validateConfig({ smtp: { max_clients: 1000 }, delivery: { max_active: 10_000 }, spool: { body_cache: '32MiB' }, feedback: { max_disk: '1GiB' } }, 'test', process.cwd());
  if (!loaded.ok) throw new Error('bad config');
  const config = loaded.config;
  t.equal(shardConfig(config, 1), config, 'one loop: unchanged');
  const share = shardConfig(config, 3);
  t.equal(share.smtp.max_clients, 334);
  t.equal(share.delivery.max_active, 3334);
  t.equal(share.delivery.max_active_recipients, Math.ceil(config.delivery.max_active_recipients / 3));
  t.equal(share.spool.body_cache, Math.ceil(32 * 1_048_576 / 3));
  t.equal(share.feedback.max_disk, Math.ceil(1_073_741_824 / 3));
  t.equal(share.smtp.limits.client_connection_limit, config.smtp.limits.client_connection_limit);
  t.equal(shardConfig(loaded.config, 5000).smtp.max_clients, 1, 'never below one');
});

const MiB = 1_048_576;
const spoolAt = (dir: string, body_cache = 0): Spool => openSpool({ dir, min_free: 0, inline_max: MiB, segment_size: 64 * MiB, body_cache }, systemClock);

async function store(spool: Spool, body: string): Promise<QueueId> {
  const id = newQueueId(Date.now());
  const writer = await spool.begin(id);
  await writer.write(Buffer.from(body));
  const envelope: Envelope = {
    id, sender: 's@x.test', recipients: [{ address: 'a@b.test' }, { address: 'c@d.test' }], messageId: '<m@x>', meta: {},
    receivedAt: 1, expiresAt: 2, smtputf8: false, eightBit: false, client: { ip: '127.0.0.1', helo: 'h' }, bodySize: Buffer.byteLength(body),
  };
  await writer.commit(envelope);
  return id;
}

t.test('an adopted partition\'s mail is delivered from where it lies; new mail goes to the shard\'s own', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  // A run with 2 shards left one message in shard-1's partition and one in shard 0's.
  const before = spoolAt(partitionDir(dir.path, 1));
  const stranded = await store(before, 'Subject: stranded\r\n\r\nbody\r\n');
  await before.close();
  const before0 = spoolAt(dir.path);
  const own0 = await store(before0, 'Subject: own\r\n\r\nbody\r\n');
  await before0.close();

  // Now one loop: shard 0 of 1 adopts partition 1.
  const spool = joinSpools(spoolAt(dir.path, MiB), [spoolAt(partitionDir(dir.path, 1))]);
  t.same((await spool.recover()).sort(), [own0, stranded].sort(), 'both partitions recovered');
  const loaded = await spool.load(stranded);
  t.equal(await text(spool.openBody(stranded, loaded.envelope.bodySize)), 'Subject: stranded\r\n\r\nbody\r\n');
  await spool.journal(stranded, [{ t: 'final', r: 0, n: 1, v: 'delivered' }]);
  t.same((await spool.load(stranded)).states[0], { attempts: 1, nextAt: 0, final: 'delivered' }, 'its journal lives beside it');
  const fresh = await store(spool, 'Subject: fresh\r\n\r\nbody\r\n');
  await spool.remove(stranded);
  await spool.close();

  const own = spoolAt(dir.path);
  t.same((await own.recover()).sort(), [own0, fresh].sort(), 'new mail went to the shard\'s own partition');
  await own.close();
  const old = spoolAt(partitionDir(dir.path, 1));
  t.same(await old.recover(), [], 'the finished message left the adopted partition');
  await old.close();
});
