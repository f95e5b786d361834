import { spawnSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { writeConfig } from '../support/child.ts';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * Egress sources and pools (docs/egress.md) against receivers that record who connected: mail
 * leaves from the address of the source its pool drew, greets with that source's name, is drawn
 * by weight, and says so in its events; a pool nobody configured is refused at DATA.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
let world: World;
let tern: RunningTern;
const spool = tempDir();
const webhook = new WebhookReceiver('egress');
const hasIpv6Loopback = Object.values(networkInterfaces()).some((list) => (list ?? []).some((i) => i.address === '::1'));

const EGRESS = {
  sources: [
    { name: 'ip1', address: '127.0.0.10', ehlo: 'mta1.tern.test' },
    { name: 'ip2', address: '127.0.0.11', ehlo: 'mta2.tern.test' },
    ...(hasIpv6Loopback ? [{ name: 'six', address: '::1', ehlo: 'mta6.tern.test' }] : []),
  ],
  pools: [
    { name: 'marketing', sources: ['ip1', { source: 'ip2', weight: 3 }] },
    { name: 'transactional', sources: ['ip2'] },
    ...(hasIpv6Loopback ? [{ name: 'six', sources: ['six'] }] : []),
  ],
  default_pool: 'marketing',
};

t.before(async () => {
  world = await startWorld();
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
    egress: EGRESS,
    feedback: { webhook: { url: await webhook.start(), secret: 'egress', max_wait: '20ms' } },
  }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  await webhook.stop();
  spool.remove();
});

const withPool = (pool: string | undefined, to: string) => message({ to, headers: pool ? [`X-Tern-Meta: {"pool":"${pool}"}`] : [] });
const received = (to: string) => [...world.sinks.values()].flatMap((s) => s.received).filter((m) => m.rcptTo.includes(to));

t.test('a pool\'s mail leaves from its source\'s address and greets with its name; events say which', async (t) => {
  const to = Array.from({ length: 8 }, (_, i) => `tx${i}@a.test`);
  for (const r of to) t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [r], withPool('transactional', r)), /^250 /);
  await until(() => to.every((r) => received(r).length === 1), 10_000, 'all delivered');
  const got = to.flatMap(received);
  t.same([...new Set(got.map((m) => m.peer))], ['127.0.0.11'], 'bound to ip2\'s address');
  t.same([...new Set(got.map((m) => m.helo))], ['mta2.tern.test'], 'and greeting with its name');
  await until(() => to.every((r) => webhook.acknowledged.some((e) => e.recipient === r && e.type === 'delivered')), 10_000, 'the events');
  for (const e of webhook.acknowledged.filter((e) => to.includes(e.recipient) && e.type === 'delivered')) t.match(e, { source_ip: '127.0.0.11', pool: 'transactional' });
  const metrics = await (await adminFetch(tern.adminPort, '/metrics')).text();
  t.match(metrics, /^tern_egress_attempts_total\{pool="transactional",source="ip2",verdict="delivered"\} 8$/m, 'counted by pool and source');
});

t.test('mail that names no pool goes by the default pool\'s weights (1:3)', async (t) => {
  // Two domains on two sites: two jobs a message, each drawing its source.
  const recipients = Array.from({ length: 100 }, (_, i) => [`w${i}@a.test`, `w${i}@b.test`]);
  for (const pair of recipients) await sendMail(tern.smtpPort, 'news@campaign.test', pair, withPool(undefined, pair[0] as string));
  const all = recipients.flat();
  await until(() => all.every((r) => received(r).length === 1), 20_000, 'all delivered');
  const fromIp2 = all.filter((r) => received(r)[0]?.peer === '127.0.0.11').length;
  const fromIp1 = all.filter((r) => received(r)[0]?.peer === '127.0.0.10').length;
  t.equal(fromIp1 + fromIp2, 200, 'every one from a source of the pool');
  // 200 draws at 3/4: 150 expected, 6.1 the standard deviation; 120..180 is five of them.
  t.ok(fromIp2 >= 120 && fromIp2 <= 180, `ip2 (weight 3) sent ${fromIp2} of 200, ip1 (weight 1) ${fromIp1}`);
  t.ok(all.filter((r) => received(r)[0]?.peer === '127.0.0.10').every((r) => received(r)[0]?.helo === 'mta1.tern.test'), 'ip1 greets as mta1');
});

