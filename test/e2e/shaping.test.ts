import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import type { Sink } from '../support/sink.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

/**
 * MX rules against receivers with scripted patience (test/support/sink.ts), one site each. The
 * operator rules file below replaces Tern's shipped rules of the same ids with faster recovery,
 * so each scenario fits in seconds; the shipped values are exercised by `npm run bench:shaping`.
 */
const SITES: Record<string, string> = {
  'conc.test': '127.0.0.6', // 421 above 2 sessions
  'perconn.test': '127.0.0.7', // 421 at MAIL after 3 messages on a connection
  'tarpit.test': '127.0.0.8', // no greeting above 2 sessions
  'drop.test': '127.0.0.10', // hangs up without a word after 3 messages
  'paused.test': '127.0.0.11', // a provider whose rejection pauses its path
  'failing.test': '127.0.0.12', // a provider whose rejection fails its path's mail
  'ratelimited.test': '127.0.0.13', // a domain rule: 2 messages a second, one connection
};

const RULES = `
providers:
  - { name: pausable, mx: [mx.paused.test] }
  - { name: failing, mx: [mx.failing.test] }
domains:
  - { domain: ratelimited.test, max_message_rate: 2/s, max_connections: 1 }
  - { domain: split.test, max_recipients_per_message: 2 }
adaptive:
  - { id: too-many-connections, match: 'too many connections', action: { lower: { max_connections: observed } }, duration: 1m, recover: { every: 2s, step: 50% } }
  - { id: too-many-messages-per-connection, match: 'max message per connection', action: { lower: { max_messages_per_connection: observed } }, duration: 1m, recover: { every: 1m } }
  - { id: greeting-timeouts, event: [greeting-timeout], trigger: { count: 2, within: 1m }, action: { lower: { max_connections: observed } }, duration: 1m, recover: { every: 1m } }
  - { id: dropped-connections, event: [dropped], trigger: { count: 2, within: 1m }, action: { lower: { max_messages_per_connection: observed } }, duration: 1m, recover: { every: 1m } }
  - { id: test-pause, providers: [pausable], match: 'rejected as spam', action: { pause: true }, duration: 1h }
  - { id: test-fail, providers: [failing], match: 'rejected as spam', action: { fail: true }, duration: 1h }
`;

let world: World;
let tern: RunningTern;
const spool = tempDir();
const rulesFile = join(spool.path, 'shaping.yaml');
let raw: Record<string, unknown>;

t.before(async () => {
  const zone = { ...STANDARD_ZONE };
  for (const [domain, ip] of Object.entries(SITES)) {
    zone[domain] = { mx: [{ exchange: `mx.${domain}`, priority: 10 }] };
    zone[`mx.${domain}`] = { a: [ip] };
  }
  zone['split.test'] = { mx: [{ exchange: 'mx1.a.test', priority: 10 }] }; // a.test's site, carved out by its rule
  world = await startWorld(zone, ['127.0.0.2'], Object.values(SITES));
  await world.addSink(SITES['conc.test']!, { patience: { maxSessions: 2, dataDelayMs: 50 } });
  await world.addSink(SITES['perconn.test']!, { patience: { messagesPerConnection: 3 } });
  await world.addSink(SITES['tarpit.test']!, { patience: { stallAbove: 2, dataDelayMs: 50 } });
  await world.addSink(SITES['drop.test']!, { patience: { dropAfter: 3 } });
  for (const domain of ['paused.test', 'failing.test', 'ratelimited.test']) await world.addSink(SITES[domain]!);
  writeFileSync(rulesFile, RULES);
  raw = testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(spool.path, 'spool'),
    shaping: { rules_file: rulesFile },
    delivery: { max_active: 30, retry: { base: '300ms', max: '2s', jitter: 0 } },
  });
  tern = await startTern(raw);
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
});

const sink = (domain: string): Sink => world.sinks.get(SITES[domain] ?? '127.0.0.2')!;

/** Send `n` one-recipient messages to `user<k>@domain`, five sessions at a time; the recipients. */
async function inject(domain: string, n: number, prefix = 'user'): Promise<string[]> {
  const rcpts = Array.from({ length: n }, (_, i) => `${prefix}${i}@${domain}`);
  let next = 0;
  await Promise.all(Array.from({ length: 5 }, async () => {
    while (next < rcpts.length) {
      const to = rcpts[next++]!;
      const reply = await sendMail(tern.smtpPort, 'news@campaign.test', [to], message({ to }));
      if (!reply.startsWith('250')) throw new Error(`injection refused: ${reply}`);
    }
  }));
  return rcpts;
}

