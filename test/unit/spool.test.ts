import { readdirSync, writeFileSync, appendFileSync, truncateSync, statSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import t from 'tap';
import { systemClock } from '../../src/lib/clock.ts';
import type { Envelope } from '../../src/model/envelope.ts';
import { newQueueId, type QueueId } from '../../src/model/ids.ts';
import { openSpool, type SpoolOptions } from '../../src/spool/index.ts';
import { tempDir } from '../support/daemon.ts';

const envelopeFor = (id: QueueId, body: string, recipients = ['a@b.test', 'c@d.test']): Envelope => ({
  id, sender: 's@x.test', recipients: recipients.map((address) => ({ address })), messageId: '<m@x>', meta: { campaign: 'c1' },
  receivedAt: 1, expiresAt: 2, smtputf8: false, eightBit: false, client: { ip: '127.0.0.1', helo: 'h' }, bodySize: Buffer.byteLength(body),
});

const MiB = 1_048_576;
const opened: ReturnType<typeof openSpool>[] = [];
t.afterEach(async () => {
  for (const spool of opened.splice(0)) await spool.close();
});
function spoolAt(dir: string, overrides: Partial<SpoolOptions> = {}): ReturnType<typeof openSpool> {
  const spool = openSpool({ dir, min_free: 0, inline_max: MiB, segment_size: 64 * MiB, body_cache: 32 * MiB, ...overrides }, systemClock);
  opened.push(spool);
  return spool;
}
const segmentFiles = (dir: string): string[] => readdirSync(join(dir, 'seg')).sort();
const messageFiles = (dir: string): string[] => readdirSync(join(dir, 'msg'), { recursive: true }).map(String).filter((f) => f.includes('/') || f.includes('\\')).sort();

async function store(spool: ReturnType<typeof openSpool>, body: string, recipients?: string[]): Promise<QueueId> {
  const id = newQueueId(Date.now());
  const writer = await spool.begin(id);
  // In three pieces, waiting whenever the writer asks to, as ingress does.
  const bytes = Buffer.from(body);
  const third = Math.ceil(bytes.length / 3);
  for (let at = 0; at < bytes.length; at += third) await writer.write(bytes.subarray(at, at + third));
  await writer.commit(envelopeFor(id, body, recipients));
  return id;
}

t.test('a committed message reads back: envelope, body and recipient journal', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = spoolAt(dir.path);
  const id = await store(spool, 'Subject: x\r\n\r\nhello\r\n');
  const loaded = await spool.load(id);
  t.same(loaded.envelope.meta, { campaign: 'c1' });
  t.same(loaded.states, [{ attempts: 0, nextAt: 0 }, { attempts: 0, nextAt: 0 }]);
  t.equal(await text(spool.openBody(id, loaded.envelope.bodySize)), 'Subject: x\r\n\r\nhello\r\n', 'the body excludes envelope and trailer');
  t.equal(await text(spool.openBody(id, loaded.envelope.bodySize, 'X-Signed: 1\r\n')), 'X-Signed: 1\r\nSubject: x\r\n\r\nhello\r\n', 'with a prefix');
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
  const spool = spoolAt(dir.path);
  const a = await store(spool, 'one\r\n');
  const b = await store(spool, 'two\r\n');
  const aborted = await spool.begin(newQueueId(Date.now()));
  aborted.write(Buffer.from('half a message'));
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
  const spool = spoolAt(dir.path);
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
  t.equal(await spoolAt(dir.path, { min_free: 1 }).healthy(), true);
  t.equal(await spoolAt(dir.path, { min_free: Number.MAX_SAFE_INTEGER }).healthy(), false);
});

t.test('a shard\'s spool counts on its share of the room above the reserve, not all of it', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const stats = await statfs(dir.path);
  // 8 MiB above the reserve for the file system; a spool with half of it has 4.
  const minFree = stats.bavail * stats.bsize - 8 * MiB;
  const whole = spoolAt(dir.path, { min_free: minFree });
  const half = spoolAt(dir.path, { min_free: minFree, space_share: 0.5 });
  t.equal(await whole.healthy(), true);
  t.equal(await half.healthy(), true);
  await store(half, 'h'.repeat(3 * MiB));
  await t.rejects(store(half, 'i'.repeat(3 * MiB)), { code: 'TERN_SPOOL_FULL' }, 'a second 3 MiB does not fit in half of 8 MiB');
  await store(whole, 'w'.repeat(3 * MiB));
  t.pass('the spool with the whole room takes it');
});

