import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ADMIN_TOKEN, adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { worldForFile } from '../support/world.ts';

/** The operator's write calls against the real daemon: suspend, resume, flush, and their audit. */

const shared = worldForFile(t);

function configFor(spool: string): Record<string, unknown> {
  // Deferrals wait an hour: only a flush or a resume brings mail back sooner.
  return testConfig({ dnsServer: shared.world.dns.server, deliveryPort: shared.world.port, spoolDir: spool, delivery: { retry: { base: '1h', max: '2h' } } });
}

async function post(tern: RunningTern, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await adminFetch(tern.adminPort, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}
async function get(tern: RunningTern, path: string): Promise<any> {
  return (await adminFetch(tern.adminPort, path)).json();
}
const delivered = (host: string, rcpt: string): boolean => (shared.world.sinks.get(host)?.received ?? []).some((m) => m.rcptTo.includes(rcpt));
const heldLines = (tern: RunningTern, rcpt: string) => tern.logs.filter((l) => l.recipient === rcpt && l.event === 'retry' && l.held === 'suspended');
function metric(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

t.test('write calls need the token; bad bodies are refused with every problem named, and change nothing', async (t) => {
  const spool = shared.tempDir();
  const tern = await startTern(configFor(spool.path));
  t.teardown(() => tern.stop());
  const base = `http://127.0.0.1:${tern.adminPort}`;
  for (const path of ['/api/v1/suspend', '/api/v1/resume', '/api/v1/flush', '/api/v1/suspensions']) {
    const method = path === '/api/v1/suspensions' ? 'GET' : 'POST';
    t.equal((await fetch(`${base}${path}`, { method, body: method === 'POST' ? '{"domain":"a.test"}' : null })).status, 401, `${path} without a token`);
    t.equal((await fetch(`${base}${path}`, { method, headers: { authorization: 'Bearer wrong' }, body: method === 'POST' ? '{"domain":"a.test"}' : null })).status, 403, `${path} with a wrong token`);
  }
  t.equal((await adminFetch(tern.adminPort, '/api/v1/suspend')).status, 405, 'GET on a write call');
  t.equal((await adminFetch(tern.adminPort, '/api/v1/suspensions', { method: 'POST', body: '{}' })).status, 405, 'POST on a read call');

  const both = await post(tern, '/api/v1/suspend', { domain: 'a.test', site: 'mx1.a.test' });
  t.equal(both.status, 400);
  t.match(both.body.problems, [{ problem: /exactly one of "domain" or "site"/ }]);
  const bad = await post(tern, '/api/v1/suspend', { domain: 'not a domain', duration: 'forever', colour: 'red' });
  t.equal(bad.status, 400);
  const paths = bad.body.problems.map((p: { path: string }) => p.path);
  t.ok(paths.includes('domain') && paths.includes('duration'), `each bad key by name: ${JSON.stringify(bad.body.problems)}`);
  t.match(JSON.stringify(bad.body.problems), /colour/, 'the unknown key is named');
  t.equal((await post(tern, '/api/v1/suspend', { domain: 'a.test', duration: '90d' })).status, 400, 'longer than 30d');
  t.equal((await post(tern, '/api/v1/flush', {})).status, 400, 'flush without a selector');
  t.equal((await post(tern, '/api/v1/flush', { domain: 'a.test', campaign: 'c' })).status, 400, 'flush with two');
  const notJson = await adminFetch(tern.adminPort, '/api/v1/flush', { method: 'POST', body: '{"domain":' });
  t.equal(notJson.status, 400);
  t.match(await notJson.json(), { error: /not JSON/ });
  const huge = await adminFetch(tern.adminPort, '/api/v1/flush', { method: 'POST', body: JSON.stringify({ campaign: 'x'.repeat(70_000) }) });
  t.equal(huge.status, 413);
  t.equal((await post(tern, '/api/v1/resume', { domain: 'a.test' })).status, 404, 'resume with nothing suspended');
  t.same(await get(tern, '/api/v1/suspensions'), { suspensions: [] }, 'nothing was suspended by the refused calls');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.equal(metric(metrics, 'tern_admin_actions_total{action="suspend",result="refused"}'), 3);
  t.equal(metric(metrics, 'tern_admin_actions_total{action="resume",result="not-found"}'), 1);
});

t.test('suspend a site while mail flows: its queue grows, other sites deliver, a restart keeps it; resume drains it', async (t) => {
  const spool = shared.tempDir();
  let tern = await startTern(configFor(spool.path));
  t.teardown(() => tern.stop());
  const suspended = await post(tern, '/api/v1/suspend', { site: 'MX1.a.test.', duration: '1h', reason: 'incident 42: Gmail blocks' });
  t.equal(suspended.status, 200);
  t.match(suspended.body.suspended, { target: 'site', name: 'mx1.a.test', reason: 'incident 42: Gmail blocks', remaining_s: 3600 });
  t.match(await get(tern, '/api/v1/suspensions'), { suspensions: [{ target: 'site', name: 'mx1.a.test' }] });

  const held = Array.from({ length: 5 }, (_, i) => `held${i}@a.test`);
  for (const rcpt of held) t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [rcpt, `other-${rcpt.replace('@a.test', '')}@b.test`], message({ headers: ['X-Tern-Meta: {"campaign":"spring"}'] })), /^250 /);
  await until(() => held.every((r) => delivered('127.0.0.3', `other-${r.replace('@a.test', '')}@b.test`)), 10_000, 'b.test, another site, delivered');
  await until(() => held.every((r) => heldLines(tern, r).length > 0), 10_000, 'each a.test recipient held, untried');
  t.notOk(held.some((r) => delivered('127.0.0.2', r)), 'nothing reached the suspended site');
  t.match(heldLines(tern, held[0] as string)[0], { reply: /451 4\.4\.5 site mx1\.a\.test suspended by an operator until .*: incident 42/ });
  t.equal((await get(tern, '/api/v1/queue')).recipients, 5, 'its queue grew by the 5 held recipients');
  const scrape = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  t.equal(metric(scrape, 'tern_deferrals_total{provider="other",reason="suspended"}'), 5);
  t.equal(metric(scrape, 'tern_admin_suspensions{target="site"}'), 1);

  await tern.stop();
  tern = await startTern(configFor(spool.path));
  t.match(await get(tern, '/api/v1/suspensions'), { suspensions: [{ target: 'site', name: 'mx1.a.test', reason: 'incident 42: Gmail blocks' }] }, 'kept across a restart');
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['late@a.test'], message({})), /^250 /);
  await until(() => heldLines(tern, 'late@a.test').length > 0, 10_000, 'mail after the restart held too');
  t.equal((await get(tern, '/api/v1/queue')).recipients, 6);

  const resumed = await post(tern, '/api/v1/resume', { site: 'mx1.a.test' });
  t.equal(resumed.status, 200);
  t.match(resumed.body, { resumed: { target: 'site', name: 'mx1.a.test' }, released: { messages: 6, recipients: 6 } }, 'every held message, also those from before the restart');
  await until(() => [...held, 'late@a.test'].every((r) => delivered('127.0.0.2', r)), 10_000, 'the held mail drains once resumed');
  await until(async () => (await get(tern, '/api/v1/queue')).recipients === 0, 5_000, 'the queue empties');
  t.same(await get(tern, '/api/v1/suspensions'), { suspensions: [] });

  const audit = readFileSync(join(spool.path, 'admin', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit, [
    { action: 'suspend', selector: { site: 'mx1.a.test' }, result: 'ok', remote: '127.0.0.1', detail: { reason: 'incident 42: Gmail blocks' } },
    { action: 'resume', selector: { site: 'mx1.a.test' }, result: 'ok', detail: { messages: 6, recipients: 6 } },
  ], 'the audit log has both calls, across the restart');
  t.ok(audit.every((a) => !Number.isNaN(Date.parse(a.time))), 'each with its time');
});