const finals = (rcpts: readonly string[]) => rcpts.map((r) => tern.outcomes(r).find((l) => l.event !== 'retry'));
const allDelivered = (rcpts: readonly string[], ms = 30_000) =>
  until(() => finals(rcpts).every((f) => f?.event === 'delivered'), ms, `${rcpts.length} deliveries to ${rcpts[0]?.split('@')[1]}`);
const countedRetries = (rcpts: readonly string[]) => rcpts.flatMap((r) => tern.outcomes(r).filter((l) => l.event === 'retry' && l.held === undefined && Number(l.attempt) > 0));

async function siteView(site: string): Promise<any> {
  const res = await adminFetch(tern.adminPort, `/api/v1/sites/${encodeURIComponent(site)}`);
  return res.json();
}

t.test('a receiver that refuses sessions above its limit: Tern learns the limit, stops being refused, and goes back up when it relents', async (t) => {
  const s = sink('conc.test');
  const first = await inject('conc.test', 40);
  await allDelivered(first);
  t.ok(s.stats.refused >= 1, `refused at first (${s.stats.refused} times)`);
  const view = await siteView('mx.conc.test');
  t.match(view.paths[0].limits.max_connections, { value: /^[12]$/, rule: 'adaptive:too-many-connections' }, 'the limit it learnt, and from which rule');

  const refusedBefore = s.stats.refused;
  const second = await inject('conc.test', 40, 'again');
  await allDelivered(second);
  const refusedAfter = s.stats.refused - refusedBefore;
  t.ok(refusedAfter <= 4, `converged: ${refusedAfter} refusals for 40 deliveries (recovery probes one connection more every 2 s)`);
  t.same(finals([...first, ...second]).filter((f) => f?.event !== 'delivered'), [], 'nothing lost');

  s.patience.maxSessions = undefined;
  s.stats.peakSessions = s.stats.sessions;
  const third = await inject('conc.test', 60, 'relented');
  await allDelivered(third);
  await until(async () => {
    const more = await inject('conc.test', 20, `more${Date.now()}`);
    await allDelivered(more);
    return s.stats.peakSessions >= 4;
  }, 30_000, 'more connections once the receiver relents');
  t.pass(`back to ${s.stats.peakSessions} sessions at once`);
});

t.test('a receiver that ends a connection after K messages with a 421: Tern sends K per connection from then on', async (t) => {
  const s = sink('perconn.test');
  const first = await inject('perconn.test', 30);
  await allDelivered(first);
  const cutBefore = s.stats.cutOff;
  t.ok(cutBefore >= 1, `cut off at first (${cutBefore} times)`);
  t.match((await siteView('mx.perconn.test')).paths[0].limits.max_messages_per_connection, { value: 3, rule: 'adaptive:too-many-messages-per-connection' });
  const second = await inject('perconn.test', 30, 'again');
  await allDelivered(second);
  t.equal(s.stats.cutOff, cutBefore, 'no more 421s once learnt');
});

t.test('a receiver that hangs up without a word after K messages: nothing is charged an attempt, and Tern learns K', async (t) => {
  const first = await inject('drop.test', 30);
  await allDelivered(first);
  t.same(countedRetries(first), [], 'a job lost to the hang-up went again on another connection, uncounted');
  t.match((await siteView('mx.drop.test')).paths[0].limits.max_messages_per_connection, { value: 3, rule: 'adaptive:dropped-connections' });
});

t.test('a receiver that never greets sessions above its limit (a tarpit): Tern stays at the sessions it greets', async (t) => {
  const s = sink('tarpit.test');
  const first = await inject('tarpit.test', 30);
  await allDelivered(first);
  t.ok(s.stats.stalled >= 2, `stalled at first (${s.stats.stalled} sessions)`);
  t.same(countedRetries(first), [], 'jobs of a stalled connection waited for a working one, uncounted');
  t.match((await siteView('mx.tarpit.test')).paths[0].limits.max_connections, { value: 2, rule: 'adaptive:greeting-timeouts' });
  const stalledBefore = s.stats.stalled;
  const second = await inject('tarpit.test', 30, 'again');
  await allDelivered(second);
  t.equal(s.stats.stalled, stalledBefore, 'no more stalled sessions');
});

