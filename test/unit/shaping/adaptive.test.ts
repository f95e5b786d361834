import t from 'tap';
import { AdaptiveState, type PathContext } from '../../../src/shaping/adaptive.ts';
import { parseShapingRules } from '../../../src/shaping/index.ts';
import type { PathLevels, PathObservation, PathSettings } from '../../../src/model/path.ts';
import type { SmtpReply } from '../../../src/model/reply.ts';

const BASE: PathSettings = {
  max_connections: 10, max_messages_per_connection: 100, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'opportunistic',
};
const ctx = (provider?: string, base: PathSettings = BASE): PathContext => ({ key: 'default|mx.test', provider, base: () => base });
const reply = (code: number, text: string, enhanced?: string): PathObservation =>
  ({ kind: 'reply', recipients: 1, reply: { code, text, origin: 'remote', ...(enhanced ? { enhanced } : {}) } });
const levels = (connections = 0, sentOnConnection = 0): PathLevels => ({ connections, sentOnConnection });
const delivered: PathObservation = { kind: 'delivered', recipients: 1 };

function engine(yaml: string): AdaptiveState {
  const loaded = parseShapingRules(yaml, { reasons: ['speeding', 'onhold'] });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return new AdaptiveState(loaded.rules.adaptive, (r: SmtpReply) => ({ reason: /rate/.test(r.text) ? 'speeding' : 'onhold' }));
}

const limit = (a: AdaptiveState, key: string) => a.overrides('default|mx.test')?.values.get(key as never)?.value;

const CONNS = `
adaptive:
  - id: conns
    match: too many connections
    action: { lower: { max_connections: observed } }
    duration: 10m
    recover: { every: 1m, step: 10% }
`;

t.test('a refusal lowers max_connections to the connections the receiver did accept', async (t) => {
  const a = engine(CONNS);
  const [change] = a.observe(ctx(), reply(421, 'Too many connections from your IP'), levels(3), 0);
  t.match(change, { change: 'lower', rule: 'conns', action: 'lower', limits: { max_connections: 3 }, until: 600_000 });
  t.equal(limit(a, 'max_connections'), 3);
  t.same(a.observe(ctx(), reply(421, 'Service ready'), levels(3), 1), [], 'a reply no rule matches changes nothing');
});

t.test('replies Tern makes itself never trigger a rule', async (t) => {
  const a = engine(CONNS);
  const local: PathObservation = { kind: 'reply', recipients: 1, reply: { code: 421, text: 'too many connections', origin: 'local' } };
  t.same(a.observe(ctx(), local, levels(3), 0), []);
  t.equal(a.overrides('default|mx.test'), undefined);
});

t.test('a repeated trigger extends the effect; within the settle time it does not cut again', async (t) => {
  const a = engine(CONNS);
  a.observe(ctx(), reply(421, 'too many connections'), levels(4), 0);
  const [again] = a.observe(ctx(), reply(421, 'too many connections'), levels(2), 5_000);
  t.match(again, { change: 'extend', until: 605_000 });
  t.equal(limit(a, 'max_connections'), 4, 'replies already in flight do not stack');
  const [later] = a.observe(ctx(), reply(421, 'too many connections'), levels(2), 20_000);
  t.match(later, { change: 'relower', limits: { max_connections: 2 }, until: 620_000 }, 'after it, a receiver still refusing is followed down');
});

t.test('N matches within a period fire; older matches fall out of the window', async (t) => {
  const a = engine(`
adaptive:
  - { id: busy, code: [421], match: busy, trigger: { count: 3, within: 1m }, action: { lower: { max_connections: "-50%" } }, duration: 5m }
`);
  t.same(a.observe(ctx(), reply(421, 'busy'), levels(8), 0), []);
  t.same(a.observe(ctx(), reply(421, 'busy'), levels(8), 30_000), []);
  t.same(a.observe(ctx(), reply(421, 'busy'), levels(8), 70_000), [], 'the first match is out of the minute: two in the window');
  t.same(a.observe(ctx(), reply(450, 'busy'), levels(8), 71_000), [], 'the code condition holds too: a 450 does not count');
  const [fired] = a.observe(ctx(), reply(421, 'busy'), levels(8), 75_000);
  t.match(fired, { change: 'lower', limits: { max_connections: 4 } });
});

