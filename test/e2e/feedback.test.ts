import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { worldForFile } from '../support/world.ts';

const SECRET = 'campaign-secret';
const shared = worldForFile(t);

async function ternWithWebhook(url: string, eventLog?: string, extra: Record<string, unknown> = {}): Promise<RunningTern> {
  const spool = shared.tempDir();
  return startTern(testConfig({
    dnsServer: shared.world.dns.server, deliveryPort: shared.world.port, spoolDir: spool.path, ...extra,
    feedback: {
      webhook: { url, secret: SECRET, max_batch: 20, max_wait: '50ms', timeout: '1s', backoff_max: '300ms' },
      ...(eventLog ? { log: { path: eventLog } } : {}),
    },
  }));
}

const get = async (port: number, path: string): Promise<{ status: number; body: any }> => {
  const res = await adminFetch(port, path);
  return { status: res.status, body: await res.json() };
};

/** Events per recipient (queue id + index), in arrival order. */
function byRecipient(events: readonly FeedbackEvent[]): Map<string, FeedbackEvent[]> {
  const out = new Map<string, FeedbackEvent[]>();
  for (const e of events) {
    const key = e.id.split('.').slice(0, 2).join('.');
    out.set(key, [...(out.get(key) ?? []), e]);
  }
  return out;
}

const types = (events: readonly FeedbackEvent[], recipient: string): string[] => events.filter((e) => e.recipient === recipient).map((e) => e.type);

t.test('a campaign produces the life-cycle events of the brief, signed, and KPIs that match them', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const logDir = shared.tempDir();
  const eventLog = join(logDir.path, 'events.jsonl');
  const tern = await ternWithWebhook(await receiver.start(), eventLog);
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const meta = 'X-Tern-Meta: {"campaign":"spring","delivery":"d1","recipient_id":"r9"}';
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['ok@a.test', 'user-unknown@a.test', 'tempfail-1@a.test'], message({ headers: [meta] })), /^250 /);
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-1000@a.test'], message({ headers: ['X-Tern-Meta: {"campaign":"spring","delivery":"d2","validity":"1500ms"}'] })), /^250 /);

  const done = (rcpt: string) => receiver.acknowledged.some((e) => e.recipient === rcpt && (e.type === 'delivered' || e.type === 'failed'));
  await until(() => ['ok@a.test', 'user-unknown@a.test', 'tempfail-1@a.test', 'tempfail-1000@a.test'].every(done), 15_000, 'a final event for every recipient');
  const events = receiver.acknowledged;
  t.ok(receiver.batches.every((b) => b.signatureValid), 'every batch verifies with the shared secret');

  t.same(types(events, 'ok@a.test'), ['relayed', 'delivered']);
  t.same(types(events, 'user-unknown@a.test'), ['relayed', 'failed']);
  t.same(types(events, 'tempfail-1@a.test'), ['relayed', 'soft_bounce', 'delivered']);
  const expiring = types(events, 'tempfail-1000@a.test');
  t.same([expiring[0], expiring.at(-1)], ['relayed', 'failed']);
  t.ok(expiring.slice(1, -1).every((x) => x === 'soft_bounce') && expiring.length >= 3, `soft bounces until expiry: ${expiring.join(', ')}`);

  const one = (rcpt: string, type: string) => events.find((e) => e.recipient === rcpt && e.type === type) as FeedbackEvent;
  t.match(one('ok@a.test', 'relayed'), { status: 'taken_into_account', sender: 'news@campaign.test', meta: { campaign: 'spring', delivery: 'd1', recipient_id: 'r9' }, message_id: /^<.+>$/ });
  t.match(one('ok@a.test', 'delivered'), { status: 'sent', attempt: 1, mx: 'mx1.a.test', remote_ip: '127.0.0.2', response: { code: 250 } });
  t.match(one('user-unknown@a.test', 'failed'), { status: 'failed', cause: 'bounce', response: { code: 550, enhanced: '5.1.1' }, bounce: { class: 10, reason: 'userunknown', category: 'hard', type: 'hard', failure: 'User unknown' } });
  t.match(one('tempfail-1@a.test', 'soft_bounce'), { status: 'taken_into_account', response: { code: 451 }, bounce: { type: 'soft' } });
  t.match(one('tempfail-1000@a.test', 'failed'), { status: 'failed', cause: 'expired', bounce: { reason: 'expired', class: 24 } });
  t.notOk(events.some((e) => 'validity' in e.meta && e.type === 'relayed' && e.recipient === 'ok@a.test'), 'meta is the upstream object');
  t.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event twice');

  const campaign = await get(tern.adminPort, '/api/v1/campaigns/spring');
  t.equal(campaign.status, 200);
  t.match(campaign.body, { id: 'spring', relayed: 4, delivered: 2, failed: { total: 2, hard: 1, soft: 1, expired: 1 }, success_pct: 50, in_progress: 0 });
  t.equal(campaign.body.soft_bounces, events.filter((e) => e.type === 'soft_bounce').length, 'soft bounces as the webhook saw them');
  t.match((await get(tern.adminPort, '/api/v1/deliveries/d1')).body, { relayed: 3, delivered: 2, failed: { total: 1 }, success_pct: 66.67 });
  t.equal((await get(tern.adminPort, '/api/v1/campaigns/nope')).status, 404);
  const logged = readFileSync(eventLog, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as FeedbackEvent).id);
  t.same(logged.sort(), events.map((e) => e.id).sort(), 'feedback.log holds the same events, one JSON line each');
});