t.test('a suspended domain holds only its own mail; flush by campaign or queue id retries deferred mail now', async (t) => {
  const spool = shared.tempDir();
  const tern = await startTern(configFor(spool.path));
  t.teardown(() => tern.stop());
  t.equal((await post(tern, '/api/v1/suspend', { domain: 'fallback.test', reason: 'checking' })).status, 200);
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['x@fallback.test', 'y@a.test'], message({})), /^250 /);
  await until(() => heldLines(tern, 'x@fallback.test').length > 0 && delivered('127.0.0.2', 'y@a.test'), 10_000, 'the domain held, a.test delivered');

  // tempfail-1: 451 at the first attempt, accepted after; the retry is an hour away.
  const first = await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-1@a.test'], message({ headers: ['X-Tern-Meta: {"campaign":"c1"}'] }));
  const second = await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-1@b.test'], message({ headers: ['X-Tern-Meta: {"campaign":"c2"}'] }));
  await until(() => tern.outcomes('tempfail-1@a.test').length > 0 && tern.outcomes('tempfail-1@b.test').length > 0, 10_000, 'both deferred');
  const byCampaign = await post(tern, '/api/v1/flush', { campaign: 'c1' });
  t.match(byCampaign, { status: 200, body: { flushed: { campaign: 'c1' }, messages: 1, recipients: 1 } });
  await until(() => delivered('127.0.0.2', 'tempfail-1@a.test'), 10_000, 'c1 retried now and delivered');
  t.notOk(delivered('127.0.0.3', 'tempfail-1@b.test'), 'c2 still waits for its hour');
  const queueId = /queued as (\S+)/.exec(second)?.[1] ?? /(\S+)$/.exec(second.trim())?.[1];
  t.ok(queueId, `a queue id in "${second.trim()}"`);
  const byId = await post(tern, '/api/v1/flush', { queue_id: queueId });
  t.match(byId, { status: 200, body: { messages: 1, recipients: 1 } });
  await until(() => delivered('127.0.0.3', 'tempfail-1@b.test'), 10_000, 'flushed by queue id');
  t.match(first, /^250 /);

  const stillHeld = await post(tern, '/api/v1/flush', { domain: 'fallback.test' });
  t.match(stillHeld.body, { messages: 1, recipients: 1 }, 'flushing a suspended domain retries it now...');
  await until(() => heldLines(tern, 'x@fallback.test').length >= 2, 10_000, '...and the suspension holds it again');
  t.equal((await post(tern, '/api/v1/flush', { site: 'mx1.a.test' })).body.messages, 0, 'nothing waits for a.test now');
});

