/**
 * ADR 0010's consequences, end to end with two shards (`tuning.threads: 2`): the real daemon in
 * worker threads sharing one SMTP port, against loopback sinks, a real webhook receiver, and a
 * real `kill -9`. Each test also checks that both shards did some of the work, so none of them
 * could pass with one shard doing everything.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { childConfig, spawnTern, streamThroughKill } from '../support/child.ts';
import { adminFetch, startTern, tempDir, testConfig, type LogLine, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

t.setTimeout(240_000);
const SECRET = 'shards-secret';
const LIMITED = '127.0.0.6'; // refuses sessions above 3; the rule allows 2
const LATER = '127.0.0.7'; // no receiver until a test starts one
let world: World;
const dirs: { remove(): void }[] = [];

t.before(async () => {
  const zone = {
    ...STANDARD_ZONE,
    'limited.test': { mx: [{ exchange: 'mx.limited.test', priority: 10 }] },
    'mx.limited.test': { a: [LIMITED] },
    'later.test': { mx: [{ exchange: 'mx.later.test', priority: 10 }] },
    'mx.later.test': { a: [LATER] },
  };
  world = await startWorld(zone, ['127.0.0.2'], [LIMITED, LATER]);
  await world.addSink(LIMITED, { patience: { maxSessions: 3, dataDelayMs: 30 } });
});
t.teardown(async () => {
  await world.close();
  for (const d of dirs) d.remove();
});

function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d.path;
}

async function twoShards(extra: Record<string, unknown> = {}): Promise<RunningTern> {
  const tern = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(dir(), 'spool'), tuning: { threads: 2 }, ...extra }));
  t.teardown(() => tern.stop());
  return tern;
}

/** `n` messages to `prefix<k>@domain` (two recipients each when `pairs`), over `sessions` connections at once. */
async function inject(port: number, domain: string, n: number, prefix: string, opts: { pairs?: boolean; sessions?: number; headers?: string[] } = {}): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: opts.sessions ?? 8 }, async () => {
    while (next < n) {
      const k = next++;
      const rcpts = opts.pairs ? [`${prefix}${k}a@${domain}`, `${prefix}${k}b@${domain}`] : [`${prefix}${k}@${domain}`];
      const reply = await sendMail(port, 'news@campaign.test', rcpts, message({ to: rcpts[0], headers: opts.headers ?? [] }));
      const id = /queued as ([0-9A-Z]{26})/.exec(reply)?.[1];
      if (!id) throw new Error(`refused: ${reply}`);
      ids.push(id);
    }
  }));
  return ids;
}

const shardsOf = (lines: readonly LogLine[], event: string): Set<unknown> => new Set(lines.filter((l) => l.event === event).map((l) => l.shard));

const metric = (body: string, series: string): number => Number(body.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1]);

t.test('two shards: each event reaches the webhook once, and /metrics, the queue, KPIs and the event log add up', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const url = await receiver.start();
  t.teardown(() => receiver.stop());
  const eventLog = join(dir(), 'events.jsonl');
  const tern = await twoShards({ feedback: { webhook: { url, secret: SECRET, max_batch: 25, max_wait: '20ms' }, log: { path: eventLog } } });
  const messages = 40;
  await inject(tern.smtpPort, 'a.test', messages, 'm', { pairs: true, headers: ['X-Tern-Meta: {"campaign":"sharded"}'] });
  const recipients = messages * 2;
  await until(() => receiver.acknowledged.filter((e) => e.type === 'delivered').length >= recipients, 30_000, 'a delivered event for every recipient');

  const events = receiver.acknowledged;
  const ids = events.map((e) => e.id);
  t.equal(new Set(ids).size, ids.length, 'no event arrived twice');
  t.equal(events.filter((e) => e.type === 'relayed').length, recipients, 'one relayed event a recipient');
  t.equal(events.filter((e) => e.type === 'delivered').length, recipients, 'one delivered event a recipient');
  t.ok(receiver.batches.every((b) => b.signatureValid), 'every batch signed');
  t.same([...shardsOf(tern.logs, 'delivered')].sort(), [0, 1], 'both shards delivered mail');

  const body = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  t.equal(metric(body, 'tern_messages_accepted_total'), messages, 'accepted: the sum over shards');
  t.equal(metric(body, 'tern_recipients_accepted_total'), recipients);
  t.equal(metric(body, 'tern_delivery_attempts_total{verdict="delivered"}'), recipients);
  t.equal(metric(body, 'tern_events_total{type="relayed"}'), recipients);
  t.equal(metric(body, 'tern_events_total{type="delivered"}'), recipients);
  t.equal(metric(body, 'tern_queue_recipients'), 0);
  t.equal(body.split('\n').filter((l) => l.startsWith('# TYPE tern_process_process_resident_memory_bytes ')).length, 1, 'process metrics once, not once a shard');
  t.ok(metric(body, 'tern_process_process_resident_memory_bytes') > 0);

  const kpi = await (await adminFetch(tern.adminPort, '/api/v1/campaigns/sharded')).json() as { relayed: number; delivered: number; success_pct: number };
  t.match(kpi, { relayed: recipients, delivered: recipients, success_pct: 100 }, 'KPIs summed over shards');
  const queue = await (await adminFetch(tern.adminPort, '/api/v1/queue')).json() as { recipients: number; feedback: { pending: number } };
  t.equal(queue.recipients, 0);
  await until(() => readFileSync(eventLog, 'utf8').trim().split('\n').length >= recipients * 2, 5_000, 'the event log');
  const logged = readFileSync(eventLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FeedbackEvent);
  t.equal(new Set(logged.map((e) => e.id)).size, recipients * 2, 'one event log, every event of both shards in it');
});