t.test('events carry the DSN ENVID and ORCPT the client gave', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const tern = await ternWithWebhook(await receiver.start());
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const { RawSmtp } = await import('../support/smtp-client.ts');
  const { client } = await RawSmtp.open(tern.smtpPort);
  await client.command('EHLO client.test');
  t.match(await client.command('MAIL FROM:<news@campaign.test> ENVID=env-77'), /^250 /);
  t.match(await client.command('RCPT TO:<dsn@a.test> NOTIFY=FAILURE ORCPT=rfc822;dsn@a.test'), /^250 /);
  await client.command('DATA');
  t.match(await client.data(`${message({ to: 'dsn@a.test' })}.\r\n`), /^250 /);
  client.close();
  await until(() => receiver.acknowledged.length >= 2, 5_000);
  t.match(receiver.acknowledged, [{ type: 'relayed', envid: 'env-77', orcpt: 'rfc822;dsn@a.test' }, { type: 'delivered', envid: 'env-77', orcpt: 'rfc822;dsn@a.test' }]);
});

t.test('with the endpoint down, events wait on disk and all arrive once it is back', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const port = await freePort();
  const tern = await ternWithWebhook(`http://127.0.0.1:${port}/events`);
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const rcpts = Array.from({ length: 30 }, (_, i) => `down${i}@a.test`);
  for (let i = 0; i < rcpts.length; i += 10) {
    t.match(await sendMail(tern.smtpPort, 'news@campaign.test', rcpts.slice(i, i + 10), message({ headers: ['X-Tern-Meta: {"campaign":"down"}'] })), /^250 /);
  }
  await until(() => rcpts.every((r) => tern.outcomes(r).some((l) => l.event === 'delivered')), 10_000, 'all delivered while the webhook is down');
  // The log line comes just before the event is made durable: wait for the outbox to have them all.
  const waiting = await until(async () => {
    const q = await get(tern.adminPort, '/api/v1/queue');
    return q.body.feedback.pending === 60 && q;
  }, 5_000, 'relayed + delivered for 30 recipients in the outbox');
  t.equal(waiting.body.feedback.pending, 60, 'relayed + delivered for 30 recipients wait in the outbox');
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await get(tern.adminPort, '/api/v1/queue')).body.feedback.pending, 60, 'and stay there');
  await receiver.start(port);
  await until(() => receiver.acknowledged.length >= 60, 10_000, 'the backlog once the endpoint is up');
  t.equal(new Set(receiver.acknowledged.map((e) => e.id)).size, 60);
  await until(async () => (await get(tern.adminPort, '/api/v1/queue')).body.feedback.pending === 0, 5_000);
  t.match((await get(tern.adminPort, '/api/v1/campaigns/down')).body, { relayed: 30, delivered: 30, success_pct: 100 });
  const metrics = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  t.match(metrics, /tern_events_total\{type="relayed"\} 30/);
  t.match(metrics, /tern_webhook_requests_total\{result="failed"\} [1-9]/, 'the failed attempts are counted');
});

