import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { classifyReplies, createClassifier, defaultRules, normaliseReply, parseRules, type Rule } from '../../src/bounce/index.ts';
import { localReply, parseReply } from '../../src/model/reply.ts';
import { tempDir } from '../support/daemon.ts';

const classify = createClassifier(defaultRules());
const rulesFrom = (yaml: string): readonly Rule[] => {
  const loaded = parseRules(yaml);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.rules;
};

t.test('normalising: multi-line prefixes, wrappers and the stage', async (t) => {
  t.same(normaliseReply({ text: '550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient\'s email address 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser - gsmtp' }), {
    code: 550, enhanced: '5.1.1',
    text: 'the email account that you tried to reach does not exist. please try double-checking the recipient\'s email address https://support.google.com/mail/?p=nosuchuser - gsmtp',
  });
  t.same(normaliseReply({ text: 'host mx.example.net[192.0.2.1] said: 550 5.1.1 <a@b>: Recipient address rejected: User unknown (in reply to RCPT TO command)' }), {
    code: 550, enhanced: '5.1.1', text: '<a@b>: recipient address rejected: user unknown', stage: 'rcpt',
  });
  t.match(normaliseReply({ text: 'SMTP error from remote mail server after end of data: 554 5.7.1 rejected as spam' }), { code: 554, enhanced: '5.7.1', text: 'rejected as spam', stage: 'data' });
  t.match(normaliseReply({ text: 'host mx.example.org[198.51.100.18] refused to talk to me: 554 Blocked' }), { code: 554, text: 'blocked', stage: 'connect' });
  t.match(normaliseReply({ code: 421, text: 'Try again later 421 service busy', stage: 'mail' }), { code: 421, stage: 'mail', text: 'try again later 421 service busy' }, 'a code inside the words stays');
});

t.test('the done-when examples', async (t) => {
  t.match(classify({ text: '550-5.1.1 The email account that you tried to reach does not exist' }), { reason: 'userunknown', class: 10, category: 'hard', type: 'hard', retry: false });
  t.match(classify({ text: '421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints' }), { category: 'block', type: 'ignored', retry: true });
});

t.test('Tern\'s own failures get the same shape', async (t) => {
  const replies = classifyReplies(classify);
  t.match(replies(localReply(550, '5.1.2', 'Host or domain name not found: nx.test (NXDOMAIN)', 'DNS')), { reason: 'hostunknown', type: 'hard', retry: false });
  t.match(replies(localReply(556, '5.1.10', 'Domain null.test does not accept mail (null MX)', 'DNS')), { reason: 'notaccept', type: 'hard', retry: false });
  t.match(replies(localReply(451, '4.4.3', 'DNS lookup for x.test failed: SERVFAIL', 'DNS')), { reason: 'networkerror', class: 21, retry: true });
  t.match(replies(localReply(451, '4.4.4', 'Cannot reach x.test: no address', 'DNS')), { reason: 'networkerror', retry: true });
  t.match(replies(localReply(451, '4.4.1', 'connection failed: connect ECONNREFUSED 127.0.0.9:25', 'CONNECT')), { reason: 'networkerror', retry: true });
  t.match(replies(localReply(451, '4.4.2', 'timeout: Greeting never received', 'CONNECT')), { reason: 'networkerror', retry: true });
  t.match(replies(localReply(451, '4.7.5', 'TLS failure: unsupported protocol', 'STARTTLS')), { reason: 'failedstarttls', retry: true });
  t.match(replies(localReply(554, '5.4.7', 'validity period expired; last reply: 451 4.3.0 try later', 'QUEUE')), { reason: 'expired', class: 24, category: 'soft', type: 'soft', retry: false });
  t.match(replies(parseReply('554 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org', { command: 'CONNECT' })), { category: 'block', retry: false }, 'a greeting 5xx is a block');
});

t.test('the reply code decides retry; the documented exceptions', async (t) => {
  const replies = classifyReplies(classify);
  t.match(replies(parseReply('552 5.5.3 Too many recipients', { command: 'RCPT' })), { retry: true, type: 'ignored' }, '552 at RCPT is transient');
  t.match(replies(parseReply('552 5.2.2 Mailbox full', { command: 'RCPT' })), { reason: 'mailboxfull', retry: false });
  t.match(replies(parseReply('450 4.1.1 <a@b>: Recipient address rejected: unverified address', { command: 'RCPT' })), { reason: 'userunknown', type: 'soft', retry: true }, 'a 4xx cannot quarantine an address');
  const mixed = replies(parseReply('550 4.2.2 Mailbox full', { command: 'RCPT' }));
  t.match(mixed, { reason: 'mailboxfull', retry: false, mismatch: /550 and enhanced code 4\.2\.2 disagree/ });
  t.match(replies(parseReply('550 5.1.1 User unknown', { command: 'DATA' })), { reason: 'filtered' }, 'refused only after DATA: a filter, as sisimai labels it');
  t.match(classify({ text: 'something nobody wrote a rule for', code: 550 }), { reason: 'onhold', class: 1, category: 'undetermined', retry: false, rule: 'code:550' });
  t.match(classify({ text: 'no code at all' }), { reason: 'undefined', rule: 'none' });
});

