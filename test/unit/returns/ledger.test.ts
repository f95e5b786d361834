import { readdirSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import t from 'tap';
import { systemClock } from '../../../src/lib/clock.ts';
import { newQueueId } from '../../../src/model/ids.ts';
import { findSent, SentLedger, sweepSent } from '../../../src/returns/ledger.ts';
import { tempDir } from '../../support/daemon.ts';

/**
 * The sent ledger (docs/bounces.md, "The sent ledger"): a delivered recipient is filed under the
 * minute its message arrived, so a bounce's lookup reads one minute's files of every shard, and
 * minutes past bounce.keep are swept.
 */
const sent = (queueId: string, index: number, recipient: string) => ({ queue_id: queueId, index, recipient, sender: 's@campaign.test', message_id: `<${queueId}@c>`, meta: { campaign: 'c' }, at: 0 });

t.test('filed by arrival minute, per shard; a lookup finds every shard\'s lines of its message and no other', async (t) => {
  const dir = tempDir('tern-ledger-');
  t.teardown(() => dir.remove());
  const log = pino({ level: 'silent' });
  const at = Date.UTC(2026, 11, 6, 9, 41, 30);
  const message = newQueueId(at);
  const sameMinute = newQueueId(at + 10_000);
  const nextMinute = newQueueId(at + 60_000);
  const [s0, s1] = [new SentLedger(dir.path, 0, systemClock, log), new SentLedger(dir.path, 1, systemClock, log)];
  s0.record(sent(message, 0, 'a@x.test'));
  s1.record(sent(message, 1, 'b@x.test'));
  s0.record(sent(sameMinute, 0, 'c@x.test'));
  s0.record(sent(nextMinute, 0, 'd@x.test'));
  await Promise.all([s0.flush(), s1.flush()]);
  t.same(readdirSync(dir.path).sort(), ['202612060941-s0.jsonl', '202612060941-s1.jsonl', '202612060942-s0.jsonl']);
  t.same((await findSent(dir.path, message)).map((s) => s.recipient).sort(), ['a@x.test', 'b@x.test'], 'both shards, only this message');
  t.same((await findSent(dir.path, nextMinute)).map((s) => s.recipient), ['d@x.test']);
  t.same(await findSent(dir.path, newQueueId(at - 3_600_000)), [], 'a minute with no file: nothing, no error');
  t.equal(readFileSync(`${dir.path}/202612060941-s0.jsonl`, 'utf8').split('\n').filter(Boolean).length, 2, 'one JSON line per recipient');

  t.equal(await sweepSent(dir.path, at + 60_000 + 3_600_000, 3_600_000), 2, 'the minute older than keep is swept, both shards');
  t.same(readdirSync(dir.path), ['202612060942-s0.jsonl']);
});