t.test('tern queue suspend|list|resume|flush talk to the admin API with the config\'s address and token', async (t) => {
  const { execFile } = await import('node:child_process');
  const { writeFileSync } = await import('node:fs');
  const spool = shared.tempDir();
  const tern = await startTern(configFor(spool.path));
  t.teardown(() => tern.stop());
  const config = join(spool.path, 'cli.yaml');
  writeFileSync(config, `admin:\n  listen: "127.0.0.1:${tern.adminPort}"\n  token: "${ADMIN_TOKEN}"\n`);
  const tern_ = (...args: string[]) => new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(process.execPath, [new URL('../../bin/tern.js', import.meta.url).pathname, 'queue', ...args, '--config', config], { encoding: 'utf8', env: { ...process.env, TERN_ADMIN_TOKEN: '' } }, (err, out, errText) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out, err: errText });
    });
  });

  const suspended = await tern_('suspend', '--domain', 'fallback.test', '--duration', '2h', '--reason', 'bounces spiking');
  t.equal(suspended.code, 0, suspended.err);
  t.match(suspended.out, /^suspended domain fallback\.test until \S+ \(2 h left\): bounces spiking\n$/);
  const listed = await tern_('list');
  t.equal(listed.code, 0, listed.err);
  t.match(listed.out, /recipients waiting in \d+ messages/);
  t.match(listed.out, /suspended:\n  domain fallback\.test until .*: bounces spiking/);
  const json = await tern_('list', '--json');
  t.match(JSON.parse(json.out), { recipients: 0, suspensions: [{ target: 'domain', name: 'fallback.test', reason: 'bounces spiking' }] });
  const flushed = await tern_('flush', '--campaign', 'nothing-here', '--json');
  t.same(JSON.parse(flushed.out), { flushed: { campaign: 'nothing-here' }, messages: 0, recipients: 0 });
  const resumed = await tern_('resume', '--domain', 'fallback.test');
  t.equal(resumed.code, 0, resumed.err);
  t.match(resumed.out, /^resumed domain fallback\.test: 0 recipients in 0 messages go now\n$/);
  const again = await tern_('resume', '--domain', 'fallback.test');
  t.equal(again.code, 1, 'the API said 404');
  t.match(again.err, /404 no suspension of domain fallback\.test is in force/);
  const bounceNothing = await tern_('bounce', '--campaign', 'nothing-here', '--reason', 'test', '--json');
  t.same(JSON.parse(bounceNothing.out), { bounced: { campaign: 'nothing-here' }, reason: 'test', messages: 0, recipients: 0 });
  const showNone = await tern_('show', 'NOSUCHID');
  t.equal(showNone.code, 1);
  t.match(showNone.err, /404 message NOSUCHID is not in the queue/);
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-7@a.test'], message({})), /^250 /);
  await until(() => tern.outcomes('tempfail-7@a.test').length > 0, 10_000, 'deferred');
  const id = tern.outcomes('tempfail-7@a.test')[0]?.queue_id as string;
  const shown = await tern_('show', id);
  t.equal(shown.code, 0, shown.err);
  t.match(shown.out, new RegExp(`^${id} from news@campaign\\.test, received \\S+, expires \\S+: scheduled\\n  tempfail-7@a\\.test: pending, 1 attempt, last "451 4\\.3\\.0[^"]*", next \\S+\\n$`));
  const usage = await tern_('frob');
  t.equal(usage.code, 2);
  t.match(usage.err, /unknown subcommand "frob"/);
  const badToken = join(spool.path, 'bad.yaml');
  writeFileSync(badToken, `admin:\n  listen: "127.0.0.1:${tern.adminPort}"\n  token: "wrong"\n`);
  const refused = await new Promise<{ code: number; err: string }>((resolve) => {
    execFile(process.execPath, [new URL('../../bin/tern.js', import.meta.url).pathname, 'queue', 'list', '--config', badToken], { encoding: 'utf8', env: { ...process.env, TERN_ADMIN_TOKEN: '' } }, (err, _out, errText) => resolve({ code: err ? 1 : 0, err: errText }));
  });
  t.equal(refused.code, 1);
  t.match(refused.err, /403/);
});

