import t from 'tap';
import { mergeKpiLists, openKpis } from '../../src/feedback/kpis.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';

/** Campaign KPIs as the dashboard lists them: failures broken down, the active ones first, shards merged. */
const at = (minute: number): string => new Date(Date.UTC(2026, 11, 6, 10, minute)).toISOString();
const base = { status: 'sent' as const, queue_id: 'Q', message_id: '<m@x>', sender: 's@x.test', recipient: 'r@y.test' };
const failed = (id: string, campaign: string, minute: number, reason: string, klass: number, type: string): FeedbackEvent => ({
  ...base, id, type: 'failed', status: 'failed', time: at(minute), meta: { campaign }, cause: 'bounce', bounce: { class: klass, reason, category: 'x', type, failure: 'x' },
});

t.test('failures by reason and class; the list puts the latest activity first; shards merge by id', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const a = openKpis(`${dir.path}/a.json`);
  const b = openKpis(`${dir.path}/b.json`);
  a.apply(1, failed('1', 'spring', 1, 'userunknown', 10, 'hard'));
  a.apply(2, failed('2', 'spring', 2, 'mailboxfull', 22, 'soft'));
  a.apply(3, { ...base, id: '3', type: 'failed', status: 'failed', time: at(3), meta: { campaign: 'autumn' }, cause: 'expired' });
  b.apply(1, failed('4', 'spring', 9, 'userunknown', 10, 'hard'));
  t.match(a.view('campaign', 'spring'), { failed: { total: 2, hard: 1, soft: 1 }, failed_by: { reason: { userunknown: 1, mailboxfull: 1 }, class: { 10: 1, 22: 1 } } });
  t.match(a.view('campaign', 'autumn'), { failed: { expired: 1 }, failed_by: { reason: { expired: 1 }, class: { 1: 1 } } }, 'an expiry has no bounce: its cause is the reason');
  t.same(a.list('campaign').map((v) => v.id), ['spring', 'autumn']);
  const merged = mergeKpiLists([a.list('campaign'), b.list('campaign')]);
  t.same(merged.map((v) => v.id), ['spring', 'autumn'], 'spring was active last (10:09, on b)');
  t.match(merged[0], { failed: { total: 3 }, failed_by: { reason: { userunknown: 2, mailboxfull: 1 } }, last_event: Date.parse(at(9)) });
  await a.save();
  const reopened = openKpis(`${dir.path}/a.json`);
  t.match(reopened.view('campaign', 'spring'), { failed_by: { reason: { userunknown: 1 } } }, 'saved and read back');
});
