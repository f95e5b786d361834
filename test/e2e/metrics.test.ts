/**
 * The metrics an SRE alerts on (docs/metrics.md), read from a live scrape of the real daemon: each
 * one moves with what it measures. Then the documentation, the alert rules and the Grafana
 * dashboard are held to the scrape: every metric documented exists and every one that exists is
 * documented; every metric an alert or a panel queries exists; promtool accepts the rules and
 * their unit tests pass.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { makeKeys } from '../support/dkim.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { startWorld, type World } from '../support/world.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
let world: World;
let tern: RunningTern;
const spool = tempDir();
const keyDir = tempDir('tern-keys-');
const keys = makeKeys(keyDir.path);
const webhook = new WebhookReceiver('metrics-secret');
// The webhook refuses until a test lets it acknowledge, so events wait in the outbox.
let webhookUp = false;
webhook.answer = () => ({ status: webhookUp ? 200 : 503 });

t.before(async () => {
  world = await startWorld();
  const rules = join(keyDir.path, 'rules.yaml');
  writeFileSync(rules, 'providers:\n  - { name: testmail, mx: [a.test] }\n');
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
    dkim: { keys: keys.entries },
    shaping: { rules_file: rules },
    feedback: { webhook: { url: await webhook.start(), secret: 'metrics-secret', max_wait: '20ms', timeout: '1s', backoff_max: '200ms' } },
  }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  await webhook.stop();
  spool.remove();
  keyDir.remove();
});

const hasPromtool = spawnSync('promtool', ['--version']).error === undefined;
const scrape = async (): Promise<string> => (await adminFetch(tern.adminPort, '/metrics')).text();

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Metric names a scrape declares (`# TYPE name kind`). */
const declared = (text: string): Set<string> => new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));

t.test('queue age, attempt durations, DNS, DKIM, the spool and the outbox move with the traffic', async (t) => {
  // Delivered now; retried for ever on a configured provider's path; never routed (SERVFAIL).
  // (Two messages: a message waits on one path, and this one's recipients would take two.)
  await sendMail(tern.smtpPort, 'news@example.com', ['m1@a.test', 'tempfail-1000@a.test', 'user-unknown@a.test'], message({ from: 'news@example.com' }));
  await sendMail(tern.smtpPort, 'news@example.com', ['m2@servfail.test'], message({ from: 'news@example.com' }));
  const body = await until(async () => {
    const text = await scrape();
    return (sample(text, 'tern_delivery_attempts_total{verdict="delivered"}') ?? 0) >= 1
      && (sample(text, 'tern_provider_queue_recipients{provider="testmail"}') ?? 0) === 1
      && (sample(text, 'tern_queue_oldest_message_age_seconds') ?? 0) > 0
      && (sample(text, 'tern_feedback_oldest_pending_age_seconds') ?? 0) > 0
      && text;
  }, 10_000, 'the scrape to show the traffic').catch(async (err: unknown) => {
    t.comment((await scrape()).split('\n').filter((l) => l.startsWith('tern_') && !l.startsWith('tern_process_')).join('\n'));
    throw err;
  });
  t.ok((sample(body, 'tern_delivery_attempt_duration_seconds_count{provider="testmail"}') ?? 0) >= 1, 'attempts on the provider\'s path are timed');
  t.equal(sample(body, 'tern_provider_queue_recipients{provider="unknown"}'), 1, 'the SERVFAIL recipient has no path yet');
  t.equal(sample(body, 'tern_failures_total{provider="testmail",cause="bounce",reason="userunknown"}'), 1, 'the hard bounce, by provider, cause and reason');
  t.ok((sample(body, 'tern_dns_lookups_total{type="MX",result="answer"}') ?? 0) >= 1, 'MX lookups answered');
  t.ok((sample(body, 'tern_dns_lookups_total{type="MX",result="temporary"}') ?? 0) >= 1, 'the SERVFAIL is counted as temporary');
  t.equal(sample(body, 'tern_dkim_sign_duration_seconds_count{algorithm="rsa-sha256"}'), 2, 'an RSA signature per message');
  t.equal(sample(body, 'tern_dkim_sign_duration_seconds_count{algorithm="ed25519-sha256"}'), 2, 'an Ed25519 signature per message');
  t.ok((sample(body, 'tern_spool_bytes') ?? 0) > 0, 'the waiting message takes spool space');
  t.ok((sample(body, 'tern_spool_free_bytes') ?? 0) > 0, 'free space is measured');
  t.ok((sample(body, 'tern_feedback_pending_events') ?? 0) >= 3, 'the webhook backlog');
  t.ok(sample(body, 'tern_event_loop_delay_seconds{thread="main",stat="p99"}') !== undefined, 'the event loop\'s delay');

  webhookUp = true;
  const drained = await until(async () => {
    const text = await scrape();
    return sample(text, 'tern_feedback_oldest_pending_age_seconds') === 0 && text;
  }, 10_000, 'the outbox to drain');
  t.equal(sample(drained, 'tern_feedback_pending_events'), 0, 'once the webhook acknowledges, nothing waits and the oldest pending event\'s age is 0');
});