t.test('a rate is lowered from what the receiver accepted over the last minute', async (t) => {
  const a = engine(`
adaptive:
  - { id: tss04, match: '\\[tss04\\]', action: { lower: { max_message_rate: "-10%" } }, duration: 2h, recover: { every: 1m, step: 10% } }
`);
  // 600 accepted in the last minute: 10 a second, whatever the burst they came in.
  for (let i = 0; i < 600; i++) a.observe(ctx(), delivered, levels(), i * 10);
  const [change] = a.observe(ctx(), reply(451, '4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred', '4.7.0'), levels(5), 6_000);
  t.equal(change?.limits?.max_message_rate, 9, '10/s less 10 %');
  t.equal(limit(a, 'max_message_rate'), 9);
});

/** Success on the path, with its lowered limit holding mail back (a grant refused). */
function busy(a: AdaptiveState, at: number, key: 'max_connections' | 'max_message_rate' = 'max_connections'): void {
  a.observe(ctx(), delivered, levels(), at);
  a.pressed('default|mx.test', key);
}

t.test('recovery: lowered limits climb back on success, faster each interval, and the effect ends at the static value', async (t) => {
  const a = engine(CONNS);
  a.observe(ctx(), reply(421, 'too many connections'), levels(2), 0);
  t.same(a.tick(60_000), [], 'no success in the interval: no rise');
  t.equal(limit(a, 'max_connections'), 2);
  busy(a, 61_000);
  t.match(a.tick(120_000), [{ change: 'raise', limits: { max_connections: 3 } }], '+10 %, at least one');
  busy(a, 121_000);
  t.match(a.tick(180_000), [{ change: 'raise', limits: { max_connections: 4 } }]);
  for (const at of [181_000, 241_000]) {
    busy(a, at);
    a.tick(at + 59_000);
  }
  t.equal(limit(a, 'max_connections'), 9, 'steps double: 4 → 5 (+20 %) → 7 (+40 %), then +80 %');
  busy(a, 301_000);
  t.match(a.tick(360_000), [{ change: 'recovered', rule: 'conns' }], 'back at the static 10: the effect is gone');
  t.equal(a.overrides('default|mx.test'), undefined);
  t.equal(a.nextWake(), undefined);
});

t.test('a limit that was unlimited is lifted once it recovers past twice the level it was cut from', async (t) => {
  const a = engine(`
adaptive:
  - { id: r, match: slow, action: { lower: { max_message_rate: "-50%" } }, duration: 1h, recover: { every: 1m, step: 100% } }
`);
  for (let i = 1; i <= 60; i++) a.observe(ctx(), delivered, levels(), i * 1000);
  a.observe(ctx(), reply(451, 'slow down'), levels(1), 60_000);
  t.equal(limit(a, 'max_message_rate'), 0.5, 'one a second accepted: half that');
  busy(a, 61_000, 'max_message_rate');
  a.tick(120_000);
  t.equal(limit(a, 'max_message_rate'), 1);
  busy(a, 121_000, 'max_message_rate');
  t.match(a.tick(180_000), [{ change: 'recovered' }], '2/s reached: unlimited again');
});

t.test('a lowered limit that nothing reached does not rise: it proves nothing about the receiver', async (t) => {
  const a = engine(CONNS);
  a.observe(ctx(), reply(421, 'too many connections'), levels(2), 0);
  a.observe(ctx(), delivered, levels(), 1_000);
  t.same(a.tick(60_000), [], 'successes, but never more connections wanted than allowed');
  t.equal(limit(a, 'max_connections'), 2);
  a.pressed('default|mx.test', 'max_message_rate');
  a.observe(ctx(), delivered, levels(), 61_000);
  t.same(a.tick(120_000), [], 'another limit held mail back: not this one');
  busy(a, 121_000);
  t.match(a.tick(180_000), [{ change: 'raise', limits: { max_connections: 3 } }]);
});

t.test('effects expire on their own', async (t) => {
  const a = engine(CONNS);
  a.observe(ctx(), reply(421, 'too many connections'), levels(2), 0);
  t.equal(a.nextWake(), 60_000);
  t.match(a.tick(600_000), [{ change: 'expired', rule: 'conns' }]);
  t.equal(a.overrides('default|mx.test'), undefined);
});

