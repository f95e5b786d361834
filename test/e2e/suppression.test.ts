import t from 'tap';
import { adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { worldForFile } from '../support/world.ts';

/**
 * Suppression (docs/bounces.md, "Suppression"): with it on, an address that hard-bounced is
 * refused at RCPT for mail from the same sender domain, an operator adds and removes entries, the
 * list survives a restart, and with shards every shard refuses what any shard learnt.
 */
const shared = worldForFile(t);

async function tern(extra: Record<string, unknown> = {}, spool = shared.tempDir()): Promise<RunningTern & { spool: { path: string; remove(): void } }> {
  const running = await startTern(testConfig({ dnsServer: shared.world.dns.server, deliveryPort: shared.world.port, spoolDir: spool.path, suppression: { enabled: true }, ...extra }));
  return Object.assign(running, { spool });
}

/** The reply to RCPT for `to`, in a transaction from `from`. */
async function rcpt(port: number, from: string, to: string): Promise<string> {
  const { client } = await RawSmtp.open(port);
  await client.command('EHLO client.test');
  await client.command(`MAIL FROM:<${from}>`);
  const reply = await client.command(`RCPT TO:<${to}>`);
  client.close();
  return reply;
}

const hardBounce = async (running: RunningTern, from: string, to: string): Promise<void> => {
  await sendMail(running.smtpPort, from, [to], message());
  await until(() => running.outcomes(to).some((l) => l.event === 'failed'), 10_000, `${to} failed`);
};

t.test('a hard bounce suppresses the address for its sender domain only; the refusal says why and is counted', async (t) => {
  const running = await tern();
  t.teardown(() => running.stop());
  await hardBounce(running, 'news@campaign.test', 'user-unknown@a.test');
  const refused = await until(async () => {
    const reply = await rcpt(running.smtpPort, 'other@campaign.test', 'user-unknown@a.test');
    return reply.startsWith('550') && reply;
  }, 5_000, 'the address suppressed');
  t.match(refused, /^550 5\.1\.1 Recipient <user-unknown@a\.test> is suppressed for campaign\.test until \d{4}-\d{2}-\d{2}: it hard-bounced \(550 5\.1\.1 The email account that you tried to reach does not exist\)/);
  t.match(await rcpt(running.smtpPort, 'news@other.test', 'user-unknown@a.test'), /^250 /, 'another sender domain may still send to it');
  t.match(await rcpt(running.smtpPort, 'news@campaign.test', 'someone@a.test'), /^250 /, 'and the domain to other addresses');
  const list = (await (await adminFetch(running.adminPort, '/api/v1/suppressions?domain=campaign.test')).json()) as { enabled: boolean; entries: unknown[] };
  t.match(list, { enabled: true, entries: [{ domain: 'campaign.test', address: 'user-unknown@a.test', reason: 'hard-bounce', detail: /^550 5\.1\.1 / }] });
  const metrics = await (await adminFetch(running.adminPort, '/metrics')).text();
  t.match(metrics, /^tern_suppression_refusals_total\{reason="hard-bounce"\} 1$/m);
  t.match(metrics, /^tern_suppressed_addresses 1$/m);
});

t.test('an operator adds and removes entries; the list survives a restart', async (t) => {
  const spool = shared.tempDir();
  const first = await tern({}, spool);
  const post = (path: string, body: unknown) => adminFetch(first.adminPort, path, { method: 'POST', body: JSON.stringify(body) });
  t.equal((await post('/api/v1/suppressions/add', { domain: 'campaign.test', address: 'Complainer@B.test', reason: 'complained by phone', duration: '30d' })).status, 200);
  t.match(await rcpt(first.smtpPort, 'news@campaign.test', 'complainer@b.test'), /^550 5\.7\.1 Recipient <complainer@b\.test> is suppressed for campaign\.test until \d{4}-\d{2}-\d{2}: complained by phone/);
  const bad = await post('/api/v1/suppressions/add', { domain: 'campaign.test', address: 'not an address' });
  t.equal(bad.status, 400);
  await first.stop();

  const again = await tern({}, spool);
  t.teardown(() => again.stop());
  t.match(await rcpt(again.smtpPort, 'news@campaign.test', 'complainer@b.test'), /^550 5\.7\.1 /, 'still suppressed after a restart');
  const remove = (body: unknown) => adminFetch(again.adminPort, '/api/v1/suppressions/remove', { method: 'POST', body: JSON.stringify(body) });
  t.equal((await remove({ domain: 'campaign.test', address: 'complainer@b.test' })).status, 200);
  t.match(await rcpt(again.smtpPort, 'news@campaign.test', 'complainer@b.test'), /^250 /, 'removed: accepted again');
  t.equal((await remove({ domain: 'campaign.test', address: 'complainer@b.test' })).status, 404, 'removing it twice');
});

t.test('off unless enabled: a hard bounce suppresses nothing', async (t) => {
  const running = await tern({ suppression: { enabled: false } });
  t.teardown(() => running.stop());
  await hardBounce(running, 'news@campaign.test', 'user-unknown@a.test');
  t.match(await rcpt(running.smtpPort, 'news@campaign.test', 'user-unknown@a.test'), /^250 /);
  t.match(await (await adminFetch(running.adminPort, '/api/v1/suppressions')).json(), { enabled: false, entries: [] });
});

t.test('with shards: what one shard learnt, every shard refuses', async (t) => {
  const running = await tern({ tuning: { threads: 2 } });
  t.teardown(() => running.stop());
  await sendMail(running.smtpPort, 'news@campaign.test', ['user-unknown@a.test'], message());
  await until(async () => ((await (await adminFetch(running.adminPort, '/api/v1/suppressions')).json()) as { entries: unknown[] }).entries.length === 1, 10_000, 'the coordinator told');
  // The coordinator tells every shard at once: once one refuses, all do.
  await until(async () => (await rcpt(running.smtpPort, 'news@campaign.test', 'user-unknown@a.test')).startsWith('550'), 5_000, 'a shard refusing');
  // Connections land on either shard (SO_REUSEPORT): every one of ten is refused.
  const replies = [];
  for (let i = 0; i < 10; i++) replies.push(await rcpt(running.smtpPort, 'news@campaign.test', 'user-unknown@a.test'));
  t.ok(replies.every((r) => r.startsWith('550 5.1.1 ')), replies.join(' | '));
});
