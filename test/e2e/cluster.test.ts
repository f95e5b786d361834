import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import t from 'tap';
import { pino } from 'pino';
import { FleetLimiter, openBoard, redacted, shareOf, type BoardEntry } from '../../src/cluster/index.ts';
import { systemClock } from '../../src/lib/clock.ts';
import type { GrantRequest, PathSettings } from '../../src/model/path.ts';
import { Limiter } from '../../src/shaping/index.ts';
import { validateConfig } from '../../src/config/index.ts';
import { adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
import { killRedis, startRedis as startRedisServer } from '../support/redis.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { worldForFile } from '../support/world.ts';

/**
 * A fleet's membership (docs/scaling.md) against Debian's redis-server on loopback: nodes see
 * each other, one that leaves or lapses is gone, and with Redis killed a node carries on (mail
 * still goes), says so in /readyz and the metrics, and rejoins when Redis is back.
 */
const files = worldForFile(t);
let redisPort: number;
let redisProcess: ChildProcess | undefined;
const nodes: RunningTern[] = [];

async function startRedis(): Promise<void> {
  redisProcess = await startRedisServer(redisPort);
}

async function node(name: string): Promise<RunningTern> {
  const spool = files.tempDir();
  const tern = await startTern(testConfig({
    dnsServer: files.world.dns.server, deliveryPort: files.world.port, spoolDir: spool.path,
    cluster: { redis: `redis://127.0.0.1:${redisPort}`, prefix: 'test:', node: name },
  }));
  nodes.push(tern);
  return tern;
}

const cluster = async (tern: RunningTern) => (await (await adminFetch(tern.adminPort, '/api/v1/cluster')).json()) as { enabled: boolean; node: string; redis: { state: string }; nodes: { name: string }[] };
const names = async (tern: RunningTern): Promise<string> => (await cluster(tern)).nodes.map((n) => n.name).sort().join(',');
const metric = async (tern: RunningTern, name: string): Promise<number | undefined> => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await adminFetch(tern.adminPort, '/metrics')).text());
  return m ? Number(m[1]) : undefined;
};

t.before(async () => {
  redisPort = await freePort();
  await startRedis();
});
t.teardown(async () => {
  for (const n of nodes) await n.stop().catch(() => undefined);
  await killRedis(redisProcess);
});

t.test('the config names what is wrong; the API and logs never show a password', async (t) => {
  const bad = validateConfig({ cluster: { redis: 'http://x', node: 'has space' } }, 'test', process.cwd());
  t.match(bad, { ok: false, problems: [{ path: 'cluster.redis' }, { path: 'cluster.node' }] });
  t.equal(redacted('redis://user:secret@h:6379/0'), 'redis://user:***@h:6379/0');
  t.equal(redacted('rediss://:secret@h:6379'), 'rediss://:***@h:6379');
  t.equal(redacted('redis://h:6379'), 'redis://h:6379');
});

t.test('nodes see each other; one that leaves is gone at once, one that stops answering lapses', async (t) => {
  const n1 = await node('n1');
  const n2 = await node('n2');
  await until(async () => (await names(n1)) === 'n1,n2' && (await names(n2)) === 'n1,n2', 10_000, 'both nodes listed by both');
  t.match(await cluster(n1), { enabled: true, node: 'n1', redis: { state: 'connected' } });
  t.equal(await metric(n1, 'tern_cluster_redis_up'), 1);
  await until(async () => (await metric(n1, 'tern_cluster_nodes')) === 2, 5_000, 'the nodes gauge');
  t.match(await (await adminFetch(n1.adminPort, '/readyz')).json(), { status: 'ready', checks: { cluster: 'ok' } });

  await n2.stop();
  nodes.splice(nodes.indexOf(n2), 1);
  await until(async () => (await names(n1)) === 'n1', 5_000, 'n2 left the fleet');

  // A node that crashed: registered, then silent. Its entry lapses at its expiry.
  const raw = new Redis({ port: redisPort, host: '127.0.0.1' });
  const [seconds, micros] = (await raw.time()) as [number, number];
  await raw.zadd('test:nodes', Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + 3_000, 'ghost');
  await until(async () => (await names(n1)) === 'ghost,n1', 5_000, 'the ghost seen');
  await until(async () => (await names(n1)) === 'n1', 10_000, 'the ghost lapsed');
  raw.disconnect();
});

