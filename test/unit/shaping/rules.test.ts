import t from 'tap';
import { REASON_TABLE } from '../../../src/bounce/index.ts';
import { combineRules, defaultShapingRules, parseShapingRules, type RuleSet } from '../../../src/shaping/index.ts';
import { identify, layersOf } from '../../../src/shaping/paths.ts';
import { resolveLayers } from '../../../src/shaping/settings.ts';
import type { SiteName } from '../../../src/model/ids.ts';
import type { PathSettings } from '../../../src/model/path.ts';

const reasons = Object.keys(REASON_TABLE);
const BASE: PathSettings = {
  max_connections: 10, max_messages_per_connection: 100, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'opportunistic',
};

function parse(text: string): RuleSet {
  const loaded = parseShapingRules(text, { reasons });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.rules;
}

function problems(text: string): Record<string, string> {
  const loaded = parseShapingRules(text, { reasons });
  return loaded.ok ? {} : Object.fromEntries(loaded.problems.map((p) => [p.path, p.problem]));
}

t.test('the shipped rules load, and every entry says where its values come from', async (t) => {
  const rules = defaultShapingRules({ reasons });
  t.same(rules.providers.map((p) => p.name), ['gmail', 'outlook', 'office365', 'yahoo', 'apple', 'orange', 'gmx-webde', 'mailru', 'yandex', 'comcast', 'free'],
    'the big receivers the issue names');
  const text = (await import('node:fs')).readFileSync(new URL('../../../src/shaping/default-rules.yaml', import.meta.url), 'utf8');
  const entries = text.split(/\n  - (?:name|id): /).slice(1);
  t.equal(entries.length, rules.providers.length + rules.adaptive.length);
  for (const entry of entries) t.match(entry, /\n    (?:source|note): /, `${entry.split('\n')[0]} has a source or a note`);
});

t.test('most specific wins: defaults, then provider, then site, then domain; each value names its rule', async (t) => {
  const rules = parse(`
providers:
  - { name: big, mx: [big.example], max_connections: 5, max_messages_per_connection: 50, tls: required }
sites:
  - { site: "mx2.big.example,mx1.big.example", max_connections: 3 }
domains:
  - { domain: special.test, max_message_rate: 10/m }
`);
  const site = 'mx1.big.example,mx2.big.example' as SiteName;
  const hosts = ['mx1.big.example', 'mx2.big.example'];
  const plain = identify(rules, 'default', site, hosts, 'other.test');
  t.same(plain, { key: 'default|mx1.big.example,mx2.big.example', source: 'default', site, domain: undefined, provider: 'big' });
  const r = resolveLayers(BASE, layersOf(rules, plain));
  t.match(r.settings, { max_connections: 3, max_messages_per_connection: 50, tls: 'encrypt', max_message_rate: undefined, idle_timeout: 5_000 }, 'tls: required is read as its level, encrypt');
  t.match(r.from, { max_connections: `site:${site}`, max_messages_per_connection: 'provider:big', tls: 'provider:big', idle_timeout: 'defaults' });
  const carved = identify(rules, 'default', site, hosts, 'special.test');
  t.equal(carved.key, `default|${site}|special.test`, 'a domain with rules of its own gets a path of its own');
  const c = resolveLayers(BASE, layersOf(rules, carved));
  t.same(c.settings.max_message_rate, { count: 10, perMs: 60_000 });
  t.equal(c.from.max_message_rate, 'domain:special.test');
  t.equal(c.settings.max_connections, 3, 'and keeps what its site and provider say');
});

t.test('a provider matches a site only when every MX host has one of its suffixes', async (t) => {
  const rules = parse('providers:\n  - { name: g, mx: [google.com, .googlemail.com] }\n');
  const id = (hosts: string[]) => identify(rules, 'default', hosts.join(',') as SiteName, hosts, 'd.test').provider;
  t.equal(id(['aspmx.l.google.com', 'alt1.aspmx.googlemail.com']), 'g');
  t.equal(id(['google.com']), 'g', 'the suffix itself');
  t.equal(id(['aspmx.l.google.com', 'backup.example.net']), undefined, 'a backup MX elsewhere: not the provider');
  t.equal(id(['notgoogle.com']), undefined, 'suffixes match at a label boundary');
});

