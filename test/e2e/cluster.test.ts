import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import t from 'tap';
import { redacted } from '../../src/cluster/index.ts';
import { validateConfig } from '../../src/config/index.ts';
import { adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
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
  redisProcess = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  await until(async () => probe.connect().then(() => probe.ping()).then(() => true, () => { probe.disconnect(); return false; }), 10_000, 'redis-server to answer');
  probe.disconnect();
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
  redisProcess?.kill('SIGKILL');
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

t.test('Redis killed: the node carries on and says so; Redis back: it rejoins', async (t) => {
  const n1 = nodes[0] as RunningTern;
  redisProcess?.kill('SIGKILL');
  await until(async () => (await metric(n1, 'tern_cluster_redis_up')) === 0, 10_000, 'Redis seen gone');
  const ready = await adminFetch(n1.adminPort, '/readyz');
  t.equal(ready.status, 200, 'still ready: Redis gone is no reason to stop sending');
  t.match(await ready.json(), { status: 'ready', checks: { cluster: /^degraded: Redis unreachable since .*this node carries on alone/ } });
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