t.test('a paused path holds its mail without attempts, and costs nothing until the pause ends', async (t) => {
  const s = sink('paused.test');
  await sendMail(tern.smtpPort, 'news@campaign.test', ['reject-data@paused.test'], message());
  await until(() => tern.outcomes('reject-data@paused.test').find((l) => l.event === 'failed'), 10_000, 'the rejection');
  await until(() => tern.logs.find((l) => l.event === 'shaping' && l.change === 'pause'), 5_000, 'the pause');
  const held = await inject('paused.test', 5);
  const lines = await until(() => held.every((r) => tern.outcomes(r).length > 0) && held.flatMap((r) => tern.outcomes(r)), 10_000, 'held mail');
  t.ok(lines.every((l) => l.event === 'retry' && l.held === 'paused' && l.attempt === 0), 'held, not attempted');
  t.ok(lines.every((l) => Date.parse(String(l.next_attempt)) > Date.now() + 3_000_000), 'until the pause ends, an hour on');
  t.equal(s.received.length, 0, 'the receiver saw none of it');
  // The log line comes as the verdict is made; the queue counts the recipient once it is journalled.
  const view = await until(async () => { const v = await siteView('mx.paused.test'); return v.queued_recipients === 5 && v; }, 5_000, 'five queued for the paused path');
  t.match(view, { site: 'mx.paused.test', provider: 'pausable', paths: [{ paused: { rule: 'test-pause', reply: /^554 5\.7\.1 Message rejected as spam/ } }] });
  t.ok(view.paths[0].paused.remaining_s > 3500);
  await new Promise((r) => setTimeout(r, 1_000));
  t.equal(held.flatMap((r) => tern.outcomes(r)).length, 5, 'no activity while it waits: one line each, still');
});

t.test('a rule that fails a path fails its mail with cause "adaptive", without sending it', async (t) => {
  const s = sink('failing.test');
  await sendMail(tern.smtpPort, 'news@campaign.test', ['reject-data@failing.test'], message());
  await until(() => tern.logs.find((l) => l.event === 'shaping' && l.change === 'fail'), 10_000, 'the rule firing');
  const doomed = await inject('failing.test', 3);
  const lines = await until(() => finals(doomed).every(Boolean) && finals(doomed), 10_000);
  for (const l of lines) t.match(l, { event: 'failed', cause: 'adaptive', reply: /^554 5\.7\.1 Message rejected as spam/, attempt: 0 });
  t.equal(s.received.length, 0);
});

t.test('one slow path never holds back the others', async (t) => {
  // ratelimited.test: 2 messages a second on one connection, 20 ready at most (10 seconds' worth);
  // the active window is 30 messages, so the rest of its mail waits in the queue, not in the way.
  const slow = await inject('ratelimited.test', 40);
  const started = Date.now();
  const fast = await inject('a.test', 20, 'fast');
  await allDelivered(fast, 10_000);
  const fastTook = Date.now() - started;
  const slowDone = finals(slow).filter((f) => f?.event === 'delivered').length;
  t.ok(slowDone < 30, `the fast site's 20 went in ${fastTook} ms while the slow one had delivered ${slowDone} of 40`);
  t.ok(tern.logs.some((l) => l.held === 'ready-queue-full' && String(l.recipient).endsWith('@ratelimited.test')), 'the slow path held the rest back in the queue');
  await allDelivered(slow, 60_000);
  const times = sink('ratelimited.test').stats.acceptedAt;
  const window = (times.at(-1)! - times[0]!) / 1000;
  t.ok(40 / window <= 2.6, `the slow path kept to its rate: ${(40 / window).toFixed(2)} messages a second`);
  // The mail it held comes when its ready queue runs low, not when the pace of the moment said.
  const gaps = times.slice(1).map((at, i) => at - times[i]!);
  t.ok(Math.max(...gaps) < 2_000, `and never ran dry while mail waited: the longest gap ${Math.max(...gaps)} ms at 2 a second`);
  t.same(countedRetries(slow), [], 'waiting in the queue used up no attempt');
});

t.test('a domain taking two recipients a message gets five as three transactions, each recipient delivered once', async (t) => {
  const rcpts = ['s1@split.test', 's2@split.test', 's3@split.test', 's4@split.test', 's5@split.test'];
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', rcpts, message({ to: rcpts[0] })), /^250 /);
  await allDelivered(rcpts);
  const got = sink('a.test').received.filter((m) => m.rcptTo.some((r) => r.endsWith('@split.test')));
  t.same(got.map((m) => m.rcptTo.length).sort(), [1, 2, 2]);
  t.same(got.flatMap((m) => m.rcptTo).sort(), rcpts);
  t.match((await siteView('mx1.a.test')).paths.find((p: { domain: string | null }) => p.domain === 'split.test'),
    { path: 'default|mx1.a.test|split.test', limits: { max_recipients_per_message: { value: 2, rule: 'domain:split.test' } } });
});

