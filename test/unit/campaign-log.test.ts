import { readdirSync } from 'node:fs';
import { pino } from 'pino';
import t from 'tap';
import { CampaignLog, campaignLogCsv, campaignTimeline, readCampaignLog, sweepCampaignLogsHourly } from '../../src/feedback/campaign-log.ts';
import { csvField } from '../../src/feedback/campaign-log.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';
import { FakeClock } from '../support/fake-clock.ts';

/** Each campaign's delivery log (docs/dashboard.md, "Campaigns"): filed per campaign, read newest first. */
const T0 = Date.UTC(2026, 11, 6, 9, 58);
const event = (type: FeedbackEvent['type'], recipient: string, at: number, campaign: unknown = 'spring', extra: Partial<FeedbackEvent> = {}): FeedbackEvent => ({
  id: `${recipient}.${type}`, type, status: type === 'failed' ? 'failed' : 'sent', time: new Date(at).toISOString(), queue_id: 'Q1', message_id: '<m@x>', sender: 's@c.test', recipient, meta: { campaign }, ...extra,
} as FeedbackEvent);

async function filled(): Promise<string> {
  const dir = tempDir('tern-campaign-log-');
  t.teardown(() => dir.remove());
  const log = pino({ level: 'silent' });
  const clock = new FakeClock(T0);
  const [s0, s1] = [new CampaignLog(dir.path, 0, clock, log), new CampaignLog(dir.path, 1, clock, log)];
  for (let i = 0; i < 6; i++) s0.record(event('relayed', `user${i}@a.test`, T0 + i * 1000));
  for (let i = 0; i < 5; i++) s1.record(event('delivered', `user${i}@a.test`, T0 + 60_000 * 3 + i * 1000));
  s1.record(event('failed', 'user5@a.test', T0 + 60_000 * 3 + 9_000, 'spring', { response: { code: 550, enhanced: '5.1.1', text: '=HYPERLINK("x") user unknown, "really"' }, bounce: { class: 10, reason: 'userunknown', category: 'hard', type: 'hard', failure: 'User unknown' }, cause: 'bounce' }));
  s0.record(event('delivered', 'other@a.test', T0, 'autumn'));
  s0.record(event('delivered', 'none@a.test', T0, null));
  await Promise.all([s0.flush(), s1.flush()]);
  return dir.path;
}

t.test('a campaign is read from its own files, newest first, across shards and hours, paged', async (t) => {
  const dir = await filled();
  t.equal(readdirSync(dir).length, 2, 'one directory per campaign; an event without a campaign is not filed');
  const page1 = await readCampaignLog(dir, 'spring', { offset: 0, limit: 4 });
  t.same(page1.entries.map((e) => `${e.type} ${e.recipient}`), ['failed user5@a.test', 'delivered user4@a.test', 'delivered user3@a.test', 'delivered user2@a.test'], 'the newest hour first (10:01 before 09:58), newest first in it');
  t.ok(page1.more);
  const last = await readCampaignLog(dir, 'spring', { offset: 8, limit: 4 });
  t.equal(last.entries.length, 4);
  t.notOk(last.more, 'the last page says so');
  t.match(page1.entries[0], { code: 550, enhanced: '5.1.1', reason: 'userunknown', class: 10, failure_type: 'hard', cause: 'bounce' });
  t.same((await readCampaignLog(dir, 'spring', { recipient: 'USER3@', offset: 0, limit: 50 })).entries.map((e) => e.type), ['delivered', 'relayed'], 'search by recipient, any case');
  t.same((await readCampaignLog(dir, 'spring', { type: 'failed', offset: 0, limit: 50 })).entries.map((e) => e.recipient), ['user5@a.test'], 'filter by status');
  t.same((await readCampaignLog(dir, 'nobody', { offset: 0, limit: 50 })).entries, [], 'an unknown campaign: nothing, no error');
});

t.test('CSV: a header, one row per entry, fields quoted, formulas defused', async (t) => {
  const dir = await filled();
  const lines: string[] = [];
  for await (const line of campaignLogCsv(dir, 'spring', { type: 'failed' })) lines.push(line);
  t.equal(lines[0], 'time,type,recipient,queue_id,code,enhanced,reason,class,failure_type,cause,async,text\n');
  t.equal(lines.length, 2);
  t.match(lines[1], /^2026-12-06T10:01:09\.000Z,failed,user5@a\.test,Q1,550,5\.1\.1,userunknown,10,hard,bounce,,"'=HYPERLINK\(""x""\) user unknown, ""really"""\n$/);
  t.equal(csvField('-1'), "'-1", 'a leading minus is text to a spreadsheet');
  t.equal(csvField(undefined), '');
});

t.test('the timeline counts each minute, from a time on', async (t) => {
  const dir = await filled();
  t.same(await campaignTimeline(dir, 'spring', T0 - 3_600_000), [
    { minute: T0, relayed: 6, delivered: 0, soft_bounce: 0, failed: 0 },
    { minute: T0 + 180_000, relayed: 0, delivered: 5, soft_bounce: 0, failed: 1 },
  ]);
  t.same((await campaignTimeline(dir, 'spring', T0 + 60_000)).map((r) => r.minute), [T0 + 180_000], 'minutes before `since` are left out');
});

t.test('hours past keep are swept, and a campaign left with none goes', async (t) => {
  const dir = await filled();
  const clock = new FakeClock(T0 + 2 * 3_600_000);
  const sweeper = sweepCampaignLogsHourly(dir, 3_600_000 + 30 * 60_000, clock, pino({ level: 'silent' }));
  const until = Date.now() + 5_000;
  while (readdirSync(dir).length > 1 && Date.now() < until) await new Promise((r) => setImmediate(r));
  sweeper.stop();
  t.equal(readdirSync(dir).length, 1, 'autumn (09:00 only) is gone');
  t.same((await readCampaignLog(dir, 'spring', { offset: 0, limit: 50 })).entries.map((e) => e.type).sort(), ['delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'failed'], 'spring keeps its 10:00 hour');
});
