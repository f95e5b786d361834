/**
 * ADR 0010: one coordinator's shaper, two delivery shards asking it over real MessagePorts. The
 * limits must hold across the shards exactly as they hold for one loop.
 */
import { Readable } from 'node:stream';
import { MessageChannel } from 'node:worker_threads';
import { pino } from 'pino';
import { createDelivery } from '../../../src/delivery/index.ts';
import { planEgress } from '../../../src/egress/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import t from 'tap';
import type { SiteName } from '../../../src/model/ids.ts';
import type { AttemptOutcome } from '../../../src/model/outcome.ts';
import type { Grant, PathHandle, PathSettings } from '../../../src/model/path.ts';
import { createShaper, parseShapingRules, RemoteShaping, serveShard, type ShardLink } from '../../../src/shaping/index.ts';
import { CREDIT_IDLE_MS, FULL_RETRY_MS, ROUTE_IDLE_MS } from '../../../src/shaping/remote.ts';
import { SessionTally } from '../../../src/shaping/sessions.ts';
import { FakeClock, settle } from '../../support/fake-clock.ts';
import { tempDir } from '../../support/daemon.ts';
import { freePort } from '../../support/ports.ts';
import { startSink } from '../../support/sink.ts';
import { until } from '../../support/smtp-client.ts';

const BASE: PathSettings = {
  max_connections: 10, max_messages_per_connection: 100, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 30_000, greeting_timeout: 60_000, idle_timeout: 5_000, tls: 'may',
};
const RULES = `
sites:
  - { site: mx.big.test, max_connections: 3, max_message_rate: 10/s }
adaptive:
  - { id: conns, match: too many connections, action: { lower: { max_connections: observed } }, duration: 10m, recover: { every: 1m, step: 10% } }
`;
const SITE = 'mx.big.test' as SiteName;

function setup(t: { teardown(fn: () => unknown): void }, clock: FakeClock | typeof systemClock = new FakeClock(), rules = RULES) {
  const dir = tempDir();
  const loaded = parseShapingRules(rules, { reasons: [] });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const links: ShardLink[] = [];
  const sessions = new SessionTally(60_000);
  const shaper = createShaper(
    { base: BASE, rules: loaded.rules, stateDir: dir.path },
    { clock, log: pino({ level: 'silent' }), classify: () => ({ reason: 'toomanyconn' }), onChange: (_c, path) => { for (const l of links) l.changed(path.key); } },
  );
  const shards = [0, 1].map(() => {
    const { port1, port2 } = new MessageChannel();
    links.push(serveShard(port1, shaper, sessions, clock));
    t.teardown(() => { port1.close(); port2.close(); });
    return new RemoteShaping(port2, clock);
  });
  t.teardown(async () => { await shaper.stop(); dir.remove(); });
  return { clock: clock as FakeClock, shaper, shards, links, sessions };
}

async function pathOf(shard: RemoteShaping): Promise<PathHandle> {
  return shard.path(SITE, ['mx.big.test'], 'big.test', 'default');
}

/** Ask until the shard's answer holds still: what a pool asking again at retryAt would end up with. */
async function acquireAll(clock: FakeClock, shard: RemoteShaping, path: string, kind: 'connection' | 'message', want: number, rounds = 5): Promise<number> {
  let got = 0;
  for (let i = 0; i < rounds && got < want; i++) {
    const [grant] = shard.acquire([{ path, kind, count: want - got }]) as [Grant];
    got += grant.granted;
    await settle();
    await clock.advance(Math.max(0, (grant.retryAt ?? clock.now()) - clock.now()));
  }
  return got;
}

t.test('connection leases: never more than max_connections across the shards; a release lets the other shard in', async (t) => {
  const { clock, shards } = setup(t);
  const [a, b] = shards as [RemoteShaping, RemoteShaping];
  const path = (await pathOf(a)).key;
  t.equal((await pathOf(b)).key, path, 'both shards resolve the same path');
  t.equal((await pathOf(a)).settings().max_connections, 3);
  const gotA = await acquireAll(clock, a, path, 'connection', 2);
  const gotB = await acquireAll(clock, b, path, 'connection', 3);
  t.equal(gotA, 2);
  t.equal(gotB, 1, 'the second shard gets only what is left');
  const [refused] = b.acquire([{ path, kind: 'connection', count: 1 }]) as [Grant];
  t.equal(refused.granted, 0);
  t.ok(refused.retryAt !== undefined && refused.retryAt <= clock.now() + FULL_RETRY_MS, 'told to ask again soon: a release in another shard would not reach its pool');
  a.release(path, 1);
  await settle();
  t.equal(await acquireAll(clock, b, path, 'connection', 1, 20), 1, 'the lease the first shard gave back');
});