t.test('SIGHUP reloads the MX rules; a broken file keeps the rules in force', async (t) => {
  await allDelivered(await inject('a.test', 2, 'before-reload'));
  writeFileSync(rulesFile, `${RULES}sites:\n  - { site: mx1.a.test, max_connections: 3 }\n`);
  t.same(tern.daemon.reload(), { ok: true, problems: [], applied: [], restart: [] });
  t.match((await siteView('mx1.a.test')).paths[0].limits.max_connections, { value: 3, rule: 'site:mx1.a.test' });
  await allDelivered(await inject('a.test', 5, 'after-reload'));
  writeFileSync(rulesFile, 'adaptive:\n  - { id: bad, match: "(", action: { pause: true }, duration: 1h }\n');
  const broken = tern.daemon.reload();
  t.equal(broken.ok, false);
  t.match(broken.problems, [/shaping\.rules_file: adaptive\[0\]\.match: invalid regular expression/]);
  t.match((await siteView('mx1.a.test')).paths[0].limits.max_connections, { value: 3 }, 'the rules in force stay');
  writeFileSync(rulesFile, RULES);
  t.ok(tern.daemon.reload().ok);
});

t.test('metrics: adaptive actions by rule, paused paths and deferrals by provider and reason, clean under promtool', async (t) => {
  const body = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  const value = (series: string) => Number(body.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1]);
  t.ok(value('tern_shaping_actions_total{rule="too-many-connections",action="lower"}') >= 1);
  t.ok(value('tern_shaping_actions_total{rule="test-pause",action="pause"}') >= 1);
  t.equal(value('tern_shaping_paused_paths{provider="pausable"}'), 1);
  t.equal(value('tern_shaping_paused_paths{provider="failing"}'), 1, 'a failing path is held too');
  t.ok(value('tern_deferrals_total{provider="pausable",reason="paused"}') >= 5);
  t.ok(value('tern_deferrals_total{provider="other",reason="ready-queue-full"}') >= 1);
  t.notMatch(body, /provider="(?!pausable|failing|other|unknown|gmail|outlook|office365|yahoo|apple|orange|gmx-webde|mailru|yandex|comcast|free")/, 'providers are from the rules, or "other" (or "unknown": not attempted yet): bounded');
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
  if (promtool.error) t.comment('promtool is not installed (apt-get install prometheus): not checked');
  else t.equal(promtool.status, 0, `promtool: ${promtool.stdout}${promtool.stderr}`);
});

t.test('the sites API: every known site with its paths; an unknown site is a 404 that says what a site is', async (t) => {
  const all = await (await adminFetch(tern.adminPort, '/api/v1/sites')).json() as { sites: { site: string; paths: { path: string; limits: Record<string, { value: unknown; rule: string }> }[] }[] };
  const carved = all.sites.find((s) => s.site === 'mx.ratelimited.test');
  t.match(carved?.paths[0], { path: 'default|mx.ratelimited.test|ratelimited.test', domain: 'ratelimited.test', limits: { max_message_rate: { value: '2/s', rule: 'domain:ratelimited.test' }, max_connections: { value: 1, rule: 'domain:ratelimited.test' }, tls: { value: 'may', rule: 'defaults' } } });
  const missing = await adminFetch(tern.adminPort, '/api/v1/sites/mx.nowhere.test');
  t.equal(missing.status, 404);
  t.match(await missing.json(), { error: /no path to site "mx\.nowhere\.test" is known/ });
});

t.test('tern check-config names the place of each problem in the MX rules file', async (t) => {
  const bad = join(spool.path, 'bad-shaping.yaml');
  writeFileSync(bad, 'providers:\n  - { name: x, mx: [x.test], max_connections: 0 }\nadaptive:\n  - { id: r, match: "(", action: { lower: { max_connections: "+5%" } }, duration: 1h }\n');
  const config = join(spool.path, 'check.yaml');
  writeFileSync(config, `shaping: { rules_file: ${bad} }\n`);
  const run = spawnSync(process.execPath, [new URL('../../bin/tern.js', import.meta.url).pathname, 'check-config', '--config', config], { encoding: 'utf8' });
  t.equal(run.status, 1);
  t.match(run.stderr, /shaping\.rules_file: providers\[0\]\.max_connections: /);
  t.match(run.stderr, /shaping\.rules_file: adaptive\[0\]\.match: invalid regular expression \(rule "r"\)/);
  t.match(run.stderr, /shaping\.rules_file: adaptive\[0\]\.action\.lower\.max_connections: "\+5%" must lower the limit/);
});

t.test('adaptive state survives a restart: a paused path stays paused, its mail still waits for it', async (t) => {
  await tern.stop();
  tern = await startTern(raw);
  const view = await siteView('mx.paused.test');
  t.match(view, { provider: 'pausable', queued_recipients: 5, paths: [{ paused: { rule: 'test-pause' } }] });
  t.match((await siteView('mx.conc.test')).paths[0].last_hour, { delivered: sink('conc.test').received.length }, 'and what each path did in the last hour');
  t.equal(sink('paused.test').received.length, 0);
});