t.test('ingress refusals are counted by code and logged, without a line per refusal', async (t) => {
  const { client } = await RawSmtp.open(tern.smtpPort);
  await client.command('EHLO client.test');
  for (let i = 0; i < 3; i++) t.match(await client.command('RCPT TO:<x@a.test>'), /^503 5\.5\.1/);
  t.match(await client.command('MAIL FROM:<bad address>'), /^5\d\d 5\.\d\.\d/);
  client.close();
  const body = await scrape();
  t.equal(sample(body, 'tern_ingress_refusals_total{code="503",enhanced="5.5.1"}'), 3);
  const lines = tern.logs.filter((l) => l.msg === 'smtp: refused' && l.code === 503);
  t.equal(lines.length, 1, 'the first of a kind is logged; the rest are counted until a minute has passed');
  t.match(lines[0], { remote_ip: '127.0.0.1', text: /^5\.5\.1 Error: need MAIL command/ });
});

t.test('with shards: an event-loop delay per thread, the oldest age taken over shards, and a clean scrape', async (t) => {
  const dir = tempDir();
  const sharded = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: dir.path, tuning: { threads: 2 } }));
  t.teardown(async () => {
    await sharded.stop();
    dir.remove();
  });
  await sendMail(sharded.smtpPort, 'news@example.com', ['m3@servfail.test'], message());
  const body = await until(async () => {
    const text = await (await adminFetch(sharded.adminPort, '/metrics')).text();
    return (sample(text, 'tern_queue_oldest_message_age_seconds') ?? 0) > 0 && (sample(text, 'tern_dns_lookups_total{type="MX",result="temporary"}') ?? 0) >= 1 && text;
  }, 10_000, 'the waiting message and its failed lookup to show');
  for (const thread of ['main', 'shard-0', 'shard-1']) t.ok(sample(body, `tern_event_loop_delay_seconds{thread="${thread}",stat="max"}`) !== undefined, `${thread} has its own series`);
  t.ok((sample(body, 'tern_dns_lookups_total{type="MX",result="temporary"}') ?? 0) >= 1, 'a shard\'s counter (its DNS lookup) reached the merged scrape');
  if (hasPromtool) {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    t.equal(`${check.stdout}${check.stderr}`.trim(), '', 'promtool check metrics finds nothing on the merged scrape');
  }
});

t.test('docs/metrics.md lists every metric a scrape declares, and nothing it does not', async (t) => {
  const names = [...declared(await scrape())].filter((n) => !n.startsWith('tern_process_'));
  const documented = new Set([...readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8').matchAll(/^\| `(tern_[a-z0-9_]+)`/gm)].map((m) => m[1] as string));
  t.same(names.filter((n) => !documented.has(n)), [], 'undocumented metrics');
  t.same([...documented].filter((n) => !names.includes(n)), [], 'documented metrics that do not exist');
});

/** Metric names an expression queries, histogram suffixes taken off. */
function queried(expr: string): string[] {
  return [...expr.matchAll(/\btern_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''));
}

t.test('every metric the alert rules and the Grafana dashboard query exists', async (t) => {
  const names = declared(await scrape());
  const alerts = readFileSync(join(ROOT, 'deploy/prometheus/tern-alerts.yml'), 'utf8');
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/tern-dashboard.json'), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  const exprs = [...alerts.matchAll(/expr: (.+)/g)].map((m) => m[1] as string);
  for (const panel of dashboard.panels) for (const target of panel.targets ?? []) exprs.push(target.expr);
  t.ok(exprs.length >= 20, `${exprs.length} expressions read`);
  const unknown = [...new Set(exprs.flatMap(queried))].filter((n) => !names.has(n));
  t.same(unknown, [], 'names that no scrape declares');
});

t.test('promtool accepts the alert rules, and their unit tests pass', { skip: hasPromtool ? false : 'promtool is not installed (apt-get install prometheus)' }, async (t) => {
  const dir = join(ROOT, 'deploy/prometheus');
  const check = spawnSync('promtool', ['check', 'rules', 'tern-alerts.yml'], { cwd: dir, encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  const test = spawnSync('promtool', ['test', 'rules', 'tern-alerts.test.yml'], { cwd: dir, encoding: 'utf8' });
  t.equal(test.status, 0, `promtool test rules: ${test.stdout}${test.stderr}`);
});

t.test('every query of the Grafana dashboard is valid PromQL', { skip: hasPromtool ? false : 'promtool is not installed (apt-get install prometheus)' }, async (t) => {
  // promtool parses PromQL in rule files: each panel's query becomes a recording rule, with
  // Grafana's variables given values as Grafana would.
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/tern-dashboard.json'), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => target.expr));
  const filled = exprs.map((e) => e.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$instance', '.*'));
  const dir = tempDir('tern-grafana-');
  t.teardown(() => dir.remove());
  const file = join(dir.path, 'panels.yml');
  writeFileSync(file, `groups:\n  - name: panels\n    rules:\n${filled.map((e, i) => `      - record: panel:${i}\n        expr: ${JSON.stringify(e)}\n`).join('')}`);
  const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  t.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  t.match(check.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
});
