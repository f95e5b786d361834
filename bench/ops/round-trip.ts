/**
 * The operator's round trip (issue 18), run end to end against the real `tern start` on a loopback
 * internet, printing what an SRE would see at each step:
 *   1. a scrape shows traffic;
 *   2. `tern queue suspend --site` while mail flows: the site's queue grows, other sites deliver;
 *   3. `tern queue resume`: the queue drains;
 *   4. `tern queue bounce --campaign`: one failed event per recipient (cause "admin"), and the KPIs;
 *   5. an MX rule changed and SIGHUP sent while a client keeps relaying: no session dropped;
 *   6. `tern check-domain` passes on a domain set up right and names the broken record on another.
 * Usage: npm run demo:ops   (takes about a minute; needs nothing outside this machine)
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { childConfig, spawnTern } from '../../test/support/child.ts';
import { ADMIN_TOKEN, adminFetch, tempDir } from '../../test/support/daemon.ts';
import { makeKeys } from '../../test/support/dkim.ts';
import { message, sendMail, until } from '../../test/support/smtp-client.ts';
import { WebhookReceiver } from '../../test/support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld } from '../../test/support/world.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const dir = tempDir('tern-round-trip-');
const keys = makeKeys(dir.path, 'good.test');
const world = await startWorld({
  ...STANDARD_ZONE,
  'good.test': { txt: ['v=spf1 ip4:127.0.0.10 -all'] },
  '_dmarc.good.test': { txt: ['v=DMARC1; p=reject'] },
  'rsa1._domainkey.good.test': { txt: [keys.txt['rsa1._domainkey.good.test.'] as string] },
  'ed1._domainkey.good.test': { txt: [keys.txt['ed1._domainkey.good.test.'] as string] },
  'bad.test': { txt: ['v=spf1 ip4:127.0.0.99 -all'] },
  '_dmarc.bad.test': { txt: ['v=DMARC1; p=none'] },
});
const webhook = new WebhookReceiver('round-trip');
const rulesFile = join(dir.path, 'rules.yaml');
writeFileSync(rulesFile, 'sites:\n  - { site: mx1.a.test, max_connections: 2 }\n');
const { configPath, smtpPort, adminPort } = await childConfig(dir.path, world, {
  shaping: { rules_file: rulesFile },
  dkim: { keys: keys.entries },
  feedback: { webhook: { url: await webhook.start(), secret: 'round-trip', max_wait: '20ms' } },
  delivery: { timeouts: { connect: '2s', greeting: '2s', command: '3s', data: '5s', idle: '30s' } },
});
const tern = await spawnTern(configPath);
const sinkA = world.sinks.get('127.0.0.2');
const sinkB = world.sinks.get('127.0.0.3');
if (!sinkA || !sinkB) throw new Error('the world has no sinks');

const say = (line = ''): void => void process.stdout.write(`${line}\n`);
const cli = (...args: string[]) => new Promise<{ status: number; out: string }>((resolve) => {
  execFile(process.execPath, [join(ROOT, 'bin/tern.js'), ...args, '--config', configPath], { encoding: 'utf8', env: { ...process.env, TERN_ADMIN_TOKEN: ADMIN_TOKEN } }, (err, stdout, stderr) => {
    resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}`.trimEnd() });
  });
});
const scrape = async (): Promise<string> => (await adminFetch(adminPort, '/metrics')).text();
const series = (text: string, pattern: RegExp): string[] => text.split('\n').filter((l) => pattern.test(l));
const value = (text: string, name: string): number => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? NaN);
const send = (campaign: string, to: string): Promise<string> => sendMail(smtpPort, 'news@good.test', [to], message({ from: 'news@good.test', to, headers: [`X-Tern-Meta: {"campaign":"${campaign}"}`] }));

try {
  say('## 1. A scrape shows traffic');
  for (let i = 0; i < 20; i++) await send('warmup', `w${i}@${i % 2 === 0 ? 'a' : 'b'}.test`);
  await until(async () => value(await scrape(), 'tern_delivery_attempts_total{verdict="delivered"}') >= 20, 15_000, 'twenty deliveries');
  const first = await scrape();
  for (const line of series(first, /^tern_(messages_accepted_total|delivery_attempts_total\{verdict="delivered"\}|queue_recipients|dns_lookups_total\{type="MX",result="answer"\}|delivery_attempt_duration_seconds_(count|sum)\{.*\}|dkim_sign_duration_seconds_count\{.*\}|event_loop_delay_seconds\{thread="main",stat="p99"\}|spool_(bytes|free_bytes)|feedback_oldest_pending_age_seconds) /)) say(`    ${line}`);

  say('\n## 2. Suspend the site mx1.a.test while mail flows: its queue grows, b.test still delivers');
  say(`$ tern queue suspend --site mx1.a.test --duration 1h --reason "receiver asked us to slow down"\n${(await cli('queue', 'suspend', '--site', 'mx1.a.test', '--duration', '1h', '--reason', 'receiver asked us to slow down')).out}`);
  const beforeA = sinkA.received.length;
  const beforeB = sinkB.received.length;
  for (let i = 0; i < 30; i++) await send('flow', `s${i}@${i % 3 === 0 ? 'b' : 'a'}.test`);
  await until(() => sinkB.received.length - beforeB >= 10, 15_000, 'b.test to deliver');
  const held = await until(async () => {
    const text = await scrape();
    return value(text, 'tern_queue_recipients') >= 20 && text;
  }, 15_000, 'the held mail to show');
  say(`    delivered meanwhile: a.test ${sinkA.received.length - beforeA}, b.test ${sinkB.received.length - beforeB}`);
  for (const line of series(held, /^tern_(queue_recipients|deferrals_total\{provider="other",reason="suspended"\}|admin_suspensions\{target="site"\}|admin_actions_total\{action="suspend",result="ok"\}) /)) say(`    ${line}`);
  say(`$ tern queue list\n${(await cli('queue', 'list')).out.split('\n').map((l) => `    ${l}`).join('\n')}`);

  say('\n## 3. Resume: the queue drains');
  say(`$ tern queue resume --site mx1.a.test\n${(await cli('queue', 'resume', '--site', 'mx1.a.test')).out}`);
  const resumed = Date.now();
  await until(async () => value(await scrape(), 'tern_queue_recipients') === 0, 30_000, 'the queue to drain');
  say(`    drained in ${Date.now() - resumed} ms after the resume answered; a.test has now received ${sinkA.received.length - beforeA} of the 20 held`);

  say('\n## 4. Bounce a campaign: one failed event per recipient, cause "admin", and the KPIs');
  await cli('queue', 'suspend', '--domain', 'a.test', '--duration', '1h', '--reason', 'hold for the bounce');
  for (let i = 0; i < 5; i++) await send('spring-sale', `b${i}@a.test`);
  await until(async () => value(await scrape(), 'tern_queue_recipients') === 5, 15_000, 'five waiting');
  say(`$ tern queue bounce --campaign spring-sale --reason "campaign withdrawn"\n${(await cli('queue', 'bounce', '--campaign', 'spring-sale', '--reason', 'campaign withdrawn')).out}`);
  await until(() => webhook.acknowledged.filter((e) => e.meta.campaign === 'spring-sale' && e.type === 'failed').length === 5, 15_000, 'five failed events');
  const failed = webhook.acknowledged.filter((e) => e.meta.campaign === 'spring-sale' && e.type === 'failed');
  say(`    webhook: ${failed.length} failed events, causes ${[...new Set(failed.map((e) => e.cause))].join(',')}, first reply "${failed[0]?.response?.text ?? ''}"`);
  const kpi = (await (await adminFetch(adminPort, '/api/v1/campaigns/spring-sale')).json()) as Record<string, unknown>;
  say(`    GET /api/v1/campaigns/spring-sale: ${JSON.stringify(kpi)}`);
  await cli('queue', 'resume', '--domain', 'a.test');

  say('\n## 5. Change an MX rule and reload while a client relays: no session dropped');
  let sent = 0;
  let refused = 0;
  let relaying = true;
  const client = (async () => {
    while (relaying) {
      try {
        if ((await send('reload', `r${sent}@a.test`)).startsWith('250')) sent++;
        else refused++;
      } catch {
        refused++;
      }
    }
  })();
  await until(() => sent >= 10, 10_000, 'the client to get going');
  const connectionsBefore = sinkA.connections;
  writeFileSync(rulesFile, 'sites:\n  - { site: mx1.a.test, max_connections: 2, max_messages_per_connection: 500 }\n');
  const from = tern.lines.length;
  tern.proc.kill('SIGHUP');
  await until(() => tern.lines.slice(from).some((l) => l.msg === 'reload: MX rules re-read'), 10_000, 'the reload');
  await until(() => sent >= 60, 15_000, 'more mail after the reload');
  relaying = false;
  await client;
  const site = (await (await adminFetch(adminPort, '/api/v1/sites/mx1.a.test')).json()) as { paths: { limits: Record<string, { value: unknown; rule: string }> }[] };
  for (const l of tern.lines.slice(from).filter((l) => String(l.msg).startsWith('reload'))) say(`    log: ${l.msg} ${JSON.stringify({ ...l, level: undefined, time: undefined, pid: undefined, hostname: undefined, service: undefined, msg: undefined })}`);
  say(`    max_messages_per_connection now ${JSON.stringify(site.paths[0]?.limits.max_messages_per_connection)}`);
  say(`    client: ${sent} messages accepted, ${refused} refused or dropped; new connections to mx1.a.test during the reload: ${sinkA.connections - connectionsBefore}`);

  say('\n## 6. tern check-domain: a domain set up right, and a broken one');
  const good = await cli('check-domain', 'good.test', '--ip', '127.0.0.10');
  say(`$ tern check-domain good.test --ip 127.0.0.10   (exit ${good.status})\n${good.out}`);
  const bad = await cli('check-domain', 'bad.test', '--from', 'news@bad.test', '--ip', '127.0.0.10');
  say(`$ tern check-domain bad.test --ip 127.0.0.10   (exit ${bad.status})\n${bad.out}`);
} finally {
  tern.proc.kill('SIGTERM');
  await tern.exited;
  await webhook.stop();
  await world.close();
  dir.remove();
}
