import { Readable } from 'node:stream';
import t from 'tap';
import { holdOutcome, mergeOutcomes, observationsOf, splitJob } from '../../../src/delivery/outcomes.ts';
import type { DeliveryJob } from '../../../src/delivery/index.ts';
import type { SiteName } from '../../../src/model/ids.ts';
import type { AttemptOutcome } from '../../../src/model/outcome.ts';
import { parseReply } from '../../../src/model/reply.ts';

const job: DeliveryJob = {
  site: 'mx.x.test' as SiteName, domain: 'x.test', hosts: [],
  envelope: { sender: 's@x', recipients: ['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test', 'e@x.test'], size: 10, eightBit: false },
  openBody: () => Readable.from([]),
};
const ok = parseReply('250 ok');
const route = { path: 'default|mx.x.test' };

t.test('a job with more recipients than the path takes is split in order', async (t) => {
  t.same(splitJob(job, 2).map((j) => j.envelope.recipients), [['a@x.test', 'b@x.test'], ['c@x.test', 'd@x.test'], ['e@x.test']]);
});

t.test('the parts of a split job come back as one outcome, replies in recipient order', async (t) => {
  const refused = parseReply('550 5.1.1 no such user', { command: 'RCPT' });
  const busy = parseReply('421 4.7.0 try later', { command: 'MAIL' });
  const merged = mergeOutcomes([
    { kind: 'transaction', route, replies: [ok, refused] },
    { kind: 'message-refused', route, reply: busy },
    { kind: 'transaction', route, replies: [ok] },
  ], [2, 2, 1]);
  t.same(merged, { kind: 'transaction', route, replies: [ok, refused, busy, busy, ok] });
  const held: AttemptOutcome = { kind: 'held', route, reply: parseReply('451 4.4.5 paused'), until: 5, reason: 'paused' };
  t.equal(mergeOutcomes([held, held], [2, 1]), held, 'parts that agree on a hold stay a hold');
});

t.test('a transaction tells shaping one success and each distinct refusal once, with the recipients it covered', async (t) => {
  const full = parseReply('452 4.2.2 mailbox full', { command: 'RCPT' });
  const outcome: AttemptOutcome = { kind: 'transaction', route, replies: [ok, full, full, ok, parseReply('451 4.4.2 lost', { origin: 'local' })] };
  t.same(observationsOf(outcome, 5), [{ kind: 'delivered', recipients: 2 }, { kind: 'reply', reply: full, recipients: 2 }], "Tern's own reply says nothing about the receiver");
  t.same(observationsOf({ kind: 'message-refused', route, reply: parseReply('421 4.7.0 [TSS04] deferred') }, 3), [{ kind: 'reply', reply: parseReply('421 4.7.0 [TSS04] deferred'), recipients: 3 }]);
});

t.test('a pause holds mail with a reply that says why; a failing path fails it with the receiver\'s words', async (t) => {
  const reply = parseReply('554 5.7.1 blocked');
  t.match(holdOutcome({ kind: 'pause', until: 1_000, rule: 'r', reply }, route), { kind: 'held', reason: 'paused', until: 1_000, reply: { code: 451, enhanced: '4.4.5', text: /^paused by rule r until 1970-01-01T00:00:01\.000Z after: 554 5\.7\.1 blocked$/, origin: 'local' } });
  t.same(holdOutcome({ kind: 'fail', until: 1_000, rule: 'r', reply }, route), { kind: 'path-failed', route, reply, rule: 'r' });
});
