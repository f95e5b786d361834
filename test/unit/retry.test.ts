import t from 'tap';
import { decide, isTooManyRecipients, nextAttempt } from '../../src/queue/index.ts';
import { localReply, parseReply } from '../../src/model/reply.ts';
import { classifyReplies, createClassifier, defaultRules } from '../../src/bounce/index.ts';

const policy = { base: 20 * 60_000, max: 6 * 3_600_000, jitter: 0.1 };
const HOUR = 3_600_000;

t.test('retries double from 20 minutes, capped', async (t) => {
  const at = (attempt: number) => nextAttempt({ ...policy, jitter: 0 }, { attempt, now: 0, expiresAt: Infinity, random: 0.5 });
  t.same(at(1), { kind: 'retry', at: 20 * 60_000 });
  t.same(at(2), { kind: 'retry', at: 40 * 60_000 });
  t.same(at(3), { kind: 'retry', at: 80 * 60_000 });
  t.same(at(10), { kind: 'retry', at: 6 * HOUR }, 'capped at max');
});

t.test('jitter spreads retries by ±10 %', async (t) => {
  const low = nextAttempt(policy, { attempt: 1, now: 0, expiresAt: Infinity, random: 0 });
  const high = nextAttempt(policy, { attempt: 1, now: 0, expiresAt: Infinity, random: 1 });
  t.same(low, { kind: 'retry', at: 18 * 60_000 });
  t.same(high, { kind: 'retry', at: 22 * 60_000 });
});

t.test('expires when the next attempt would pass validity', async (t) => {
  t.same(nextAttempt(policy, { attempt: 1, now: 0, expiresAt: 19 * 60_000, random: 0.5 }), { kind: 'expire' });
  t.same(nextAttempt(policy, { attempt: 1, now: 0, expiresAt: 21 * 60_000, random: 0.5 }), { kind: 'retry', at: 20 * 60_000 });
});

t.test('a recipient over three days gets about eight attempts', async (t) => {
  let now = 0;
  let attempts = 1;
  for (;;) {
    const next = nextAttempt({ ...policy, jitter: 0 }, { attempt: attempts, now, expiresAt: 72 * HOUR, random: 0.5 });
    if (next.kind === 'expire') break;
    now = next.at;
    attempts++;
  }
  t.ok(attempts >= 8 && attempts <= 20, `${attempts} attempts in 3 days`);
});

const input = { attempt: 1, now: 0, expiresAt: 72 * HOUR, random: 0.5, siblingAccepted: false, classify: classifyReplies(createClassifier(defaultRules())) };

t.test('2xx delivers, 5xx fails, 4xx retries, each failure classified', async (t) => {
  t.match(decide(policy, { ...input, reply: parseReply('250 ok') }), { kind: 'delivered' });
  t.match(decide(policy, { ...input, reply: parseReply('550 5.1.1 no such user', { command: 'RCPT' }) }), { kind: 'failed', cause: 'bounce', bounce: { reason: 'userunknown', class: 10, type: 'hard' } });
  t.match(decide(policy, { ...input, reply: parseReply('451 4.3.0 later') }), { kind: 'retry', counts: true, bounce: { retry: true } });
  t.match(decide(policy, { ...input, expiresAt: 1, reply: parseReply('451 4.3.0 later') }), {
    kind: 'failed', cause: 'expired', reply: { code: 554, enhanced: '5.4.7' }, bounce: { reason: 'expired', class: 24, retry: false },
  });
});

t.test('the classification, not the reply code alone, decides whether to retry', async (t) => {
  const rateLimit = { ...input, classify: () => ({ reason: 'speeding', class: 70, category: 'soft' as const, type: 'ignored' as const, failure: 'Unreachable' as const, retry: true, rule: 'test' }) };
  t.match(decide(policy, { ...rateLimit, reply: parseReply('550 5.7.1 too many messages, slow down') }), { kind: 'retry', counts: true }, 'a 5xx rate limit is retried');
  const final = { ...input, classify: () => ({ reason: 'blocked', class: 50, category: 'block' as const, type: 'ignored' as const, failure: 'Refused' as const, retry: false, rule: 'test' }) };
  t.match(decide(policy, { ...final, reply: parseReply('451 4.7.1 go away') }), { kind: 'failed', cause: 'bounce' }, 'and a rule may make a 4xx final');
});

t.test('552 at RCPT (too many recipients) is transient, not a bounce', async (t) => {
  const r552 = parseReply('552 5.5.3 Too many recipients', { command: 'RCPT' });
  t.ok(isTooManyRecipients(r552));
  t.notOk(isTooManyRecipients(parseReply('552 5.2.2 Mailbox full', { command: 'RCPT' })));
  t.notOk(isTooManyRecipients(parseReply('552 5.5.3 Too many recipients', { command: 'DATA' })));
  t.match(decide(policy, { ...input, reply: r552 }), { kind: 'retry', counts: true });
  t.match(decide(policy, { ...input, siblingAccepted: true, reply: r552 }), { kind: 'retry', at: 0, counts: false }, 'again at once when others got through');
  t.match(decide(policy, { ...input, reply: localReply(556, '5.1.10', 'null MX', 'DNS') }), { kind: 'failed' });
});
