import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { childConfig, spawnTern, type TernProcess } from '../support/child.ts';
import { adminFetch, tempDir } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
import { killRedis, startRedis } from '../support/redis.ts';
import type { Sink } from '../support/sink.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

/**
 * A fleet as an operator runs one (docs/scaling.md): three real `tern start` processes sharing
 * Debian's redis-server, all sending from one address (127.0.0.1) to receivers on loopback that
 * allow N sessions and R messages a second from it. The fleet as a whole keeps to them; a
 * throttle one node sees slows the others; a node killed with -9 gives its connections back by
 * their lapse and loses nothing; without Redis each node keeps to its share, and with Redis back
 * the limits are shared again; a suspension made on one node holds on all; a node drains for an
 * upgrade. Every event says which node sent it.
 */
const N = 3;
const R = 20;
const RULES = `
adaptive:
  - { id: slow-down, match: '\\[TSS04\\]', action: { lower: { max_message_rate: 4/s } }, duration: 10m, recover: { every: 10m, step: 10% } }
`;
const ZONE = {
  ...STANDARD_ZONE,
  'fleet.test': { mx: [{ exchange: 'mx.fleet.test', priority: 10 }] },
  'mx.fleet.test': { a: ['127.0.0.21'] },
  'hold.test': { mx: [{ exchange: 'mx.hold.test', priority: 10 }] },
  'mx.hold.test': { a: ['127.0.0.22'] },
  'signal.test': { mx: [{ exchange: 'mx.signal.test', priority: 10 }] },
  'mx.signal.test': { a: ['127.0.0.23'] },
};

// Three daemons started and stopped several times over, beside the rest of the suite on two cores.
t.setTimeout(300_000);

interface Node { readonly name: string; readonly configPath: string; readonly smtpPort: number; readonly adminPort: number; tern: TernProcess }

let world: World;
let redisPort: number;
let redis: ChildProcess | undefined;
const webhook = new WebhookReceiver('fleet');
const dirs: { remove(): void }[] = [];
const nodes: Node[] = [];
let fleet: Sink;
let hold: Sink;
let signal: Sink;

async function startNode(name: string): Promise<Node> {
  const dir = tempDir();
  dirs.push(dir);
  writeFileSync(join(dir.path, 'shaping.yaml'), RULES);
  const { configPath, smtpPort, adminPort } = await childConfig(dir.path, world, {
    cluster: { redis: `redis://127.0.0.1:${redisPort}`, prefix: 'fleet:', node: name },
    shaping: { rules_file: join(dir.path, 'shaping.yaml'), default_rules: false, defaults: { max_connections: N, max_message_rate: `${R}/s` } },
    feedback: { webhook: { url: webhook.url, secret: 'fleet', max_wait: '20ms' } },
  });
  const node: Node = { name, configPath, smtpPort, adminPort, tern: await spawnTern(configPath) };
  nodes.push(node);
  return node;
}

const get = async <T>(node: Node, path: string): Promise<T> => (await (await adminFetch(node.adminPort, path)).json()) as T;
const post = async (node: Node, path: string, body: unknown): Promise<Response> =>
  adminFetch(node.adminPort, path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const clusterOf = (node: Node) => get<{ redis: { state: string }; nodes: { name: string; info: { draining?: boolean } }[] }>(node, '/api/v1/cluster');

/** Relay one message per recipient through a node, a few sessions at once, as a campaign tool does. */
async function relay(node: Node, rcpts: readonly string[]): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (next < rcpts.length) {
      const to = rcpts[next++] as string;
      const reply = await sendMail(node.smtpPort, 'news@campaign.test', [to], message({ to }));
      if (!reply.startsWith('250')) throw new Error(`${node.name} refused ${to}: ${reply}`);
    }
  }));
}

const addresses = (tag: string, n: number, domain: string): string[] => Array.from({ length: n }, (_, i) => `${tag}-${i}@${domain}`);
const deliveredBy = (rcpt: string): string | undefined => webhook.acknowledged.find((e) => e.recipient === rcpt && e.type === 'delivered')?.node;
const allDelivered = (rcpts: readonly string[], within: number, what: string) => until(() => rcpts.every((r) => deliveredBy(r) !== undefined), within, what);

t.before(async () => {
  world = await startWorld(ZONE, [], ['127.0.0.21', '127.0.0.22', '127.0.0.23']);
  // R a second with a burst of R, over any 5 s: what the fleet's GCRA allows at most.
  fleet = await world.addSink('127.0.0.21', { patience: { maxSessions: N, rate: { count: 6 * R, windowMs: 5_000 } } });
  hold = await world.addSink('127.0.0.22', { patience: { maxSessions: N, dataDelayMs: 2_000 } });
  signal = await world.addSink('127.0.0.23');
  await webhook.start();
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  for (const name of ['a', 'b', 'c']) await startNode(name);
  await until(async () => (await Promise.all(nodes.map(clusterOf))).every((c) => c.nodes.length === 3), 15_000, 'three nodes, each seeing the others');
});
t.teardown(async () => {
  for (const node of nodes) {
    node.tern.proc.kill('SIGTERM');
    await node.tern.exited;
  }
  await killRedis(redis);
  await webhook.stop();
  await world.close();
  for (const d of dirs) d.remove();
});