const SETTINGS: PathSettings = {
  max_connections: 4, max_messages_per_connection: 100, max_message_rate: { count: 20, perMs: 1_000 }, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 1_000, greeting_timeout: 1_000, idle_timeout: 1_000, tls: 'may',
};

/** A node's limiter on one Redis connection; `up` says whether Redis counts as reachable. */
function fleetNode(name: string, state: { up: boolean; live: number }, prefix: string): { limiter: FleetLimiter; redis: Redis } {
  const redis = new Redis({ port: redisPort, host: '127.0.0.1', enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  const limiter = new FleetLimiter({
    redis, prefix, node: name, shared: () => state.up, liveNodes: () => state.live, fallback: new Limiter(() => Date.now()),
    clock: systemClock, log: pino({ level: 'silent' }), limits: { leaseTtlMs: 1_500, renewMs: 300, leaseIdleMs: 300 },
  });
  limiter.configure('default|mx.limited.test', SETTINGS);
  return { limiter, redis };
}

/** Ask until `want` are granted or the deadline passes, as a pool told "ask again at retryAt" does. */
async function take(limiter: FleetLimiter, kind: GrantRequest['kind'], want: number, withinMs: number): Promise<number> {
  let got = 0;
  const until = Date.now() + withinMs;
  while (got < want && Date.now() < until) {
    const [grant] = limiter.acquire([{ path: 'default|mx.limited.test', kind, count: want - got }]);
    got += grant?.granted ?? 0;
    if (got < want) await new Promise((r) => setTimeout(r, Math.max(5, Math.min(50, (grant?.retryAt ?? Date.now() + 20) - Date.now()))));
  }
  return got;
}

t.test('shared limits: connection leases fleet-wide, a stopped node\'s leases lapse, message rate shared', async (t) => {
  await until(async () => (await cluster(nodes[0] as RunningTern)).redis.state === 'connected', 10_000, 'Redis up');
  const state = { up: true, live: 2 };
  const a = fleetNode('a', state, 'fleet1:');
  const b = fleetNode('b', state, 'fleet1:');
  t.teardown(() => { a.redis.disconnect(); b.redis.disconnect(); });
  a.limiter.start();
  b.limiter.start();
  t.equal(await take(a.limiter, 'connection', 3, 2_000), 3, 'node a leases 3 of the path\'s 4 connections');
  t.equal(await take(b.limiter, 'connection', 3, 700), 1, 'node b gets the one left, not 3');
  a.limiter.release('default|mx.limited.test', 3);
  t.equal(await take(b.limiter, 'connection', 2, 5_000), 2, 'a released and its idle leases went back: b gets 2 more');

  await Promise.all([a.limiter.stop(), b.limiter.stop()]);

  // A node that crashes stops renewing and gives nothing back: its leases lapse (1.5 s here).
  const crashed = fleetNode('crashed', state, 'fleet2:');
  t.equal(await take(crashed.limiter, 'connection', 4, 2_000), 4, 'a node holds every connection of a path...');
  crashed.redis.disconnect();
  const other = fleetNode('other', state, 'fleet2:');
  t.teardown(() => other.redis.disconnect());
  t.equal(await take(other.limiter, 'connection', 1, 300), 0, '...so another gets none');
  t.equal(await take(other.limiter, 'connection', 4, 5_000), 4, 'until the silent node\'s leases lapse');

  // Messages: 20/s with a burst of 20, asked for by two nodes at once for a second.
  const m1 = fleetNode('m1', state, 'fleet3:');
  const m2 = fleetNode('m2', state, 'fleet3:');
  t.teardown(() => { m1.redis.disconnect(); m2.redis.disconnect(); });
  const [x, y] = await Promise.all([take(m1.limiter, 'message', 1_000, 1_000), take(m2.limiter, 'message', 1_000, 1_000)]);
  t.ok(x + y >= 30 && x + y <= 45, `the fleet sent ${x} + ${y} = ${x + y} in a second at 20/s (burst 20): one limit, not two`);
  t.ok(x > 0 && y > 0, 'both nodes got some');
});

t.test('nodes that want a path at once split its connections; a node alone may take them all', async (t) => {
  const state = { up: true, live: 2 };
  const a = fleetNode('a', state, 'fleet6:');
  const b = fleetNode('b', state, 'fleet6:');
  t.teardown(() => { a.redis.disconnect(); b.redis.disconnect(); });
  const [x, y] = await Promise.all([take(a.limiter, 'connection', 4, 1_500), take(b.limiter, 'connection', 4, 1_500)]);
  t.same([x, y], [2, 2], 'each gets half of 4, not the first all of them');
  const alone = fleetNode('alone', state, 'fleet7:');
  t.teardown(() => alone.redis.disconnect());
  t.equal(await take(alone.limiter, 'connection', 4, 1_500), 4, 'with nobody else wanting, one node takes the whole limit (in two asks)');
});

t.test('with Redis away, each node holds its share of each limit', async (t) => {
  const state = { up: false, live: 2 };
  const a = fleetNode('a', state, 'fleet4:');
  t.teardown(() => a.redis.disconnect());
  t.equal(await take(a.limiter, 'connection', 4, 300), 2, 'half of 4 connections, for one of two live nodes');
  t.same(shareOf(SETTINGS, 3).max_message_rate, { count: 20 / 3, perMs: 1_000 }, 'rates divide too');
  t.equal(shareOf(SETTINGS, 8).max_connections, 1, 'never below one connection');
  a.limiter.release('default|mx.limited.test', 2);
  t.equal(a.limiter.leases('default|mx.limited.test'), 0, 'released to the limiter that granted them');
});

t.test('the board: an entry one node posts reaches the others now and nodes that come later; the later entry wins', async (t) => {
  const open = (name: string) => {
    const redis = new Redis({ port: redisPort, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    const board = openBoard({ redis, prefix: 'board1:', node: name, clock: systemClock, log: pino({ level: 'silent' }) });
    const heard: BoardEntry[] = [];
    board.on('effects', (e) => heard.push(e));
    t.teardown(async () => { await board.stop(); redis.disconnect(); });
    return { board, heard, redis };
  };
  const a = open('a');
  const b = open('b');
  await Promise.all([a.board.start(), b.board.start()]);
  a.board.post('effects', 'path\nrule', { v: 1 }, Date.now() + 60_000);
  // Heard once or twice (published, and read again when its connection came up): taking an entry twice changes nothing.
  await until(() => b.heard.length >= 1, 5_000, 'b hears a\'s entry');
  t.match(b.heard[0], { topic: 'effects', key: 'path\nrule', value: { v: 1 }, from: 'a' });
  t.equal(a.heard.length, 0, 'a node does not hear itself');
  // An entry already over when it arrives means nothing: no node takes it, none reads it later.
  a.board.post('effects', 'gone', { v: 0 }, Date.now() - 1);

  // An entry made earlier (a node that was cut off, posting again) never undoes a later one.
  b.board.post('effects', 'path\nrule', { v: 2 }, Date.now() + 60_000);
  await until(() => a.heard.some((e) => (e.value as { v: number }).v === 2), 5_000, 'a hears b\'s newer entry');
  const raw = new Redis({ port: redisPort, host: '127.0.0.1' });
  t.teardown(() => raw.disconnect());
  await raw.eval(`redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])`, 1, 'board1:board:effects', 'stale-check', '{}');
  const late = open('late');
  await late.board.start();
  await until(() => late.heard.length >= 1, 5_000, 'a node that joins later reads what is in force');
  t.same([...new Set(late.heard.map((e) => (e.value as { v: number }).v))], [2], 'only the live, well-formed entry: the later one; the lapsed and the malformed are dropped');

  // Tallies: each node's absolute counts; each reads the others' sum.
  t.same(await a.board.tally('warmup:ip2:2026-12-06', { sent: 5, 'p:gmail': 2 }, 60_000), {}, 'nobody else yet');
  t.same(await b.board.tally('warmup:ip2:2026-12-06', { sent: 3 }, 60_000), { sent: 5, 'p:gmail': 2 });
  t.same(await a.board.tally('warmup:ip2:2026-12-06', { sent: 6, 'p:gmail': 2 }, 60_000), { sent: 3 }, 'a count set again is not added twice');
  t.same(await late.board.tally('warmup:ip2:2026-12-06', {}, 60_000), { sent: 9, 'p:gmail': 2 });
});

t.test('two nodes sending to one receiver hold its connection limit between them, not each', async (t) => {
  const sink = await files.world.addSink('127.0.0.4', { patience: { dataDelayMs: 120 } });
  const fleet = async (name: string, prefix: string): Promise<RunningTern> => {
    const spool = files.tempDir();
    const tern = await startTern(testConfig({
      dnsServer: files.world.dns.server, deliveryPort: files.world.port, spoolDir: spool.path,
      shaping: { defaults: { max_connections: 3, max_messages_per_connection: 4 } },
      ...(prefix ? { cluster: { redis: `redis://127.0.0.1:${redisPort}`, prefix, node: name } } : {}),
    }));
    t.teardown(() => tern.stop());
    return tern;
  };
  async function burst(terns: RunningTern[], tag: string): Promise<number> {
    sink.stats.peakSessions = 0;
    const sends = terns.flatMap((tern, n) => Array.from({ length: 24 }, (_, i) => sendMail(tern.smtpPort, 'news@campaign.test', [`${tag}${n}-${i}@slow.test`], message({ to: `${tag}${n}-${i}@slow.test` }))));
    await Promise.all(sends);
    await until(() => terns.every((tern, n) => Array.from({ length: 24 }, (_, i) => `${tag}${n}-${i}@slow.test`).every((r) => tern.outcomes(r).some((l) => l.event === 'delivered'))), 30_000, `${tag}: every message delivered`);
    return sink.stats.peakSessions;
  }
  const [a, b] = [await fleet('fa', 'fleet5:'), await fleet('fb', 'fleet5:')];
  const shared = await burst([a, b], 'shared');
  t.ok(shared <= 3, `with the fleet: at most 3 sessions at once at the receiver (peak ${shared})`);
  const [c, d] = [await fleet('alone1', ''), await fleet('alone2', '')];
  const alone = await burst([c, d], 'alone');
  t.ok(alone > 3, `the same two nodes without the fleet open more (peak ${alone}): the check can fail`);
});

t.test('Redis killed: the node carries on and says so; Redis back: it rejoins', async (t) => {
  const n1 = nodes[0] as RunningTern;
  await killRedis(redisProcess);
  await until(async () => (await metric(n1, 'tern_cluster_redis_up')) === 0, 10_000, 'Redis seen gone');
  const ready = await adminFetch(n1.adminPort, '/readyz');
  t.equal(ready.status, 200, 'still ready: Redis gone is no reason to stop sending');
  t.match(await ready.json(), { status: 'ready', checks: { cluster: /^degraded: Redis unreachable since .*each limit at this node's share \(1\/1\)/ } });
  t.match(await cluster(n1), { redis: { state: 'unreachable' } });
  t.ok(n1.logs.some((l) => /cluster: Redis unreachable/.test(String(l.msg))), 'logged');
  t.match(await sendMail(n1.smtpPort, 'news@campaign.test', ['during@a.test'], message({ to: 'during@a.test' })), /^250 /, 'mail is accepted');
  await until(() => n1.outcomes('during@a.test').some((l) => l.event === 'delivered'), 10_000, 'and delivered');

  await startRedis();
  await until(async () => (await metric(n1, 'tern_cluster_redis_up')) === 1, 15_000, 'Redis seen back');
  await until(async () => (await names(n1)) === 'n1', 5_000, 'registered again');
  t.match(await (await adminFetch(n1.adminPort, '/readyz')).json(), { checks: { cluster: 'ok' } });
});

t.test('without cluster.redis, a single node as before', async (t) => {
  const spool = files.tempDir();
  const alone = await startTern(testConfig({ dnsServer: files.world.dns.server, deliveryPort: files.world.port, spoolDir: spool.path }));
  t.teardown(() => alone.stop());
  t.same(await (await adminFetch(alone.adminPort, '/api/v1/cluster')).json(), { enabled: false });
  const readyz = (await (await adminFetch(alone.adminPort, '/readyz')).json()) as { checks: Record<string, string> };
  t.notOk('cluster' in readyz.checks, 'no cluster check');
});