t.test('a burst inside the free-space cache cannot eat the reserve: bytes written and in flight count', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const stats = await statfs(dir.path);
  // Leave room for 5 MiB above the reserve (the disk may move a little under us: 1 MiB slack).
  const spool = spoolAt(dir.path, { min_free: stats.bavail * stats.bsize - 5 * MiB, inline_max: 256 * 1024 });
  t.equal(await spool.healthy(), true, 'room before the burst');
  const writers = await Promise.all(Array.from({ length: 10 }, () => spool.begin(newQueueId(Date.now()))));
  let held = 0;
  const results = await Promise.all(writers.map(async (w) => {
    try {
      for (let i = 0; i < 4; i++) {
        await w.write(Buffer.alloc(256 * 1024, 0x61));
        held += 256 * 1024;
      }
      return 'taken';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
  }));
  t.ok(held <= 5 * MiB && held >= 4 * MiB, `${(held / MiB).toFixed(2)} MiB taken by ten concurrent 1 MiB messages with 5 MiB above the reserve`);
  t.ok(results.every((r) => r === 'taken' || r === 'TERN_SPOOL_FULL'), 'the rest are refused as a full spool (ingress answers 452)');
  const late = await spool.begin(newQueueId(Date.now()));
  await t.rejects(Promise.resolve(late.write(Buffer.alloc(MiB))), { code: 'TERN_SPOOL_FULL' }, 'what sessions in flight hold counts against the next message');
  writers.push(late);
  await Promise.all(writers.map((w) => w.abort()));
  t.equal(await spool.healthy(), true, 'aborted messages give their room back');
  await store(spool, 'x'.repeat(3 * MiB));
  t.equal(await spool.healthy(), true, 'a committed 3 MiB message leaves room above the reserve');
  await t.rejects(store(spool, 'y'.repeat(3 * MiB)), { code: 'TERN_SPOOL_FULL' }, 'another would not: refused before the reserve is crossed');
});

t.test('small messages share a segment; a restart recovers them and reads bodies back from disk', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const first = spoolAt(dir.path);
  const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => store(first, `Subject: ${i}\r\n\r\nbody ${i}\r\n`)));
  t.same(segmentFiles(dir.path), ['000000000001.log'], '40 concurrent commits, one segment');
  t.same(messageFiles(dir.path), [], 'no file per message');
  t.equal(await text(first.openBody(ids[3] as QueueId, 100)), 'Subject: 3\r\n\r\nbody 3\r\n', 'read from memory');

  const second = spoolAt(dir.path);
  t.same(await second.recover(), [...ids].sort());
  const loaded = await second.load(ids[7] as QueueId);
  t.equal(loaded.envelope.id, ids[7]);
  t.same(loaded.states, [{ attempts: 0, nextAt: 0 }, { attempts: 0, nextAt: 0 }]);
  t.equal(await text(second.openBody(ids[7] as QueueId, loaded.envelope.bodySize)), 'Subject: 7\r\n\r\nbody 7\r\n', 'read from the segment file');
  t.equal(await text(second.openBody(ids[7] as QueueId, loaded.envelope.bodySize, 'X-P: 1\r\n')), 'X-P: 1\r\nSubject: 7\r\n\r\nbody 7\r\n', 'from the segment file, with a prefix');
});

t.test('removed messages stay removed across restarts, and empty sealed segments are deleted', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const first = spoolAt(dir.path);
  const [a, b, c] = [await store(first, 'a\r\n'), await store(first, 'b\r\n'), await store(first, 'c\r\n')] as QueueId[];
  await first.remove(a as QueueId);
  await first.remove(c as QueueId);
  await first.settle();
  t.same(readFileSync(join(dir.path, 'seg', '000000000001.del'), 'latin1').split('\n').filter(Boolean).sort(), [a, c].sort(), 'tombstones');

  const second = spoolAt(dir.path);
  t.same(await second.recover(), [b]);
  await second.remove(b as QueueId);
  await second.settle();
  t.same(segmentFiles(dir.path), [], 'the sealed segment went with its last message');
  const third = spoolAt(dir.path);
  t.same(await third.recover(), []);
});

t.test('segments roll over at segment_size and are deleted as they empty', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = spoolAt(dir.path, { segment_size: MiB });
  const body = `Subject: big\r\n\r\n${'x'.repeat(100_000)}\r\n`;
  const ids: QueueId[] = [];
  for (let i = 0; i < 25; i++) ids.push(await store(spool, body));
  t.ok(segmentFiles(dir.path).filter((f) => f.endsWith('.log')).length >= 3, '2.5 MB in 1 MiB segments');
  for (const id of ids) await spool.remove(id);
  await spool.settle();
  t.same(segmentFiles(dir.path).filter((f) => f.endsWith('.log')).length, 1, 'only the segment still being written remains');
});

