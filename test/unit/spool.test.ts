import { readdirSync, writeFileSync, appendFileSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { text } from 'node:stream/consumers';
import t from 'tap';
import { systemClock } from '../../src/lib/clock.ts';
import type { Envelope } from '../../src/model/envelope.ts';
import { newQueueId, type QueueId } from '../../src/model/ids.ts';
import { openSpool } from '../../src/spool/index.ts';
import { tempDir } from '../support/daemon.ts';

const envelopeFor = (id: QueueId, body: string, recipients = ['a@b.test', 'c@d.test']): Envelope => ({
  id, sender: 's@x.test', recipients: recipients.map((address) => ({ address })), messageId: '<m@x>', meta: { campaign: 'c1' },
  receivedAt: 1, expiresAt: 2, smtputf8: false, eightBit: false, client: { ip: '127.0.0.1', helo: 'h' }, bodySize: Buffer.byteLength(body),
});

async function store(spool: ReturnType<typeof openSpool>, body: string, recipients?: string[]): Promise<QueueId> {
  const id = newQueueId(Date.now());
  const writer = await spool.begin(id);
  await pipeline(Readable.from([Buffer.from(body)]), writer.stream);
  await writer.commit(envelopeFor(id, body, recipients));
  return id;
}

t.test('a committed message reads back: envelope, body and recipient journal', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = openSpool({ dir: dir.path, min_free: 0 }, systemClock);
  const id = await store(spool, 'Subject: x\r\n\r\nhello\r\n');
  const loaded = await spool.load(id);
  t.same(loaded.envelope.meta, { campaign: 'c1' });
  t.same(loaded.states, [{ attempts: 0, nextAt: 0 }, { attempts: 0, nextAt: 0 }]);
  t.equal(await text(spool.openBody(id, loaded.envelope.bodySize)), 'Subject: x\r\n\r\nhello\r\n', 'the body excludes envelope and trailer');
  await spool.journal(id, [{ t: 'retry', r: 0, n: 1, next: 500 }, { t: 'final', r: 1, n: 1, v: 'delivered' }]);
  await spool.journal(id, [{ t: 'final', r: 0, n: 2, v: 'failed', cause: 'bounce' }]);
  const again = await spool.load(id);
  t.same(again.states, [{ attempts: 2, nextAt: 500, final: 'failed' }, { attempts: 1, nextAt: 0, final: 'delivered' }]);
  await spool.remove(id);
  t.same(await spool.recover(), []);
});

t.test('recover lists complete messages and clears debris of interrupted writes', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = openSpool({ dir: dir.path, min_free: 0 }, systemClock);
  const a = await store(spool, 'one\r\n');
  const b = await store(spool, 'two\r\n');
  const aborted = await spool.begin(newQueueId(Date.now()));
  aborted.stream.write('half a message');
  const orphanJournal = join(dir.path, 'msg', '0', '01ZZZZZZZZZZZZZZZZZZZZZZZ0.j');
  writeFileSync(orphanJournal, '{"t":"final"}\n');
  const ids = await spool.recover();
  t.same(ids, [a, b].sort());
  const leftovers = readdirSync(join(dir.path, 'msg'), { recursive: true }).map(String).filter((f) => f.includes('.tmp-') || f.endsWith('.j'));
  t.same(leftovers, [], 'temp files and orphan journals removed');
});

t.test('a torn journal line is ignored; a corrupt message file is reported, not trusted', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = openSpool({ dir: dir.path, min_free: 0 }, systemClock);
  const id = await store(spool, 'x\r\n', ['only@b.test']);
  await spool.journal(id, [{ t: 'retry', r: 0, n: 1, next: 9 }]);
  const path = join(dir.path, 'msg', id.slice(-1), id);
  appendFileSync(`${path}.j`, '{"t":"final","r":0,"n":2,"v":"deliv');
  t.same((await spool.load(id)).states, [{ attempts: 1, nextAt: 9 }], 'the half-written final record does not count');
  truncateSync(path, statSync(path).size - 5);
  await t.rejects(spool.load(id), { code: 'TERN_SPOOL_CORRUPT' });
});

t.test('health follows free space', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  t.equal(await openSpool({ dir: dir.path, min_free: 1 }, systemClock).healthy(), true);
  t.equal(await openSpool({ dir: dir.path, min_free: Number.MAX_SAFE_INTEGER }, systemClock).healthy(), false);
});