t.test('an operator bounce fails the waiting mail a campaign names: one failed event per recipient, cause "admin", and the KPIs; GET messages/:id before and after', async (t) => {
  const receiver = new WebhookReceiver('s3cret');
  const spool = shared.tempDir();
  const tern = await startTern({ ...configFor(spool.path), feedback: { webhook: { url: await receiver.start(), secret: 's3cret', max_wait: '20ms' } } });
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const meta = (campaign: string) => message({ headers: [`X-Tern-Meta: {"campaign":"${campaign}"}`] });
  // tempfail-9: deferred (an hour) after its first attempt; x@b.test is delivered at once.
  const replies = [
    await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-9@a.test'], meta('autumn')),
    await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-9@fallback.test'], meta('autumn')),
    await sendMail(tern.smtpPort, 'news@campaign.test', ['x@b.test', 'tempfail-9@b.test'], meta('autumn')),
    await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-9@mx1.a.test'], meta('winter')),
  ];
  const ids = replies.map((r) => /queued as (\S+)/.exec(r)?.[1] as string);
  t.ok(ids.every(Boolean), 'queue ids');
  const deferred = ['tempfail-9@a.test', 'tempfail-9@fallback.test', 'tempfail-9@b.test'];
  await until(() => deferred.every((r) => receiver.acknowledged.some((e) => e.recipient === r && e.type === 'soft_bounce')) && receiver.acknowledged.some((e) => e.recipient === 'x@b.test' && e.type === 'delivered'), 10_000, 'deferred, and one delivered');

  // The event is made durable before the attempt's journal: the message is rescheduled a moment later.
  const view = await until(async () => {
    const res = await adminFetch(tern.adminPort, `/api/v1/messages/${ids[2]}`);
    const body = (await res.json()) as any;
    return res.status === 200 && body.state === 'scheduled' && body;
  }, 5_000, 'the message scheduled again');
  t.match(view, { queue_id: ids[2], sender: 'news@campaign.test', meta: { campaign: 'autumn' }, state: 'scheduled' });
  t.match(view.recipients, [
    { recipient: 'x@b.test', state: 'delivered', attempts: 1, next_attempt: null },
    { recipient: 'tempfail-9@b.test', state: 'pending', attempts: 1, last_reply: /^451 4\.3\.0/ },
  ]);
  t.ok(Date.parse(view.recipients[1].next_attempt) > Date.now() + 3_000_000, 'its next attempt an hour on');

  const bounced = await post(tern, '/api/v1/bounce', { campaign: 'autumn', reason: 'campaign cancelled' });
  t.match(bounced, { status: 200, body: { bounced: { campaign: 'autumn' }, reason: 'campaign cancelled', messages: 3, recipients: 3 } });
  await until(() => deferred.every((r) => receiver.acknowledged.some((e) => e.recipient === r && e.type === 'failed')), 10_000, 'a failed event for each');
  const failed = receiver.acknowledged.filter((e) => e.type === 'failed');
  t.equal(failed.length, 3, 'exactly one failed event per bounced recipient, none for the delivered one or the other campaign');
  for (const e of failed) t.match(e, { cause: 'admin', status: 'failed', meta: { campaign: 'autumn' }, bounce: { class: 25, category: 'admin', type: 'ignored', reason: 'admin' }, response: { code: 550, enhanced: '5.0.0', text: 'bounced by an operator: campaign cancelled' } });
  const kpis = await until(async () => {
    const k = await get(tern, '/api/v1/campaigns/autumn');
    return k.in_progress === 0 && k;
  }, 5_000, 'the campaign settled');
  t.match(kpis, { relayed: 4, delivered: 1, failed: { total: 3, ignored: 3, hard: 0 }, in_progress: 0, success_pct: 25 });
  const scrape = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  t.equal(metric(scrape, 'tern_failures_total{provider="other",cause="admin",reason="admin"}'), 3, 'counted as failures by cause');
  t.equal(metric(scrape, 'tern_delivery_attempts_total{verdict="failed"}'), 0, 'and not as attempts: none was made');
  t.equal((await adminFetch(tern.adminPort, `/api/v1/messages/${ids[0]}`)).status, 404, 'gone from the queue');
  t.match(await get(tern, `/api/v1/messages/${ids[3]}`), { meta: { campaign: 'winter' }, recipients: [{ state: 'pending' }] }, 'the other campaign waits on');
  t.match((await post(tern, '/api/v1/bounce', { campaign: 'autumn' })).body, { messages: 0, recipients: 0 }, 'nothing left to bounce');
  t.equal((await adminFetch(tern.adminPort, '/api/v1/messages/no-such-id')).status, 404);
  const audit = readFileSync(join(spool.path, 'admin', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit[0], { action: 'bounce', selector: { campaign: 'autumn' }, result: 'ok', detail: { messages: 3, recipients: 3, reason: 'campaign cancelled' } });
});