t.test('message grants come from one bucket: two shards together stay within the rate; unused credit goes back', async (t) => {
  const { clock, shaper, shards } = setup(t);
  const [a, b] = shards as [RemoteShaping, RemoteShaping];
  const path = (await pathOf(a)).key;
  await pathOf(b);
  let total = 0;
  // Ten seconds of both shards asking for as much as they can: 10/s with a burst of 10.
  for (let s = 0; s < 100; s++) {
    for (const shard of [a, b]) {
      const [g] = shard.acquire([{ path, kind: 'message', count: 5 }]) as [Grant];
      total += g.granted;
    }
    await settle();
    await clock.advance(100);
  }
  t.ok(total <= 10 + 10 * 10 + 1, `${total} messages granted in 10 s at 10/s (burst 10)`);
  t.ok(total >= 80, `and the rate is used: ${total}`);
  // Credit a shard asked for and did not use goes back after a while.
  await clock.advance(2_000);
  const [asked] = a.acquire([{ path, kind: 'message', count: 8 }]) as [Grant];
  await settle();
  t.equal(asked.granted, 0, 'first the shard asks the coordinator');
  await clock.advance(CREDIT_IDLE_MS + 1);
  const [direct] = shaper.acquire([{ path, kind: 'message', count: 10 }]);
  t.equal(direct?.granted, 10, 'the eight held as credit went back to the bucket');
  // A shard that stops gives back what it holds at once.
  await clock.advance(2_000);
  b.acquire([{ path, kind: 'message', count: 8 }]);
  await settle();
  b.close();
  await settle();
  const [afterClose] = shaper.acquire([{ path, kind: 'message', count: 10 }]);
  t.equal(afterClose?.granted, 10, 'a closing shard\'s credit is back in the bucket');
});

t.test('an adaptive change made in the coordinator reaches the shards\' handles', async (t) => {
  const { shaper, shards } = setup(t);
  const [a, b] = shards as [RemoteShaping, RemoteShaping];
  const handleA = await pathOf(a);
  const handleB = await pathOf(b);
  a.observe(handleA, { kind: 'reply', recipients: 0, reply: { code: 421, text: 'Too many connections', origin: 'remote' } }, { connections: 2, sentOnConnection: 0 });
  await settle();
  t.equal(shaper.views().find((v) => v.path === handleA.key)?.limits.max_connections.value, 2, 'the coordinator lowered the limit');
  t.equal(handleB.settings().max_connections, 2, 'and the other shard, which saw nothing, holds to it');
  t.equal(handleA.settings().max_connections, 2);
});

t.test('sessions past the greeting are counted across the shards: each shard hears the sum, an observed cut is taken from it, and a shard that stops gives its sessions back', async (t) => {
  const { shaper, shards, links } = setup(t);
  const [a, b] = shards as [RemoteShaping, RemoteShaping];
  const handleA = await pathOf(a);
  const handleB = await pathOf(b);
  t.equal(handleB.sessions?.(), undefined, 'nothing heard before the first session');
  a.session(handleA.key, 1);
  a.session(handleA.key, 1);
  b.session(handleB.key, 1);
  await settle();
  t.match(handleA.sessions?.(), { open: 3, opened: 3 }, 'shard A hears of B\'s session');
  t.match(handleB.sessions?.(), { open: 3, opened: 3 }, 'and B of A\'s two');
  // B alone has one open, as its own pool sees; the receiver has three from us.
  b.observe(handleB, { kind: 'reply', recipients: 0, reply: { code: 421, text: 'Too many connections', origin: 'remote' } }, { connections: 1, sentOnConnection: 0 });
  await settle();
  t.equal(shaper.views().find((v) => v.path === handleA.key)?.limits.max_connections.value, 3, 'observed = the sessions of every shard, not B\'s one');
  links[0]!.close();
  await settle();
  t.match(handleB.sessions?.(), { open: 1, opened: 3 }, 'shard A gone: its two sessions are taken back');
  t.equal(handleB.sessions?.()?.openedAt, handleA.sessions?.()?.openedAt, 'and when the last was greeted, the same for all');
});