t.test('a message larger than inline_max is streamed to a file of its own', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = spoolAt(dir.path, { inline_max: 1024 });
  const body = `Subject: large\r\n\r\n${'y'.repeat(5000)}\r\n`;
  const id = await store(spool, body);
  t.same(messageFiles(dir.path), [join(id.slice(-1), id)]);
  t.equal(await text(spool.openBody(id, Buffer.byteLength(body))), body);
  t.same(await spoolAt(dir.path).recover(), [id]);
});

t.test('a large message whose file cannot be written: write() asks to wait, then rejects, and commit fails', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const spool = spoolAt(dir.path, { inline_max: 16 });
  const id = newQueueId(Date.now());
  const writer = await spool.begin(id);
  t.equal(writer.write(Buffer.from('Subject: s\r\n')), undefined, 'a piece within inline_max is kept, no waiting');
  rmSync(join(dir.path, 'msg'), { recursive: true });
  writeFileSync(join(dir.path, 'msg'), 'not a directory');
  const wait = writer.write(Buffer.from('\r\nmore than sixteen bytes of body\r\n'));
  t.ok(wait, 'past inline_max the caller is asked to wait');
  await t.rejects(wait as Promise<void>, 'the failed file write is reported to the writer');
  await t.rejects(writer.write(Buffer.from('x')) as Promise<void>, 'later pieces are refused');
  await t.rejects(writer.commit(envelopeFor(id, 'x')), /cannot store message/);
  await writer.abort();
});

t.test('a first journal record moves the message from its segment to a file', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const first = spoolAt(dir.path);
  const id = await store(first, 'Subject: deferred\r\n\r\nx\r\n');
  await first.journal(id, [{ t: 'retry', r: 0, n: 1, next: 77 }, { t: 'final', r: 1, n: 1, v: 'delivered' }]);
  await first.settle();
  t.same(messageFiles(dir.path), [join(id.slice(-1), id), join(id.slice(-1), `${id}.j`)].sort());

  const second = spoolAt(dir.path);
  t.same(await second.recover(), [id], 'recovered once, from its file');
  t.same((await second.load(id)).states, [{ attempts: 1, nextAt: 77 }, { attempts: 1, nextAt: 0, final: 'delivered' }]);
  t.equal(await text(second.openBody(id, (await second.load(id)).envelope.bodySize)), 'Subject: deferred\r\n\r\nx\r\n');
});

t.test('a crash between the move to a file and the tombstone: the file wins, once', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const first = spoolAt(dir.path);
  const id = await store(first, 'm\r\n');
  const keep = await store(first, 'k\r\n');
  await first.journal(id, [{ t: 'retry', r: 0, n: 1, next: 5 }]);
  await first.settle();
  rmSync(join(dir.path, 'seg', '000000000001.del'));
  const second = spoolAt(dir.path);
  t.same(await second.recover(), [id, keep].sort());
  t.same((await second.load(id)).states[0], { attempts: 1, nextAt: 5 }, 'state from the file\'s journal');
  await second.settle();
  const third = spoolAt(dir.path);
  t.same(await third.recover(), [id, keep].sort(), 'still once each after another restart');
});

t.test('a torn or damaged segment tail is ignored and kept for inspection', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const first = spoolAt(dir.path);
  const a = await store(first, 'first\r\n');
  await store(first, 'second\r\n');
  await store(first, 'third\r\n');
  const log = join(dir.path, 'seg', '000000000001.log');
  const bytes = readFileSync(log);
  const secondAt = bytes.indexOf('second\r\n');
  bytes[secondAt] = 'S'.charCodeAt(0);
  writeFileSync(log, bytes);
  appendFileSync(log, bytes.subarray(0, 30));

  const second = spoolAt(dir.path);
  t.same(await second.recover(), [a], 'records from the damaged one on are not trusted');
  const kept = readdirSync(join(dir.path, 'corrupt'));
  t.same(kept, ['segment-000000000001.tail']);
  t.ok(readFileSync(join(dir.path, 'corrupt', kept[0] as string)).includes('third'), 'later records are preserved for an operator');

  const torn = tempDir();
  t.teardown(() => torn.remove());
  const spool = spoolAt(torn.path);
  const only = await store(spool, 'whole\r\n');
  appendFileSync(join(torn.path, 'seg', '000000000001.log'), Buffer.alloc(4096));
  t.same(await spoolAt(torn.path).recover(), [only], 'zeros after the last record (a cut-short batch) are ignored');
  t.notOk(existsSync(join(torn.path, 'corrupt')), 'nothing worth keeping');
});