t.test('a receiver that refuses above 3 sessions, a rule of 2: two shards together never open a third', async (t) => {
  const rules = join(dir(), 'rules.yaml');
  writeFileSync(rules, 'domains:\n  - { domain: limited.test, max_connections: 2 }\n');
  const tern = await twoShards({ shaping: { rules_file: rules } });
  const sink = world.sinks.get(LIMITED)!;
  const rcpts = (await inject(tern.smtpPort, 'limited.test', 60, 'l', { sessions: 10 })).length;
  await until(() => sink.received.length >= rcpts, 30_000, `${rcpts} deliveries to limited.test`);
  t.equal(sink.stats.refused, 0, 'no session refused');
  t.ok(sink.stats.peakSessions <= 3, `at most 2 sessions, and the one closing (peak ${sink.stats.peakSessions})`);
  t.same([...shardsOf(tern.logs, 'delivered')].sort(), [0, 1], 'both shards delivered to it');

  // SIGHUP: a site rule of one connection reaches both shards; a broken file changes nothing.
  writeFileSync(rules, 'domains:\n  - { domain: limited.test, max_connections: 1 }\n');
  t.same(tern.daemon.reload(), { ok: true, problems: [], applied: [], restart: [] });
  sink.stats.peakSessions = sink.stats.sessions;
  await inject(tern.smtpPort, 'limited.test', 30, 'one', { sessions: 10 });
  await until(() => sink.received.length >= rcpts + 30, 30_000, 'the deliveries after the reload');
  t.ok(sink.stats.peakSessions <= 2, `one connection across shards, and the one closing (peak ${sink.stats.peakSessions})`);
  writeFileSync(rules, 'domains:\n  - { domain: limited.test, max_connections: many }\n');
  const broken = tern.daemon.reload();
  t.equal(broken.ok, false);
  t.match(broken.problems, [/shaping\.rules_file: domains\[0\]\.max_connections/]);
  const site = await (await adminFetch(tern.adminPort, '/api/v1/sites/mx.limited.test')).json() as { paths: { limits: Record<string, { value: unknown }> }[] };
  t.match(site.paths.find((p) => p.limits.max_connections?.value === 1), { limits: { max_connections: { value: 1 } } }, 'the rules in force stay');
});

