import t from 'tap';
import { createClassifier, defaultRules, REASON_TABLE } from '../../../src/bounce/index.ts';
import type { ConnectionEvent } from '../../../src/shaping/rules.ts';
import type { PathObservation, PathSettings } from '../../../src/model/path.ts';
import type { SmtpReply } from '../../../src/model/reply.ts';
import { AdaptiveState, type PathContext } from '../../../src/shaping/adaptive.ts';
import { defaultShapingRules, parseShapingRules } from '../../../src/shaping/index.ts';

/**
 * The adaptive rules Tern ships (src/shaping/default-rules.yaml), against the replies real
 * receivers send, classified by the real bounce rules as in the daemon: each named reply must
 * fire the rule docs/shaping.md says it does, as often as that rule's trigger asks.
 */
const BASE: PathSettings = {
  max_connections: 10, max_messages_per_connection: 100, max_message_rate: { count: 1000, perMs: 60_000 }, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'opportunistic',
};
const classify = createClassifier(defaultRules());
const shipped = defaultShapingRules({ reasons: Object.keys(REASON_TABLE) });
const ctx = (provider?: string): PathContext => ({ key: 'default|mx.test', provider, base: () => BASE });

/** Observe the same thing every 10 s until a rule acts (at most 40 times): which rule, after how many. */
function firstAction(observation: PathObservation, provider?: string, rules = shipped.adaptive): { rule: string; after: number } | undefined {
  const a = new AdaptiveState(rules, (r: SmtpReply) => classify(r));
  for (let i = 0; i < 40; i++) {
    const [change] = a.observe(ctx(provider), observation, { connections: 4, sentOnConnection: 7 }, i * 10_000);
    if (change) return { rule: change.rule, after: i + 1 };
  }
  return undefined;
}

const reply = (code: number, enhanced: string | undefined, text: string): PathObservation =>
  ({ kind: 'reply', recipients: 1, reply: { code, text, origin: 'remote', ...(enhanced ? { enhanced } : {}) } });
const event = (name: ConnectionEvent): PathObservation => ({ kind: 'event', event: name, detail: name });

const REAL: [string, PathObservation, string, number, string?][] = [
  ['Yahoo [TSS04]', reply(421, '4.7.0', '[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1'), 'yahoo-deferred', 1],
  ['Yahoo [TS03]', reply(554, '5.7.9', 'Message not accepted for policy reasons. [TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed'), 'yahoo-permanently-deferred', 3],
  ['Outlook 4.7.650', reply(451, '4.7.650', 'The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.'), 'rate-limited', 1],
  ['Outlook RP-003', reply(421, '4.7.0', 'Message rejected (RP-003). The mail server IP connecting to Outlook.com server has exceeded the connection limit allowed.'), 'too-many-connections', 1],
  ['Exchange Online concurrent connections', reply(421, '4.3.2', 'The maximum number of concurrent server connections has exceeded a per-domain limit, closing transmission channel'), 'too-many-connections', 1],
  ['Gmail 4.7.28', reply(421, '4.7.28', 'Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.'), 'rate-limited', 1],
  ['Gmail 4.7.28, other words', reply(421, '4.7.28', 'Gmail has detected that this message is likely suspicious'), 'gmail-rate-limited', 1],
  ['Gmail 4.7.0 rate limited', reply(421, '4.7.0', 'Try again later, closing connection. This IP has been temporarily rate limited'), 'rate-limited', 1],
  ['generic too many connections', reply(421, undefined, 'Too many concurrent SMTP connections from this IP address; please try again later.'), 'too-many-connections', 1],
  ['generic try again later', reply(421, '4.7.0', 'Try again later, closing connection.'), 'try-again-later', 3],
  ['Orange', reply(421, undefined, 'mwinf5c10 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR004_104'), 'too-many-connections', 1],
  ['Yahoo per-connection', reply(421, undefined, 'Max message per connection reached, closing transmission channel'), 'too-many-messages-per-connection', 1],
  ['Spamhaus listing', reply(554, '5.7.1', 'Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org'), 'blocklisted', 5],
  ['connect timeouts', event('connect-timeout'), 'connect-timeouts', 3],
  ['greeting timeouts', event('greeting-timeout'), 'greeting-timeouts', 3],
  ['connections dropped', event('dropped'), 'dropped-connections', 3],
  ['Comcast RL000001', reply(421, undefined, 'Comcast block for spam. RL000001 Please see http://postmaster.comcast.net/smtp-error-codes.php#RL000001'), 'comcast-rl', 2, 'comcast'],
];

t.test('the shipped adaptive rules fire on the replies real receivers send', async (t) => {
  t.ok(shipped.adaptive.length > 10, `${shipped.adaptive.length} shipped rules`);
  for (const [name, observation, rule, after, provider] of REAL) {
    t.same(firstAction(observation, provider), { rule, after }, `${name}: ${rule} after ${after}`);
  }
});

t.test('replies that are not throttling fire nothing', async (t) => {
  for (const text of ['Mailbox unavailable', 'User unknown', 'Message accepted', 'Requested action aborted: local error in processing']) {
    t.equal(firstAction(reply(450, '4.2.0', text)), undefined, text);
  }
});

const rules = (yaml: string) => {
  const loaded = parseShapingRules(yaml, { reasons: Object.keys(REASON_TABLE) });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.rules.adaptive;
};

t.test('a rule on the classified bounce reason fires on any wording the bounce rules call so', async (t) => {
  const speeding = rules(`
adaptive:
  - id: slow-down
    reason: [toomanyconn]
    action: { lower: { max_connections: "-50%" } }
    duration: 10m
`);
  // Neither text names connections in a way a regex rule would; the bounce rules' 421 fallback does.
  t.match(firstAction(reply(421, undefined, 'mx9 closing channel'), undefined, speeding), { rule: 'slow-down', after: 1 });
  t.equal(firstAction(reply(550, '5.1.1', 'No such user here'), undefined, speeding), undefined, 'another reason: nothing');
});

t.test('a rule on refused connections fires on connect-refused, not on other events', async (t) => {
  const refused = rules(`
adaptive:
  - id: refusing
    event: [connect-refused]
    trigger: { count: 2, within: 1m }
    action: { pause: true }
    duration: 5m
`);
  t.same(firstAction(event('connect-refused'), undefined, refused), { rule: 'refusing', after: 2 });
  t.equal(firstAction(event('connect-timeout'), undefined, refused), undefined);
});