t.test('/readyz turns 503 once events have waited longer than admin.readiness.outbox_stall, and 200 when the endpoint acknowledges', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const port = await freePort();
  const tern = await ternWithWebhook(`http://127.0.0.1:${port}/events`, undefined, { admin: { readiness: { outbox_stall: '400ms' } } });
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const ready = async () => {
    const res = await fetch(`http://127.0.0.1:${tern.adminPort}/readyz`);
    return { status: res.status, body: await res.json() };
  };
  t.match(await ready(), { status: 200, body: { status: 'ready', checks: { outbox: 'ok' } } }, 'nothing waits yet: ready though the endpoint is down');
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['stall@a.test'], message({})), /^250 /);
  const wedged = await until(async () => {
    const r = await ready();
    return r.status === 503 && r;
  }, 10_000, 'not ready once events wait past outbox_stall');
  t.match(wedged.body, { status: 'not ready', checks: { outbox: /events have waited \d+ s with none acknowledged/, spool: 'ok', smtp: 'ok', shards: 'ok' } });
  await receiver.start(port);
  await until(async () => (await ready()).status === 200, 10_000, 'ready again once the endpoint acknowledges');
  t.ok(receiver.acknowledged.length >= 1);
});

t.test('several endpoints each get every event; one that is down holds up nothing', async (t) => {
  const up = new WebhookReceiver(SECRET);
  const later = new WebhookReceiver('other-secret');
  const laterPort = await freePort();
  const spool = shared.tempDir();
  const tern = await startTern(testConfig({
    dnsServer: shared.world.dns.server, deliveryPort: shared.world.port, spoolDir: spool.path,
    feedback: {
      webhook: { url: await up.start(), secret: SECRET, max_wait: '50ms' },
      webhooks: [{ url: `http://127.0.0.1:${laterPort}/events`, secret: 'other-secret', max_wait: '50ms', backoff_max: '200ms' }],
    },
  }));
  t.teardown(async () => {
    await tern.stop();
    await up.stop();
    await later.stop();
  });
  const rcpts = Array.from({ length: 8 }, (_, i) => `multi${i}@a.test`);
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', rcpts, message()), /^250 /);
  await until(() => up.acknowledged.length >= 16, 10_000, 'the live endpoint has every event');
  // Acknowledgements are recorded just after the 2xx: wait for the live endpoint's to be on disk.
  const waiting = await until(async () => {
    const q = await get(tern.adminPort, '/api/v1/queue');
    return q.body.feedback.pending === 16 && q;
  }, 5_000, 'only the other endpoint\'s copy left');
  t.equal(waiting.body.feedback.pending, 16, 'the other endpoint\'s copy waits');
  await later.start(laterPort);
  await until(() => later.acknowledged.length >= 16, 10_000, 'the second endpoint catches up');
  t.same(later.acknowledged.map((e) => e.id).sort(), up.acknowledged.map((e) => e.id).sort(), 'the same events');
  t.ok(later.batches.every((b) => b.signatureValid), 'signed with its own secret');
  t.equal((await get(tern.adminPort, '/api/v1/campaigns/nope')).status, 404);
});

t.test('an endpoint answering 500, then slowly, still gets every event once acknowledged', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  receiver.answer = (n) => (n <= 3 ? { status: 500 } : { status: 200, delayMs: 300 });
  const tern = await ternWithWebhook(await receiver.start());
  t.teardown(async () => {
    await tern.stop();
    await receiver.stop();
  });
  const rcpts = Array.from({ length: 12 }, (_, i) => `slow${i}@a.test`);
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', rcpts, message()), /^250 /);
  await until(() => receiver.acknowledged.length >= 24, 15_000, 'every event acknowledged');
  const per = byRecipient(receiver.acknowledged);
  t.equal(per.size, 12);
  t.ok([...per.values()].every((list) => list.map((e) => e.type).join() === 'relayed,delivered'), 'in order for each recipient');
  t.ok(receiver.batches.filter((b) => b.status === 500).length === 3);
});