t.test('kill -9 with two shards: every 250 reaches the sink, every recipient gets one relayed and one final event', async (t) => {
  const receiver = new WebhookReceiver(SECRET);
  const url = await receiver.start();
  t.teardown(() => receiver.stop());
  const spool = dir();
  const { configPath, smtpPort } = await childConfig(spool, world, {
    tuning: { threads: 2 },
    feedback: { webhook: { url, secret: SECRET, max_batch: 50, max_wait: '20ms', timeout: '2s', backoff_max: '200ms' } },
  });
  const total = 900;
  const accepted = new Map<string, number>();
  let tern = await spawnTern(configPath);
  const send = async (seq: number): Promise<boolean> => {
    const to = `k${seq}@a.test`;
    const reply = await sendMail(smtpPort, 'a@campaign.test', [to], message({ to, headers: [`X-Seq: ${seq}`] })).catch((e: Error) => `error ${e.message}`);
    const id = /queued as ([0-9A-Z]{26})/.exec(reply)?.[1];
    if (id) accepted.set(id, seq);
    return id !== undefined;
  };
  const refused = await streamThroughKill(tern, { total, sessions: 10, killAt: total / 3, send });
  t.equal(await tern.exited, 'SIGKILL');
  // Both partitions hold mail at the kill (whether each had delivered yet is the kernel's and the receiver's timing).
  t.same([...new Set(tern.lines.filter((l) => l.event === 'accepted').map((l) => l.shard))].sort(), [0, 1], 'both shards had taken mail when it died');
  tern = await spawnTern(configPath);
  t.teardown(async () => {
    tern.proc.kill('SIGTERM');
    await tern.exited;
  });
  for (const seq of refused) await send(seq);

  const seen = () => world.sinks.get('127.0.0.2')!.received.flatMap((m) => {
    const match = /\r\nX-Seq: (\d+)\r\n/.exec(m.data.toString());
    return match ? [Number(match[1])] : [];
  });
  await until(() => { const s = new Set(seen()); return [...accepted.values()].every((q) => s.has(q)); }, 60_000, 'every accepted message at the sink');
  const finalOf = (events: readonly FeedbackEvent[]) => new Set(events.filter((e) => e.type === 'delivered' || e.type === 'failed').map((e) => e.queue_id));
  await until(() => { const f = finalOf(receiver.acknowledged); return [...accepted.keys()].every((id) => f.has(id)); }, 60_000, 'a final event for every accepted message');
  const problems: string[] = [];
  for (const id of accepted.keys()) {
    const mine = receiver.acknowledged.filter((e) => e.queue_id === id);
    const relayed = new Set(mine.filter((e) => e.type === 'relayed').map((e) => e.id));
    const finals = new Set(mine.filter((e) => e.type === 'delivered' || e.type === 'failed').map((e) => e.id));
    if (relayed.size !== 1 || finals.size !== 1) problems.push(`${id}: ${mine.map((e) => e.type).join(',')}`);
  }
  t.same(problems, [], 'exactly one relayed and one final event (by id) per accepted recipient');
  t.equal(accepted.size, total, 'every message accepted once the daemon was back');
  const counts = new Map<number, number>();
  for (const s of seen()) counts.set(s, (counts.get(s) ?? 0) + 1);
  const duplicates = [...counts.values()].reduce((sum, c) => sum + c - 1, 0);
  t.comment(`kill -9 at message ${total / 3} with 2 shards: ${seen().length} deliveries for ${accepted.size} messages, ${duplicates} duplicate deliveries`);
  t.ok(duplicates <= 100, `duplicate deliveries bounded by the transactions in flight (${duplicates})`);
});

t.test('from two shards down to one: the single loop adopts shard 1\'s partition and delivers its mail once', async (t) => {
  const spool = dir();
  const base = { dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool, delivery: { retry: { base: '200ms', max: '400ms', jitter: 0 } } };
  const first = await startTern(testConfig({ ...base, tuning: { threads: 2 } }));
  const rcpts = (await inject(first.smtpPort, 'later.test', 30, 'later')).length;
  // Nobody answers at later.test yet: both shards hold deferred mail.
  await until(() => shardsOf(first.logs, 'retry').size === 2, 10_000, 'deferrals in both shards');
  await first.stop();
  const sink = await world.addSink(LATER);
  const second = await startTern(testConfig({ ...base, tuning: { threads: 1 } }));
  t.teardown(() => second.stop());
  t.ok(second.logs.some((l) => /recovering the spool partitions of a run with more threads/.test(l.msg) && JSON.stringify(l.adopted) === '[1]'), 'shard 1\'s partition adopted');
  await until(() => sink.received.length >= rcpts, 20_000, `${rcpts} deliveries to later.test`);
  const to = sink.received.flatMap((m) => m.rcptTo);
  t.equal(new Set(to).size, rcpts, 'every message delivered');
  t.equal(to.length, rcpts, 'none twice');
});

t.test('a drain closes every shard\'s SMTP listener; deliveries in progress finish', async (t) => {
  const tern = await twoShards();
  const sink = world.sinks.get(LIMITED);
  if (sink) sink.patience.dataDelayMs = 400;
  t.teardown(() => {
    if (sink) sink.patience.dataDelayMs = 30;
  });
  const rcpts = Array.from({ length: 6 }, (_, k) => `drain${k}@limited.test`);
  await inject(tern.smtpPort, 'limited.test', 6, 'drain');
  await until(() => (sink?.stats.sessions ?? 0) > 0, 10_000, 'deliveries under way');
  const started = await adminFetch(tern.adminPort, '/api/v1/drain', { method: 'POST' });
  t.match(await started.json(), { draining: true });
  t.equal((await adminFetch(tern.adminPort, '/readyz')).status, 503, 'not ready: the balancer moves on');
  // Both shards listen on the port (SO_REUSEPORT): a connection refused means every one closed.
  const refused = await new Promise<string>((resolve) => connect(tern.smtpPort, '127.0.0.1').once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')).once('connect', () => resolve('connected')));
  t.equal(refused, 'ECONNREFUSED');
  await until(async () => ((await (await adminFetch(tern.adminPort, '/api/v1/drain')).json()) as { finished: boolean }).finished, 30_000, 'the drain finished');
  t.ok(rcpts.every((r) => tern.outcomes(r).some((l) => l.event === 'delivered')), 'every accepted message delivered');
  t.ok(tern.logs.some((l) => l.action === 'drain' || /draining/.test(l.msg)), 'logged');
});
