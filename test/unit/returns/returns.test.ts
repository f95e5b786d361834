import t from 'tap';
import { newQueueId } from '../../../src/model/ids.ts';
import { eventsOfReturn, readReturnPath, returnPath, type ReturnedRecipient, type SentRecipient } from '../../../src/returns/index.ts';

const SECRET = 'a-secret-of-enough-length';
const id = newQueueId(Date.parse('2026-12-06T10:00:00Z'));

t.test('a return path names its message and recipient, and nobody can make one up', async (t) => {
  const path = returnPath(id, 3, SECRET, 'bounces.example.com');
  t.match(path, /^bounce\+[0-9A-Z]{26}\.3\.[0-9a-f]{12}@bounces\.example\.com$/);
  const local = path.slice(0, path.indexOf('@'));
  t.same(readReturnPath(local, SECRET), { queueId: id, index: 3 });
  t.same(readReturnPath(local.toLowerCase().replace('bounce+', 'BOUNCE+'), SECRET), { queueId: id, index: 3 }, 'case does not matter (some MTAs fold it)');
  t.equal(readReturnPath(local, 'another-secret-entirely'), undefined, 'another key: refused');
  t.equal(readReturnPath(local.replace('.3.', '.4.'), SECRET), undefined, 'another recipient: refused');
  t.equal(readReturnPath(`bounce+${id}.3.zzzzzzzzzzzz`, SECRET), undefined, 'not hex');
  t.equal(readReturnPath('postmaster', SECRET), undefined);
});

const sent = (index: number, recipient: string): SentRecipient => ({ queue_id: id, index, recipient, sender: 'news@campaign.test', message_id: '<m@x>', meta: { campaign: 'c1' }, at: 1 });
const found = (over: Partial<ReturnedRecipient>): ReturnedRecipient => ({ kind: 'dsn', recipient: 'b@y.test', status: '5.1.1', reply_code: 550, reason: 'userunknown', class: 10, type: 'hard', failure: 'User unknown', category: 'hard', action: 'failed', ...over });

t.test('what a returned message becomes, recipient by recipient', async (t) => {
  const ledger = [sent(0, 'a@y.test'), sent(1, 'b@y.test')];
  const r = eventsOfReturn({ queueId: id, index: 0 }, ledger, [
    found({}),
    found({ recipient: 'a@y.test', action: 'delayed', status: '4.4.7' }),
    found({ kind: 'autoreply', recipient: 'b@y.test', reason: 'vacation' }),
    found({ kind: 'arf', recipient: 'nobody-tern-knows@z.test', feedback_type: 'abuse', reason: 'feedback' }),
    found({ kind: 'unknown', recipient: '' }),
  ], Date.parse('2026-12-07T00:00:00Z'));
  t.same(r.results, ['failed', 'not-failure', 'autoreply', 'complaint', 'unmatched']);
  t.match(r.events[0], { id: `${id}.1.a`, type: 'failed', async: true, recipient: 'b@y.test', cause: 'bounce', bounce: { reason: 'userunknown', type: 'hard', failure: 'User unknown' } });
  t.match(r.events[1], { id: `${id}.0.c`, type: 'complaint', recipient: 'a@y.test', feedback_type: 'abuse' }, 'a report naming nobody known is about the return path\'s recipient');
  t.same(r.complainers, [{ domain: 'campaign.test', address: 'a@y.test' }]);
  t.same(eventsOfReturn({ queueId: id, index: 0 }, [], [found({})], 0).results, ['unmatched'], 'nothing in the ledger: unmatched');
});

t.test('KPIs: an async failure moves its recipient from delivered to failed; a complaint is counted apart', async (t) => {
  const { openKpis } = await import('../../../src/feedback/kpis.ts');
  const { tempDir } = await import('../../support/daemon.ts');
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const kpis = openKpis(`${dir.path}/kpis.json`);
  const base = { status: 'sent' as const, time: '', queue_id: id, message_id: '<m@x>', sender: 's@x.test', recipient: 'r@y.test', meta: { campaign: 'c1' } };
  kpis.apply(1, { ...base, id: '1', type: 'relayed', status: 'taken_into_account' });
  kpis.apply(2, { ...base, id: '2', type: 'delivered' });
  t.match(kpis.view('campaign', 'c1'), { delivered: 1, failed: { total: 0 }, complaints: 0, success_pct: 100 });
  kpis.apply(3, { ...base, id: '3', type: 'failed', status: 'failed', async: true, cause: 'bounce', bounce: { class: 10, reason: 'userunknown', category: 'hard', type: 'hard', failure: 'User unknown' } });
  t.match(kpis.view('campaign', 'c1'), { relayed: 1, delivered: 0, failed: { total: 1, hard: 1 }, success_pct: 0, in_progress: 0 });
  kpis.apply(4, { ...base, id: '4', type: 'complaint' });
  t.match(kpis.view('campaign', 'c1'), { complaints: 1, delivered: 0 });
});
