import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { createShaper, parseShapingRules, type Change, type RuleSet } from '../../../src/shaping/index.ts';
import type { SiteName } from '../../../src/model/ids.ts';
import type { PathSettings } from '../../../src/model/path.ts';
import { FakeClock } from '../../support/fake-clock.ts';
import { tempDir } from '../../support/daemon.ts';

const BASE: PathSettings = {
  max_connections: 10, max_messages_per_connection: 100, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'opportunistic',
};
const RULES = `
providers:
  - { name: big, mx: [big.test], max_connections: 4 }
adaptive:
  - { id: conns, match: too many connections, action: { lower: { max_connections: observed } }, duration: 10m, recover: { every: 1m, step: 10% } }
  - { id: stop, match: blocked, action: { pause: true }, duration: 2m }
`;
const SITE = 'mx.big.test' as SiteName;

function rules(text = RULES): RuleSet {
  const loaded = parseShapingRules(text, { reasons: [] });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.rules;
}

function setup(t: { teardown(fn: () => unknown): void }, dir: string, clock = new FakeClock(0)) {
  const lines: Record<string, unknown>[] = [];
  const changes: Change[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const shaper = createShaper({ base: BASE, rules: rules(), stateDir: dir }, { clock, log, classify: () => ({ reason: 'onhold' }), onChange: (c) => changes.push(c) });
  t.teardown(() => shaper.stop());
  return { shaper, clock, lines, changes };
}

const refusal = { kind: 'reply' as const, recipients: 1, reply: { code: 421, text: 'Too many connections', origin: 'remote' as const } };

t.test('a path has its provider settings, then an adaptive override that names its rule, in settings and views', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const { shaper, lines, changes } = setup(t, dir.path);
  await shaper.start();
  const path = shaper.path(SITE, ['mx.big.test'], 'a.test');
  t.equal(shaper.path(SITE, ['mx.big.test'], 'b.test'), path, 'domains of one site share one path');
  t.equal(path.settings().max_connections, 4);
  t.same(shaper.acquire([{ path: path.key, kind: 'connection', count: 9 }]), [{ granted: 4 }], 'the limiter holds the path to its settings');
  shaper.observe(path, refusal, { connections: 2, sentOnConnection: 0 });
  t.equal(path.settings().max_connections, 2);
  t.match(changes, [{ change: 'lower', rule: 'conns', path: 'default|mx.big.test' }]);
  t.match(lines.find((l) => l.event === 'shaping'), { change: 'lower', rule: 'conns', site: 'mx.big.test', provider: 'big', limits: { max_connections: 2 } }, 'one log line per change');
  const [view] = shaper.views();
  t.match(view, {
    path: 'default|mx.big.test', site: 'mx.big.test', provider: 'big', domain: null, connections: 4,
    limits: { max_connections: { value: 2, rule: 'adaptive:conns' }, max_messages_per_connection: { value: 100, rule: 'defaults' }, max_message_rate: { value: 'unlimited' } },
    adaptive: [{ rule: 'conns', action: 'lower', limits: { max_connections: 2 }, remaining_s: 600 }],
    paused: null, last_hour: { deferred: 1, throttled: 1 },
  });
});

t.test('a pause holds the path until it expires, by the clock', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const { shaper, clock, changes } = setup(t, dir.path);
  await shaper.start();
  const path = shaper.path(SITE, ['mx.big.test'], 'a.test');
  shaper.observe(path, { kind: 'reply', recipients: 1, reply: { code: 554, text: 'IP blocked', origin: 'remote' } }, { connections: 1, sentOnConnection: 0 });
  t.match(path.hold(), { kind: 'pause', rule: 'stop', until: 120_000 });
  t.same([...shaper.holds()], [['big', 1]]);
  t.match(shaper.views()[0], { paused: { rule: 'stop', remaining_s: 120, reply: '554 IP blocked' } });
  await clock.advance(120_000);
  t.equal(path.hold(), undefined);
  t.match(changes.at(-1), { change: 'expired', rule: 'stop' });
});

t.test('adaptive state survives a restart; an unreadable state file is reported, not fatal', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const first = setup(t, dir.path);
  await first.shaper.start();
  first.shaper.observe(first.shaper.path(SITE, ['mx.big.test'], 'a.test'), refusal, { connections: 3, sentOnConnection: 0 });
  await first.shaper.stop();
  t.match(JSON.parse(readFileSync(join(dir.path, 'adaptive.json'), 'utf8')), { version: 1, paths: { 'default|mx.big.test': { effects: [{ rule: 'conns' }] } } });

  const second = setup(t, dir.path, new FakeClock(60_000));
  await second.shaper.start();
  t.equal(second.shaper.path(SITE, ['mx.big.test'], 'a.test').settings().max_connections, 3, 'the override is back');
  t.match(second.lines.find((l) => /restored/.test(String(l.msg))), { effects: 1 });

  const broken = tempDir();
  t.teardown(broken.remove);
  mkdirSync(broken.path, { recursive: true });
  writeFileSync(join(broken.path, 'adaptive.json'), '{"version":1,"paths":');
  const third = setup(t, broken.path);
  await third.shaper.start();
  t.match(third.lines.find((l) => l.level === 40), { msg: /unreadable/ });
});

t.test('new rules apply at the next question, without a restart', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const { shaper } = setup(t, dir.path);
  await shaper.start();
  const before = shaper.path(SITE, ['mx.big.test'], 'a.test');
  t.equal(before.settings().max_connections, 4);
  shaper.setRules(rules('providers:\n  - { name: big, mx: [big.test], max_connections: 7 }\ndomains:\n  - { domain: a.test, max_connections: 1 }\n'));
  t.equal(before.settings().max_connections, 7, 'a handle in use sees the new value');
  const carved = shaper.path(SITE, ['mx.big.test'], 'a.test');
  t.equal(carved.key, 'default|mx.big.test|a.test', 'a new domain rule carves the domain out');
  t.equal(carved.settings().max_connections, 1);
});