t.test('two shards against a tarpit (no greeting above three sessions): a shard with none of the three open still gives up on a stalled session early, and observed settles at three', async (t) => {
  const port = await freePort();
  const sink = await startSink({ host: '127.0.0.1', port, patience: { stallAbove: 3, dataDelayMs: 8_000 } });
  t.teardown(() => sink.close());
  const rules = `
adaptive:
  - { id: tarpit, event: [greeting-timeout], trigger: { count: 1, within: 1m }, action: { lower: { max_connections: observed } }, duration: 10m, recover: { every: 10m } }
`;
  const { shards, shaper } = setup(t, systemClock, rules);
  const deliveries = shards.map((shard) => createDelivery(
    { port, localName: 'tern.test', timeouts: { command: 5_000, data: 5_000 }, egress: planEgress({ sources: [], pools: [] }, 'tern.test') },
    { path: (site, mx, domain, source) => shard.path(site, mx, domain, source), acquire: (r) => shard.acquire(r), release: (p, n) => shard.release(p, n), observe: (h, o, l) => shard.observe(h, o, l), session: (p, d) => shard.session(p, d) },
    { clock: systemClock, log: pino({ level: 'silent' }) },
  ));
  t.teardown(() => { for (const d of deliveries) d.abort(); });
  const send = (shard: number, n: number, tag: string): Promise<AttemptOutcome>[] => Array.from({ length: n }, (_, i) => deliveries[shard]!.deliver({
    site: SITE, domain: 'big.test', hosts: [{ name: 'mx.big.test', addresses: ['127.0.0.1'] }],
    envelope: { sender: 'a@example.com', recipients: [`${tag}${i}@big.test`], size: 10, eightBit: false },
    openBody: () => Readable.from([Buffer.from('Subject: x\r\n\r\nx\r\n')]),
  }));
  // Shard A takes the three sessions the receiver greets with a message each that the receiver
  // sits on for eight seconds; only then does shard B start, so none of the sessions B could
  // count is its own, and its first connections stall.
  const first = send(0, 3, 'a');
  await until(() => sink.stats.sessions >= 3, 5_000, 'shard A\'s three sessions');
  sink.patience.dataDelayMs = 20;
  const started = Date.now();
  const second = send(1, 10, 'b');
  const outcomes = await Promise.all([...first, ...second]);
  const took = Date.now() - started;
  t.equal(outcomes.filter((o) => o.kind === 'transaction' && o.replies.every((r) => r.code === 250)).length, 13, 'every message delivered');
  t.ok(sink.stats.stalled >= 1, `the receiver stalled ${sink.stats.stalled} sessions`);
  // Before sessions were counted across shards, B (none of the greeted three its own, none
  // opened by it since) waited out the whole greeting timeout, 60 s here, on its stalled ones.
  t.ok(took < BASE.greeting_timeout, `shard B done in ${(took / 1000).toFixed(1)} s: no stalled session was waited out (greeting timeout ${BASE.greeting_timeout / 1000} s)`);
  t.equal(shaper.views().find((v) => v.site === SITE)?.limits.max_connections.value, 3, 'max_connections lowered to the three sessions the receiver greets, not one shard\'s share');
  for (const d of deliveries) d.stop();
});

t.test('a shard forgets routes nobody has used for ten minutes, as the shaper forgets paths', async (t) => {
  const { clock, shards } = setup(t);
  const [a] = shards as [RemoteShaping];
  t.ok(a.path(SITE, ['mx.big.test'], 'big.test', 'default') instanceof Promise, 'new: asked of the coordinator');
  await pathOf(a);
  t.notOk(a.path(SITE, ['mx.big.test'], 'big.test', 'default') instanceof Promise, 'known: answered at once');
  await clock.advance(ROUTE_IDLE_MS + 1);
  await a.path(SITE, ['mx.big.test'], 'other.test', 'default');
  t.ok(a.path(SITE, ['mx.big.test'], 'big.test', 'default') instanceof Promise, 'forgotten: asked of the coordinator again');
});