t.test('a pool that is not configured is refused at DATA, naming it', async (t) => {
  const reply = await sendMail(tern.smtpPort, 'news@campaign.test', ['x@a.test'], withPool('warm-9', 'x@a.test')).catch((e: Error) => e.message);
  t.match(reply, /554 5\.6\.0 X-Tern-Meta "pool" "warm-9" is not an egress pool here \(marketing, transactional/);
  t.same(received('x@a.test'), [], 'nothing sent');
});

t.test('an IPv6 source cannot reach an IPv4-only MX: deferred, saying why', { skip: hasIpv6Loopback ? false : 'no ::1 on this host' }, async (t) => {
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['v6@a.test'], withPool('six', 'v6@a.test')), /^250 /);
  const event = await until(() => webhook.acknowledged.find((e) => e.recipient === 'v6@a.test' && e.type === 'soft_bounce'), 10_000, 'a soft bounce');
  t.match(event, { pool: 'six', response: { code: 451, enhanced: '4.4.4', text: /no IPv6 address of an MX host for source ::1/ } });
});

t.test('check-config: a source address not on this host, a pool of unknown sources, an unknown default pool', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const run = (egress: unknown) => spawnSync(process.execPath, [join(ROOT, 'bin/tern.js'), 'check-config', '--config', writeConfig(dir.path, { spool: { dir: join(dir.path, 'spool') }, egress })], { encoding: 'utf8' });
  const notHere = run({ sources: [{ name: 'ip1', address: '192.0.2.10' }] });
  t.equal(notHere.status, 1);
  t.match(notHere.stderr, /egress\.sources\[0\]\.address: 192\.0\.2\.10 is not an address of this host/);
  const bad = run({ sources: [{ name: 'ip1', address: '127.0.0.10' }, { name: 'ip1', address: 'nope' }], pools: [{ name: 'p', sources: ['ip1', 'ip9'] }], default_pool: 'q' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /egress\.sources\.1\.address: must be an IPv4 or IPv6 address|egress\.sources\[1\]\.address: must be an IPv4 or IPv6 address/);
  t.match(bad.stderr, /"ip1" names another source already/);
  t.match(bad.stderr, /"ip9" is not a source in egress\.sources/);
  t.match(bad.stderr, /default_pool: "q" is not a pool \(p\)/);
  const good = run({ sources: [{ name: 'ip1', address: '127.0.0.10', ehlo: 'mta1.example.com' }], pools: [{ name: 'p', sources: ['ip1'] }] });
  t.equal(good.status, 0, good.stderr);
});

t.test('each source\'s history with each receiver: delivered, deferred by reason, throttled; in the API and the sites view', async (t) => {
  const b = world.sinks.get('127.0.0.3')!;
  b.patience.rate = { count: 0, windowMs: 60_000 }; // every RCPT: 451 4.7.0 [TSS04]
  t.teardown(() => {
    b.patience.rate = undefined;
  });
  for (const r of ['rep1@b.test', 'rep2@b.test', 'rep3@b.test']) await sendMail(tern.smtpPort, 'news@campaign.test', [r], withPool('transactional', r));
  const pair = await until(async () => {
    const body = (await (await adminFetch(tern.adminPort, '/api/v1/egress/reputation?source=ip2&site=b.test')).json()) as { pairs: { summary: { deferred: Record<string, number>; throttled: number } }[] };
    const found = body.pairs[0];
    return found && (found.summary.deferred.badreputation ?? 0) >= 3 && found;
  }, 10_000, 'three throttled recipients in ip2\'s history with b.test');
  t.match(pair, { source: 'ip2', site: 'b.test', summary: { days: 1, throttled: Number } });
  t.ok(pair.summary.throttled >= 3, 'each [TSS04] counted as a throttle');
  const all = (await (await adminFetch(tern.adminPort, '/api/v1/egress/reputation?source=ip1')).json()) as { pairs: { source: string; summary: { delivered: number } }[] };
  t.ok(all.pairs.length >= 1 && all.pairs.every((p) => p.source === 'ip1' && p.summary.delivered > 0), 'ip1\'s history: what it delivered');
  const site = (await (await adminFetch(tern.adminPort, '/api/v1/sites/b.test')).json()) as { paths: { source: string; reputation: { throttled: number } | null }[] };
  t.ok((site.paths.find((p) => p.source === 'ip2')?.reputation?.throttled ?? 0) >= 3, 'the sites view shows it on ip2\'s path');
});