t.test('operator rules come first; conditions narrow a rule', async (t) => {
  const own = rulesFrom(`
rules:
  - id: acme-quota
    reason: mailboxfull
    match: "acme storage exhausted"
    code: ["5xx"]
  - id: acme-rate
    reason: speeding
    match: "slow down"
    code: [550]
    enhanced: ["5.7.*"]
    stage: [mail]
    retry: true
`);
  const c = createClassifier([...own, ...defaultRules()]);
  t.match(c({ text: '552 ACME storage exhausted' }), { reason: 'mailboxfull', rule: 'acme-quota' });
  t.match(c({ text: '550 5.7.1 please slow down', stage: 'mail' }), { reason: 'speeding', retry: true, rule: 'acme-rate' });
  t.not(c({ text: '550 5.7.1 please slow down', stage: 'rcpt' }).rule, 'acme-rate', 'wrong stage');
  t.not(c({ text: '550 5.1.1 please slow down', stage: 'mail' }).rule, 'acme-rate', 'wrong enhanced code');
  t.not(c({ text: '451 4.7.1 please slow down', stage: 'mail' }).rule, 'acme-rate', 'wrong reply code');
});

t.test('a bad rules file is refused with the place of each problem', async (t) => {
  const loaded = parseRules(`
rules:
  - id: ok-rule
    reason: blocked
    match: "fine"
  - id: bad-regex
    reason: blocked
    match: "unclosed (group"
  - id: bad-reason
    reason: nosuchreason
    match: "x"
  - id: ok-rule
    reason: blocked
    match: "again"
  - id: no-condition
    reason: blocked
  - id: typo
    reason: blocked
    mach: "x"
  - id: bad-code
    reason: blocked
    code: [999, "5x"]
`);
  t.equal(loaded.ok, false);
  const problems = loaded.ok ? [] : loaded.problems.map((p) => `${p.path}: ${p.problem}`);
  t.match(problems, [
    /^rules\[1\]\.match: invalid regular expression \(rule "bad-regex"\)/,
    /^rules\[2\]\.reason: is not a known reason .*\(rule "bad-reason"\)/,
    /^rules\[3\]\.id: duplicate id "ok-rule"/,
    /^rules\[4\]: needs at least one of match, code, enhanced/,
    /^rules\[5\]: Unrecognized key: "mach" \(rule "typo"\)/,
    /^rules\[5\]: needs at least one/,
    /^rules\[6\]\.code\[0\]: .*599/,
    /^rules\[6\]\.code\[1\]: must be a reply code/,
  ]);
  t.match(parseRules('rules: [ {'), { ok: false, problems: [{ path: '(yaml)' }] });
  t.match(parseRules('just: text'), { ok: false, problems: [{ path: '(file)' }] });
});

t.test('tern classify and tern check-config over rules files', async (t) => {
  const { run } = await import('../../src/cli/index.ts');
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env: {}, cwd: dir.path } };
  };
  const one = io();
  t.equal(await run(['classify', '550 5.1.1 <x@y.test>: Recipient address rejected: User unknown in local recipient table'], one.io), 0);
  t.match(JSON.parse(one.out[0] as string), { reason: 'userunknown', class: 10, category: 'hard', type: 'hard', retry: false });

  const { Readable } = await import('node:stream');
  const lines = io();
  const stdin = Readable.from(['452 4.2.2 mailbox over quota\n', '{"code":550,"enhanced":"5.1.1","text":"no such user","stage":"data"}\n', '\n', '{"stage":"nowhere","text":"x"}\n']);
  t.equal(await run(['classify'], { ...lines.io, stdin }), 1, 'one bad line: exit 1, the others still answered');
  t.match(lines.out.map((l) => JSON.parse(l)), [{ reason: 'mailboxfull', retry: true }, { reason: 'filtered' }, { error: /"stage" must be one of/ }]);

  const rules = join(dir.path, 'rules.yaml');
  writeFileSync(rules, 'rules:\n  - id: mine\n    reason: blocked\n    match: "user unknown"\n');
  const own = io();
  t.equal(await run(['classify', '--rules', rules, '550 5.1.1 User unknown'], own.io), 0);
  t.match(JSON.parse(own.out[0] as string), { reason: 'blocked', rule: 'mine' });

  writeFileSync(rules, 'rules:\n  - id: mine\n    reason: blocked\n    match: "(("\n');
  const bad = io();
  t.equal(await run(['classify', '--rules', rules, '550 x'], bad.io), 1);
  t.match(bad.err.join('\n'), /rules\[0\]\.match: invalid regular expression \(rule "mine"\)/);

  const config = join(dir.path, 'tern.yaml');
  writeFileSync(config, 'bounce:\n  rules_file: rules.yaml\n');
  const check = io();
  t.equal(await run(['check-config', '--config', config], check.io), 1);
  t.match(check.err.join('\n'), /bounce\.rules_file: rules\[0\]\.match: invalid regular expression/);
});

t.test('every reason has a campaign failure reason, and docs/bounces.md says the same', async (t) => {
  const { CAMPAIGN_FAILURE, REASONS } = await import('../../src/bounce/reasons.ts');
  const { CAMPAIGN_FAILURES } = await import('../../src/model/bounce.ts');
  const { readFileSync } = await import('node:fs');
  for (const r of REASONS) t.ok((CAMPAIGN_FAILURES as readonly string[]).includes(CAMPAIGN_FAILURE[r]), `${r} → ${CAMPAIGN_FAILURE[r]}`);
  const docs = readFileSync(new URL('../../docs/bounces.md', import.meta.url), 'utf8');
  const rows = [...docs.matchAll(/^\| `(\w+)` \| \d+ \| \w+ \| \w+ \| ([A-Za-z ]+) \|/gm)].map((m) => [m[1], m[2]]);
  t.equal(rows.length, REASONS.length, 'one row per reason');
  for (const [reason, failure] of rows) t.equal(failure, CAMPAIGN_FAILURE[reason as keyof typeof CAMPAIGN_FAILURE], `docs: ${reason}`);
  const c = createClassifier(defaultRules())({ code: 552, enhanced: '5.2.2', text: 'mailbox full' });
  t.match(c, { reason: 'mailboxfull', failure: 'Mailbox full' }, 'a classification carries it');
});