const node = (name: string): Node => nodes.find((n) => n.name === name) as Node;

t.test('a suspension made on one node holds on all; the fleet then keeps to the receiver\'s sessions and rate', async (t) => {
  const [a, b, c] = [node('a'), node('b'), node('c')];
  t.equal((await post(a, '/api/v1/suspend', { domain: 'fleet.test', duration: '10m', reason: 'hold for the test' })).status, 200);
  await until(async () => {
    const lists = await Promise.all([b, c].map((n) => get<{ suspensions: { target: string; name: string }[] }>(n, '/api/v1/suspensions')));
    return lists.every((l) => l.suspensions.some((s) => s.target === 'domain' && s.name === 'fleet.test'));
  }, 10_000, 'the suspension listed on b and c');
  const rcpts = Object.fromEntries(['a', 'b', 'c'].map((n) => [n, addresses(`limit-${n}`, 60, 'fleet.test')]));
  await Promise.all([a, b, c].map((n) => relay(n, rcpts[n.name] as string[])));
  t.equal(fleet.received.length, 0, 'held on every node while suspended');

  t.equal((await post(a, '/api/v1/resume', { domain: 'fleet.test' })).status, 200);
  const every = Object.values(rcpts).flat();
  await allDelivered(every, 60_000, 'all 180 delivered once resumed');
  for (const [name, list] of Object.entries(rcpts)) t.ok(list.every((r) => deliveredBy(r) === name), `each event names the node that sent it (${name})`);

  t.ok(fleet.stats.peakSessions <= N, `at most ${N} sessions at once from the fleet (peak ${fleet.stats.peakSessions})`);
  t.equal(fleet.stats.refused, 0, 'no session refused for being one too many');
  t.equal(fleet.stats.throttled, 0, 'no message over the receiver\'s rate');
  // The pace after the first burst: three nodes asking at once, one rate. Never above it; how
  // close below depends on the machine (three daemons, the sink and this test share two cores
  // here), but above a third of it: nodes that each kept to a third would stay below.
  const at = [...fleet.stats.acceptedAt].sort((x, y) => x - y);
  const steady = at.slice(R);
  const rate = ((steady.length - 1) * 1000) / ((steady.at(-1) as number) - (steady[0] as number));
  t.ok(rate <= R * 1.05, `the fleet sent ${rate.toFixed(1)}/s after its burst: at most ${R}/s (+5 %)`);
  t.ok(rate > (R / 3) * 1.25, `and more than each node's third of it (${(R / 3).toFixed(1)}/s): one limit shared, not split`);
  t.comment(`limit holding: ${at.length} messages, peak ${fleet.stats.peakSessions}/${N} sessions, steady ${rate.toFixed(2)}/s of ${R}/s`);
});

t.test('a throttle one node sees lowers the rate of the others', async (t) => {
  const [a, b, c] = [node('a'), node('b'), node('c')];
  await relay(a, ['tss04-1@signal.test']);
  const adopted = async (n: Node) => {
    const sites = await get<{ sites: { site: string; paths: { adaptive: { rule: string }[] }[] }[] }>(n, '/api/v1/sites');
    return sites.sites.some((s) => s.site.includes('mx.signal.test') && s.paths.some((p) => p.adaptive.some((e) => e.rule === 'slow-down')));
  };
  await until(async () => (await adopted(b)) && (await adopted(c)), 15_000, 'b and c show a\'s effect on the path');
  t.ok(b.tern.lines.some((l) => l.change === 'adopted' && l.rule === 'slow-down'), 'b logged the effect it adopted');

  const rcpts = addresses('after-throttle', 16, 'signal.test');
  const first = signal.stats.acceptedAt.length;
  await relay(b, rcpts);
  await allDelivered(rcpts, 30_000, 'b\'s 16 delivered');
  const at = signal.stats.acceptedAt.slice(first).sort((x, y) => x - y);
  const span = (at.at(-1) as number) - (at[0] as number);
  // At 4/s with a burst of 4, 16 take 3 s at least; at the 20/s b had before, under a second.
  t.ok(span >= 2_500, `b sent 16 in ${span} ms: at the lowered 4/s`);
  await allDelivered(['tss04-1@signal.test'], 15_000, 'the throttled message retried');
  t.equal(deliveredBy('tss04-1@signal.test'), 'a');
});