t.test('kill -9 mid-stream: after a restart every accepted recipient has one relayed and one final event', async (t) => {
  const { childConfig, spawnTern, streamThroughKill } = await import('../support/child.ts');
  const receiver = new WebhookReceiver(SECRET);
  const url = await receiver.start();
  const spool = shared.tempDir();
  const { configPath, smtpPort, adminPort } = await childConfig(spool.path, shared.world, {
    feedback: { webhook: { url, secret: SECRET, max_batch: 50, max_wait: '20ms', timeout: '2s', backoff_max: '200ms' } },
  });
  const total = 600;
  const accepted = new Map<string, number>();
  let tern = await spawnTern(configPath);
  const send = async (seq: number): Promise<boolean> => {
    const reply = await sendMail(smtpPort, 'a@campaign.test', [`k${seq}a@a.test`, `k${seq}b@a.test`], message({ headers: ['X-Tern-Meta: {"campaign":"crash"}'] })).catch((e: Error) => `error ${e.message}`);
    const id = /queued as ([0-9A-Z]{26})/.exec(reply)?.[1];
    if (id) accepted.set(id, seq);
    return id !== undefined;
  };
  const refused = await streamThroughKill(tern, { total, sessions: 10, killAt: total / 3, send });
  t.equal(await tern.exited, 'SIGKILL');
  tern = await spawnTern(configPath);
  t.teardown(async () => {
    tern.proc.kill('SIGTERM');
    await tern.exited;
    await receiver.stop();
  });
  for (const seq of refused) await send(seq);

  const finalsFor = () => byRecipient(receiver.acknowledged);
  const finalMissing = () => [...accepted.keys()].flatMap((q) => [0, 1].filter((r) => !finalsFor().get(`${q}.${r}`)?.some((e) => e.type === 'delivered' || e.type === 'failed')).map((r) => `${q}.${r}`));
  await until(() => finalMissing().length === 0, 60_000, 'a final event for every accepted recipient').catch(async (err: unknown) => {
    // Say what is missing and what the daemon said of it, so a failure in CI can be read.
    const missing = finalMissing();
    const ids = new Set(missing.map((m) => m.split('.')[0]));
    t.comment(`no final event for ${missing.length}: ${missing.slice(0, 10).join(', ')}; queue: ${JSON.stringify((await get(adminPort, '/api/v1/queue')).body)}`);
    t.comment(JSON.stringify(tern.lines.filter((l) => ids.has(String(l.queue_id))).slice(0, 20)));
    throw err;
  });
  await until(async () => (await get(adminPort, '/api/v1/queue')).body.feedback.pending === 0, 10_000, 'the outbox drained');

  const per = finalsFor();
  const problems: string[] = [];
  let duplicates = 0;
  for (const [key, list] of per) {
    const ids = list.map((e) => e.id);
    duplicates += ids.length - new Set(ids).size;
    const relayed = new Set(list.filter((e) => e.type === 'relayed').map((e) => e.id));
    const finals = new Set(list.filter((e) => e.type === 'delivered' || e.type === 'failed').map((e) => e.id));
    if (relayed.size !== 1 || finals.size !== 1) problems.push(`${key}: ${list.map((e) => e.type).join(',')}`);
  }
  t.same(problems, [], 'exactly one relayed and one final event (by id) per recipient');
  t.ok([...accepted.keys()].every((q) => per.has(`${q}.0`) && per.has(`${q}.1`)), 'no accepted recipient is missing');
  t.ok(receiver.batches.every((b) => b.signatureValid));
  const recoveries = tern.lines.filter((l) => String(l.msg).startsWith('recovery:')).map((l) => String(l.msg).split(';')[0]);
  t.comment(`kill -9 at message ${total / 3}: ${accepted.size} messages accepted, ${per.size} recipients with events, ${duplicates} duplicate deliveries of an event id; reconciled at start: ${JSON.stringify(recoveries)}`);
  // A duplicate can only be an event whose batch the endpoint answered just before the kill.
  t.ok(duplicates <= 50 * 4, `duplicates bounded by the batches in flight (${duplicates})`);
  const kpi = (await get(adminPort, '/api/v1/campaigns/crash')).body;
  t.equal(kpi.relayed, per.size, `KPIs count each recipient once, across the crash: ${JSON.stringify(kpi)}`);
  t.equal(kpi.delivered + kpi.failed.total, per.size);
});
