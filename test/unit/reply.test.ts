import t from 'tap';
import { formatReply, parseReply } from '../../src/model/reply.ts';
import { newQueueId, parseQueueId, queueIdSource, siteNameOf } from '../../src/model/ids.ts';

t.test('multi-line replies are joined and repeated enhanced codes dropped', async (t) => {
  const r = parseReply('550-5.1.1 The email account that you tried to reach does not exist.\r\n550-5.1.1 Please try\r\n550 5.1.1 double-checking https://support.google.com/mail/?p=NoSuchUser', { command: 'RCPT' });
  t.same(r, {
    code: 550,
    enhanced: '5.1.1',
    text: 'The email account that you tried to reach does not exist. Please try double-checking https://support.google.com/mail/?p=NoSuchUser',
    command: 'RCPT',
    origin: 'remote',
  });
  t.equal(formatReply(r).slice(0, 30), '550 5.1.1 The email account th');
});

t.test('replies without an enhanced code keep their text', async (t) => {
  t.same(parseReply('421 Service not available'), { code: 421, text: 'Service not available', origin: 'remote' });
  t.same(parseReply('250'), { code: 250, text: '', origin: 'remote' });
});

t.test('queue ids sort by time and site names ignore MX order and case', async (t) => {
  const a = newQueueId(1_000_000);
  const b = newQueueId(2_000_000);
  t.ok(a < b);
  t.equal(parseQueueId(a), a);
  t.equal(parseQueueId('not-an-id'), undefined);
  t.equal(siteNameOf(['MX2.example.net.', 'mx1.example.net']), siteNameOf(['mx1.example.net', 'mx2.example.net']));
});

t.test('a queue id source draws random bytes in bulk: ids stay well-formed and distinct across refills', async (t) => {
  const next = queueIdSource();
  const ids = Array.from({ length: 2000 }, () => next(1_000_000));
  t.ok(ids.every((id) => parseQueueId(id) === id), 'every id a ULID');
  t.equal(new Set(ids).size, ids.length, 'no two alike within the same millisecond, across eight refills');
  t.ok(ids.every((id) => id.startsWith(newQueueId(1_000_000).slice(0, 10))), 'the time prefix as newQueueId makes it');
});