t.test('a node killed with -9: its connections come back to the fleet when its leases lapse; its mail is delivered after its restart', async (t) => {
  const [a, b] = [node('a'), node('b')];
  const held = addresses('killed', 6, 'hold.test');
  await relay(a, held);
  await until(() => hold.stats.sessions === N, 15_000, `a holds all ${N} connections`);
  a.tern.proc.kill('SIGKILL');
  await a.tern.exited;
  await until(() => hold.stats.sessions === 0, 10_000, 'a\'s sessions closed');
  hold.stats.peakSessions = 0;
  const after = addresses('survivor', 6, 'hold.test');
  await relay(b, after);
  await allDelivered(after, 45_000, 'b delivers');
  t.equal(hold.stats.peakSessions, N, `b got all ${N} connections once a's leases lapsed`);
  t.equal(hold.stats.refused, 0, 'never more than the receiver allows');

  a.tern = await spawnTern(a.configPath);
  await allDelivered(held, 45_000, 'a\'s accepted mail delivered after its restart');
  t.ok(held.every((r) => deliveredBy(r) === 'a'), 'by a');
});

t.test('Redis gone: each node keeps to its share, loses nothing; Redis back: shared again', async (t) => {
  const [a, b, c] = [node('a'), node('b'), node('c')];
  hold.patience.dataDelayMs = 300;
  await until(async () => (await clusterOf(b)).nodes.length === 3, 15_000, 'a back in the fleet');
  await killRedis(redis);
  await until(async () => (await Promise.all([a, b, c].map((n) => get<{ checks: { cluster?: string } }>(n, '/readyz')))).every((r) => /^degraded/.test(r.checks.cluster ?? '')), 15_000, 'every node says it is degraded');
  t.equal((await adminFetch(b.adminPort, '/readyz')).status, 200, 'and still ready: Redis is no reason to stop sending');

  await until(() => hold.stats.sessions === 0, 10_000, 'the last sessions closed');
  hold.stats.peakSessions = 0;
  const alone = addresses('no-redis', 9, 'hold.test');
  await relay(b, alone);
  await allDelivered(alone, 45_000, 'mail still delivered without Redis');
  t.equal(hold.stats.peakSessions, 1, `peak ${hold.stats.peakSessions} b kept to its share: 1 of ${N} connections for one of three nodes`);
  t.notOk(webhook.acknowledged.some((e) => alone.includes(e.recipient) && e.type === 'failed'), 'nothing failed because of Redis');

  redis = await startRedis(redisPort);
  await until(async () => (await Promise.all([a, b, c].map(clusterOf))).every((v) => v.redis.state === 'connected' && v.nodes.length === 3), 20_000, 'every node back in the fleet');
  await until(() => hold.stats.sessions === 0, 10_000, 'the last sessions closed');
  hold.stats.peakSessions = 0;
  const shared = addresses('redis-back', 9, 'hold.test');
  await relay(b, shared);
  await allDelivered(shared, 45_000, 'delivered with Redis back');
  t.equal(hold.stats.peakSessions, N, `peak ${hold.stats.peakSessions} with the limits shared again, b alone may use all ${N}`);
});

t.test('a drain: no new mail, deliveries finish, the fleet sees it; node identity in the metrics', async (t) => {
  const [b, c] = [node('b'), node('c')];
  t.match(await (await adminFetch(c.adminPort, '/metrics')).text(), /^tern_cluster_node_info\{node="c"\} 1$/m);
  hold.patience.dataDelayMs = 1_000;
  const inFlight = addresses('draining', 4, 'hold.test');
  await relay(c, inFlight);
  await until(() => hold.stats.sessions > 0, 10_000, 'c delivering');

  const started = await post(c, '/api/v1/drain', {});
  t.equal(started.status, 200);
  t.match(await started.json(), { draining: true, since: /^\d{4}-/ });
  const ready = await adminFetch(c.adminPort, '/readyz');
  t.equal(ready.status, 503, 'a load balancer stops sending to it');
  t.match(await ready.json(), { checks: { smtp: /^closed: draining since/ } });
  const refused = await new Promise<string>((resolve) => connect(c.smtpPort, '127.0.0.1').once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')).once('connect', () => resolve('connected')));
  t.equal(refused, 'ECONNREFUSED', 'its SMTP port is closed');
  await until(async () => (await clusterOf(b)).nodes.some((n) => n.name === 'c' && n.info.draining === true), 10_000, 'b sees c draining');
  t.match(await (await adminFetch(c.adminPort, '/metrics')).text(), /^tern_cluster_node_info\{node="c"\} 0$/m);

  await until(async () => (await get<{ finished: boolean }>(c, '/api/v1/drain')).finished, 30_000, 'the drain finished');
  t.ok(inFlight.every((r) => deliveredBy(r) === 'c'), 'what c had accepted went out before it stopped');
  c.tern.proc.kill('SIGTERM');
  t.equal(await c.tern.exited, 0, 'and it stops cleanly');
  nodes.splice(nodes.indexOf(c), 1);
});