t.test('pause and fail hold the path with the reply that caused them; fail outranks pause', async (t) => {
  const a = engine(`
adaptive:
  - { id: stop, match: 'blocked', action: { pause: true }, duration: 1h }
  - { id: bin, match: 'gone for good', action: { fail: true }, duration: 10m }
  - { id: scoped, providers: [yahoo], match: 'blocked', action: { fail: true }, duration: 10m }
`);
  const [paused] = a.observe(ctx('gmail'), reply(554, 'IP blocked'), levels(1), 0);
  t.match(paused, { change: 'pause', until: 3_600_000 });
  t.match(a.overrides('default|mx.test')?.hold, { kind: 'pause', rule: 'stop', until: 3_600_000, reply: { code: 554, text: 'IP blocked' } });
  t.match(a.observe(ctx('gmail'), reply(554, 'IP blocked'), levels(1), 60_000), [{ change: 'extend', until: 3_660_000 }]);
  a.observe(ctx(), reply(554, 'gone for good'), levels(1), 61_000);
  t.match(a.overrides('default|mx.test')?.hold, { kind: 'fail', rule: 'bin' });
  t.same(a.effects('default|mx.test').map((e) => e.rule).sort(), ['bin', 'stop'], 'a rule scoped to another provider does not fire');
});

t.test('connection events trigger rules that name them; replies do not', async (t) => {
  const a = engine(`
adaptive:
  - { id: tarpit, event: [greeting-timeout], trigger: { count: 2, within: 5m }, action: { lower: { max_connections: observed } }, duration: 30m }
`);
  const stall: PathObservation = { kind: 'event', event: 'greeting-timeout', detail: 'no greeting in 5000 ms' };
  t.same(a.observe(ctx(), stall, levels(4), 0), []);
  t.same(a.observe(ctx(), reply(421, 'greeting-timeout'), levels(4), 1), []);
  t.match(a.observe(ctx(), stall, levels(4), 2), [{ change: 'lower', limits: { max_connections: 4 } }]);
  t.match(a.hour('default|mx.test', 3), { connection_failures: 2, deferred: 1, throttled: 2 });
});

t.test('a relative change never raises a limit, and never goes below one', async (t) => {
  const a = engine(CONNS);
  a.observe(ctx(undefined, { ...BASE, max_connections: 2 }), reply(421, 'too many connections'), levels(5), 0);
  t.equal(limit(a, 'max_connections'), 2);
  const b = engine(CONNS);
  b.observe(ctx(), reply(421, 'too many connections'), levels(0), 0);
  t.equal(limit(b, 'max_connections'), 1);
});

t.test('state saved and restored: live effects, trigger windows and counts survive; expired ones do not', async (t) => {
  const a = engine(`${CONNS}
  - { id: stop, match: blocked, action: { pause: true }, duration: 1m }
  - { id: twice, match: twice, trigger: { count: 2, within: 1h }, action: { pause: true }, duration: 1h }
`);
  a.observe(ctx(), reply(421, 'too many connections'), levels(3), 0);
  a.observe(ctx(), reply(554, 'blocked'), levels(3), 0);
  a.observe(ctx(), reply(451, 'twice'), levels(3), 0);
  a.observe(ctx(), delivered, levels(), 0);
  const saved = JSON.parse(JSON.stringify(a.serialize()));
  const b = engine(`${CONNS}
  - { id: twice, match: twice, trigger: { count: 2, within: 1h }, action: { pause: true }, duration: 1h }
`);
  t.equal(b.restore(saved, 120_000), 1, 'the one-minute pause has expired meanwhile');
  t.equal(b.overrides('default|mx.test')?.values.get('max_connections')?.value, 3);
  t.match(b.hour('default|mx.test', 120_000), { delivered: 1, deferred: 2, failed: 1 });
  t.match(b.observe(ctx(), reply(451, 'twice'), levels(3), 130_000), [{ change: 'pause', rule: 'twice' }], 'the first match before the restart counts');
  t.equal(b.restore({ version: 1, paths: { x: { effects: [{ rule: 1 }, null], matches: {}, hour: 'junk' } } } as never, 0), 0, 'malformed entries are skipped');
});