t.test('the operator file replaces shipped providers and rules by name, and can switch shipped rules off', async (t) => {
  const shipped = parse(`
providers:
  - { name: gmail, mx: [google.com], max_connections: 5 }
  - { name: yahoo, mx: [yahoodns.net] }
adaptive:
  - { id: a, match: "x", action: { pause: true }, duration: 1h }
  - { id: b, match: "y", action: { pause: true }, duration: 1h }
`);
  const operator = parse(`
providers:
  - { name: gmail, mx: [google.com], max_connections: 2 }
adaptive:
  - { id: mine, providers: [yahoo], match: "z", action: { fail: true }, duration: 10m }
  - { id: b, enabled: false, match: "y", action: { pause: true }, duration: 1h }
`);
  const combined = combineRules(operator, shipped);
  t.ok(combined.ok);
  if (!combined.ok) return;
  t.same(combined.rules.providers.map((p) => [p.name, p.settings.max_connections]), [['gmail', 2], ['yahoo', undefined]]);
  t.same(combined.rules.adaptive.map((r) => r.id), ['mine', 'a'], 'operator rules first; b switched off');
  const unknown = combineRules(parse('adaptive:\n  - { id: x, providers: [nope], match: "x", action: { pause: true }, duration: 1h }\n'), shipped);
  t.match(unknown, { ok: false, problems: [{ problem: /"nope" is not a provider/ }] });
});

t.test('adaptive rules compile: conditions, trigger, action, recovery', async (t) => {
  const rules = parse(`
adaptive:
  - id: slow
    code: [421, 45x]
    enhanced: ["4.7.*"]
    match: 'rate limited'
    reason: [speeding]
    trigger: { count: 3, within: 5m }
    action: { lower: { max_message_rate: "-20%", max_connections: 2, max_messages_per_connection: observed } }
    duration: 30m
    recover: { every: 2m, step: 25% }
  - { id: gone, event: [greeting-timeout], action: { pause: true }, duration: 1h }
`);
  const [slow, gone] = rules.adaptive;
  t.match(slow, { id: 'slow', codes: ['421', '45x'], enhanced: ['4.7.*'], reasons: ['speeding'], trigger: { count: 3, within: 300_000 }, duration: 1_800_000, recover: { every: 120_000, step: 0.25 } });
  t.same([...(slow?.action.kind === 'lower' ? slow.action.changes : [])], [
    ['max_connections', { kind: 'absolute', value: 2 }],
    ['max_messages_per_connection', { kind: 'relative', cut: 0 }],
    ['max_message_rate', { kind: 'relative', cut: 0.2 }],
  ]);
  t.match(gone, { events: ['greeting-timeout'], trigger: { count: 1 }, action: { kind: 'pause' }, recover: { every: 60_000, step: 0.1 } });
});

t.test('every problem in a rules file is reported with its place', async (t) => {
  t.match(problems(`
providers:
  - { name: Bad Name, mx: [] , max_message_rate: fast }
  - { name: ok, mx: [x.test], colour: blue }
sites:
  - { site: "a b", max_connections: 0 }
adaptive:
  - { id: r1, match: "(", action: { pause: true }, duration: 1h }
  - { id: r2, match: "x", action: { pause: true, fail: true }, duration: 1h }
  - { id: r3, match: "x", action: { lower: { max_connections: "+10%" } }, duration: 1h }
  - { id: r4, reason: [nonsense], action: { pause: true }, duration: 1h }
  - { id: r5, event: [greeting-timeout], match: x, action: { pause: true }, duration: 1h }
  - { id: r6, action: { pause: true }, duration: 1h }
  - { id: r7, match: x, action: { lower: { max_message_rate: 5 } }, duration: 0s }
  - { id: r1, match: x, action: { pause: true }, duration: 1h }
`), {
    'providers[0].name': /lower-case/,
    'providers[0].mx': /too small|at least/i,
    'providers[0].max_message_rate': /not a rate/,
    'providers[1].colour': /unknown key/,
    'sites[0].site': /site name/,
    'sites[0].max_connections': /too small|>=1/i,
    'adaptive[0].match': /invalid regular expression \(rule "r1"\)/,
    'adaptive[1].action': /exactly one of lower, pause, fail/,
    'adaptive[2].action.lower.max_connections': /must lower the limit/,
    'adaptive[3].reason': /"nonsense" is not a known bounce reason/,
    'adaptive[4].event': /use event alone/,
    'adaptive[5]': /needs at least one of/,
    'adaptive[6].duration': /longer than 0/,
    'adaptive[7].id': /duplicate id "r1"/,
  });
  t.match(problems('adaptive:\n  - { id: r7, match: x, action: { lower: { max_message_rate: 5 } }, duration: 1h }\n'), { 'adaptive[0].action.lower.max_message_rate': /not a rate/ });
  t.match(problems('providers: [\n'), { '(yaml)': /./ });
  t.match(problems('rules: []\n'), { rules: /unknown key/ });
});