t.test('two delivery shards with real pools against a receiver counting sessions: never more sessions or messages a second than the site allows, all delivered', async (t) => {
  const port = await freePort();
  const sink = await startSink({ host: '127.0.0.1', port, patience: { maxSessions: 3, dataDelayMs: 20 } });
  t.teardown(() => sink.close());
  const { shards } = setup(t, systemClock);
  const deliveries = shards.map((shard) => createDelivery(
    { port, localName: 'tern.test', timeouts: { command: 5_000, data: 5_000 }, egress: planEgress({ sources: [], pools: [] }, 'tern.test') },
    { path: (site, mx, domain, source) => shard.path(site, mx, domain, source), acquire: (r) => shard.acquire(r), release: (p, n) => shard.release(p, n), observe: (h, o, l) => shard.observe(h, o, l), session: (p, d) => shard.session(p, d) },
    { clock: systemClock, log: pino({ level: 'silent' }) },
  ));
  t.teardown(() => { for (const d of deliveries) d.abort(); });
  const jobs = Array.from({ length: 60 }, (_, i) => deliveries[i % 2]!.deliver({
    site: SITE, domain: 'big.test', hosts: [{ name: 'mx.big.test', addresses: ['127.0.0.1'] }],
    envelope: { sender: 'a@example.com', recipients: [`r${i}@big.test`], size: 10, eightBit: false },
    openBody: () => Readable.from([Buffer.from('Subject: x\r\n\r\nx\r\n')]),
  }));
  const outcomes = await Promise.all(jobs);
  t.equal(outcomes.filter((o) => o.kind === 'transaction' && o.replies.every((r) => r.code === 250)).length, 60, 'every message delivered');
  t.ok(sink.stats.peakSessions <= 3, `the receiver saw at most ${sink.stats.peakSessions} sessions at once (limit 3, across two shards)`);
  t.equal(sink.stats.refused, 0, 'and refused none');
  // The site's 10 messages a second hold across the shards too: a burst of 10, then the rate.
  const span = (sink.stats.acceptedAt.at(-1)! - sink.stats.acceptedAt[0]!) / 1000;
  t.ok((60 - 10) / span <= 10.5, `${((60 - 10) / span).toFixed(1)} messages a second past the burst, at most 10 allowed`);
  for (const d of deliveries) d.stop();
});

t.test('a path nobody named for half an hour, forgotten by the shard (and by then the coordinator), works as before when asked for again', async (t) => {
  const { clock, shards } = setup(t);
  const [a] = shards as [RemoteShaping, RemoteShaping];
  const first = await pathOf(a);
  await clock.advance(3 * ROUTE_IDLE_MS + 1);
  // Another domain's first message sweeps the shard's routes, then the coordinator's paths.
  await a.path('mx.other.test' as SiteName, ['mx.other.test'], 'other.test', 'default');
  const again = await pathOf(a);
  t.not(again, first, 'the shard asked the coordinator afresh');
  t.equal(again.key, first.key, 'for the same path');
  t.equal(await acquireAll(clock, a, again.key, 'connection', 5), 3, 'its limit holds as before');
});

t.test('warm-up across shards: each shard sends what the caps it was told allow, and the coordinator counts it', async (t) => {
  const taken: string[] = [];
  const warmup = {
    take: (source: string, provider: string, n: number) => { taken.push(`take ${source} ${provider} ${n}`); return true; },
    giveBack: (source: string, provider: string, n: number) => { taken.push(`back ${source} ${provider} ${n}`); },
    cappedUntil: () => undefined,
  };
  const { port1, port2 } = new MessageChannel();
  const clock = new FakeClock(1_000);
  const dir = tempDir();
  const shaper = createShaper({ base: BASE, rules: { providers: [], sites: new Map(), domains: new Map(), adaptive: [], disabled: new Set() }, stateDir: dir.path }, { clock, log: pino({ level: 'silent' }), classify: () => ({ reason: 'x' }) });
  const link = serveShard(port1, shaper, new SessionTally(60_000), clock, warmup);
  const shard = new RemoteShaping(port2, clock);
  t.teardown(() => { link.close(); port1.close(); port2.close(); dir.remove(); });
  t.equal(shard.warmup.take('ip2', 'gmail', 3), true, 'nothing capped yet: the shard sends');
  shard.warmup.giveBack('ip2', 'gmail', 1);
  await until(() => taken.length === 2, 2_000, 'the coordinator to hear');
  t.same(taken, ['take ip2 gmail 3', 'back ip2 gmail 1'], 'counted by the coordinator');
  link.capped({ 'ip2|gmail': 5_000 });
  await until(() => shard.warmup.cappedUntil('ip2', 'gmail') !== undefined, 2_000, 'the shard to be told');
  t.equal(shard.warmup.take('ip2', 'gmail', 1), false, 'told of the cap: it does not send');
  t.equal(shard.warmup.take('ip2', 'other', 1), true, 'other providers still go');
  t.equal(shard.warmup.cappedUntil('ip2', 'gmail'), 5_000);
  link.capped({ 'ip2|*': 5_000 });
  await until(() => shard.warmup.cappedUntil('ip2', 'other') !== undefined, 2_000, 'the shard to be told');
  t.equal(shard.warmup.take('ip2', 'other', 1), false, 'capped for everything');
  await clock.advance(5_000);
  t.equal(shard.warmup.take('ip2', 'other', 1), true, 'a cap lapses at its time even before the coordinator says so');
});