t.test('a lowered rate still refused with nothing accepted since is probed, one message every five seconds, until one gets through', async (t) => {
  const a = engine(`
adaptive:
  - { id: tss04, match: '\\[tss04\\]', action: { lower: { max_message_rate: "-10%" } }, duration: 2h }
`);
  for (let i = 1; i <= 600; i++) a.observe(ctx(), delivered, levels(), i * 100);
  const throttled = reply(451, '4.7.0 [TSS04] deferred', '4.7.0');
  a.observe(ctx(), throttled, levels(3), 60_000);
  const lowered = limit(a, 'max_message_rate') ?? 0;
  t.ok(lowered > 8.5 && lowered <= 9, `the receiver took about 600 in the last minute: ${lowered} a second`);
  const version = a.version('default|mx.test');
  a.observe(ctx(), throttled, levels(3), 61_000);
  a.observe(ctx(), throttled, levels(3), 62_000);
  t.equal(limit(a, 'max_message_rate'), lowered, 'two refusals: still the lowered rate');
  a.observe(ctx(), throttled, levels(3), 63_000);
  t.equal(limit(a, 'max_message_rate'), 0.2, 'three, and nothing accepted: its window is still full; probe it');
  t.ok(a.version('default|mx.test') > version, 'paths re-read their settings');
  a.observe(ctx(), delivered, levels(), 70_000);
  t.equal(limit(a, 'max_message_rate'), lowered, 'one accepted: back to the lowered rate');
  a.observe(ctx(), throttled, levels(3), 71_000);
  a.observe(ctx(), throttled, levels(3), 72_000);
  a.observe(ctx(), throttled, levels(3), 73_000);
  t.equal(limit(a, 'max_message_rate'), lowered, 'refusals once something was accepted are the receiver at its limit, not a full window');
});

t.test('in a fleet, a relative cut is taken from the fleet\'s level, not this node\'s', async (t) => {
  const a = engine(`
adaptive:
  - { id: busy, match: busy, action: { lower: { max_connections: "-50%" } }, duration: 5m }
`);
  // This node holds 2 of the path's 6 connections fleet-wide: halving means 3 for the fleet.
  const fleet: PathContext = { ...ctx(), scale: () => 3 };
  const [change] = a.observe(fleet, reply(421, 'busy'), levels(2), 0);
  t.match(change, { change: 'lower', limits: { max_connections: 3 } });
  const b = engine(`
adaptive:
  - { id: busy, match: busy, action: { lower: { max_connections: "-50%" } }, duration: 5m }
`);
  t.match(b.observe(ctx(), reply(421, 'busy'), levels(2), 0)[0], { limits: { max_connections: 1 } }, 'alone, half of its own 2');
});

t.test('an effect another node made is adopted: lower values win, the later end wins, it recovers here', async (t) => {
  const a = engine(CONNS);
  const b = engine(CONNS);
  a.observe(ctx(), reply(421, 'too many connections'), levels(3), 0);
  const shared = a.shared('default|mx.test', 'conns');
  t.match(shared, { rule: 'conns', kind: 'lower', values: { max_connections: 3 }, until: 600_000 });
  if (!shared) return;
  const adopted = b.adopt('default|mx.test', shared, () => BASE, 1_000);
  t.match(adopted, { change: 'adopted', rule: 'conns', action: 'lower', limits: { max_connections: 3 }, until: 600_000 });
  t.equal(limit(b, 'max_connections'), 3, 'the other node now holds the same lowered limit');
  t.equal(b.adopt('default|mx.test', shared, () => BASE, 2_000), undefined, 'the same entry again changes nothing');
  t.equal(b.adopt('default|mx.test', { ...shared, values: { max_connections: 5 } }, () => BASE, 3_000), undefined, 'a higher value is not taken');
  t.match(b.adopt('default|mx.test', { ...shared, values: { max_connections: 2 }, until: 900_000 }, () => BASE, 4_000), { limits: { max_connections: 2 }, until: 900_000 });
  t.equal(b.adopt('default|mx.test', { ...shared, rule: 'not-here' }, () => BASE, 5_000), undefined, 'a rule this node lacks is not taken');
  t.equal(b.adopt('default|mx.test', { ...shared, until: 1 }, () => BASE, 5_000), undefined, 'nor a lapsed one');
  // Recovery is each node's own: a step up a minute after the adoption, on its own successes.
  t.same(b.tick(64_000), [], 'no success here yet: no rise');
  busy(b, 65_000);
  t.match(b.tick(124_000), [{ change: 'raise', rule: 'conns', limits: { max_connections: 3 } }], '+10 %, at least one');
});
