/**
 * A fleet's cost and its hold on a receiver's limits (docs/scaling.md, "Sizing"):
 *
 *   npm run bench:cluster
 *   BENCH_MESSAGES=20000 npm run bench:cluster
 *
 * 1. Throughput against an unlimited receiver (Postfix's smtp-sink): one Tern without a fleet
 *    (the baseline), then fleets of 1, 2 and 3 nodes sharing Debian's redis-server. Each run
 *    starts fresh processes and relays BENCH_MESSAGES × 10 KiB (Postfix's smtp-source, split over
 *    the nodes): first a cold pass (no warm-up), then the same again (steady). Reported: msg/s,
 *    the ratio to the baseline, and what Redis did per message (commands, CPU µs).
 * 2. The limit held against a receiver that allows BENCH_LIMIT_SESSIONS sessions and
 *    BENCH_LIMIT_RATE messages a second from one address (the test sink, smtp-server): three
 *    nodes as a fleet, then three independent nodes with the same settings. Reported: the peak
 *    sessions and the steady rate seen by the receiver, their error against the limit, and its
 *    refusals.
 * Every node is one process with one loop (tuning.threads 1), all on this machine: the figures
 * show what sharing costs, not what more machines add.
 *
 * Environment: BENCH_MESSAGES (6000), BENCH_LIMIT_SESSIONS (5), BENCH_LIMIT_RATE (100),
 * BENCH_LIMIT_SECONDS (15), BENCH_NODES ("1,2,3").
 * A benchmark, not a test: figures are reported, never failed; only a broken setup exits non-zero.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startDnsZone } from '../../test/support/dns-zone.ts';
import { freePort } from '../../test/support/ports.ts';
import { startSink, type Sink } from '../../test/support/sink.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MESSAGES = intEnv('BENCH_MESSAGES', 6000);
const LIMIT_SESSIONS = intEnv('BENCH_LIMIT_SESSIONS', 5);
const LIMIT_RATE = intEnv('BENCH_LIMIT_RATE', 100);
const LIMIT_SECONDS = intEnv('BENCH_LIMIT_SECONDS', 15);
const FLEETS = (process.env.BENCH_NODES ?? '1,2,3').split(',').map(Number).filter((n) => n > 0);
const SESSIONS_PER_NODE = 10;
const SIZE = 10_240;
const OPEN = '127.0.0.2';
const LIMITED = '127.0.0.3';

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

const progress = (text: string): void => void process.stderr.write(`[bench:cluster] ${text}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function launch(command: string, args: readonly string[]): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

async function waitFor(probe: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Postfix's smtp-sink on host:port (-c: it prints its count of messages as it goes). */
async function startSmtpSink(host: string, port: number): Promise<{ count: () => number; child: ChildProcess }> {
  const child = launch('/usr/sbin/smtp-sink', ['-c', '-u', 'root', `${host}:${port}`, '1000']);
  let count = 0;
  let rest = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    const records = (rest + chunk).split(/[\r\n]/);
    rest = records.pop() ?? '';
    for (const r of records) {
      const m = /mesg=(\d+)/.exec(r);
      if (m) count = Number(m[1]);
    }
  });
  child.stderr?.resume();
  await sleep(300);
  if (child.exitCode !== null) throw new Error('smtp-sink did not start (is postfix installed?)');
  return { count: () => count, child };
}

interface Node { readonly name: string; readonly smtpPort: number; readonly adminPort: number; readonly child: ChildProcess }

async function startNode(work: string, name: string, env: { dns: string; port: number; redisPort?: number; limited?: boolean }): Promise<Node> {
  const smtpPort = await freePort();
  const adminPort = await freePort();
  const config = join(work, `${name}.yaml`);
  const shaping = env.limited
    ? `shaping: { default_rules: false, defaults: { max_connections: ${LIMIT_SESSIONS}, max_message_rate: ${LIMIT_RATE}/s, max_messages_per_connection: 100000 } }`
    : 'shaping: { defaults: { max_connections: 20, max_messages_per_connection: 1000 } }';
  writeFileSync(config, [
    'hostname: tern.bench',
    `smtp: { listen: ["127.0.0.1:${smtpPort}"], max_clients: 1000 }`,
    `admin: { listen: "127.0.0.1:${adminPort}", token: bench }`,
    `spool: { dir: ${JSON.stringify(join(work, `${name}-spool`))}, min_free: 1MB }`,
    `dns: { servers: ["${env.dns}"], timeout: 2s, attempts: 2 }`,
    `delivery: { port: ${env.port}, timeouts: { idle: 2s }, retry: { base: 1s, max: 5s } }`,
    shaping,
    ...(env.redisPort ? [`cluster: { redis: "redis://127.0.0.1:${env.redisPort}", prefix: "bench:", node: ${name} }`] : []),
    'log: { level: warn }',
    'tuning: { threads: 1 }',
    '',
  ].join('\n'));
  const child = launch(process.execPath, ['bin/tern.js', 'start', '--config', config]);
  let stderr = '';
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => (stderr += s));
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${stderr}`);
    return fetch(`http://127.0.0.1:${adminPort}/readyz`, { headers: { authorization: 'Bearer bench' } }).then((r) => r.status === 200, () => false);
  }, 30_000, `${name} ready`);
  return { name, smtpPort, adminPort, child };
}

/** smtp-source into each node at once, `messages` split evenly; resolves when all exited. */
async function inject(nodes: readonly Node[], messages: number, to: string): Promise<void> {
  const runs = nodes.map((n, i) => {
    const share = Math.floor(messages / nodes.length) + (i < messages % nodes.length ? 1 : 0);
    const child = launch('/usr/sbin/smtp-source', ['-s', String(SESSIONS_PER_NODE), '-m', String(share), '-l', String(SIZE), '-f', 'from@bench.test', '-t', to, `127.0.0.1:${n.smtpPort}`]);
    child.stdout?.resume();
    child.stderr?.resume();
    return new Promise<number | null>((resolve) => child.once('exit', resolve));
  });
  const codes = await Promise.all(runs);
  if (codes.some((c) => c !== 0)) throw new Error(`smtp-source exited ${codes.join(',')}`);
}

/** Redis's calls and CPU so far (INFO commandstats, cpu). */
async function redisUse(redis: Redis): Promise<{ calls: number; cpuUs: number }> {
  const stats = await redis.info('commandstats');
  const calls = [...stats.matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  const cpu = await redis.info('cpu');
  const sec = (k: string): number => Number(new RegExp(`${k}:([\\d.]+)`).exec(cpu)?.[1] ?? 0);
  return { calls, cpuUs: (sec('used_cpu_sys') + sec('used_cpu_user')) * 1e6 };
}

interface ThroughputRow { readonly run: string; readonly cold: number; readonly steady: number; readonly redisCalls: number | null; readonly redisCpuUs: number | null }

async function throughput(work: string, dns: string, port: number, sink: { count: () => number }, redis: Redis, redisPort: number, nodes: number, shared: boolean): Promise<ThroughputRow> {
  const fleet: Node[] = [];
  for (let i = 0; i < nodes; i++) fleet.push(await startNode(work, `${shared ? 'fleet' : 'alone'}${nodes}-${i}`, { dns, port, ...(shared ? { redisPort } : {}) }));
  const pass = async (): Promise<{ rate: number; calls: number; cpuUs: number }> => {
    const before = sink.count();
    const use = await redisUse(redis);
    const start = performance.now();
    await inject(fleet, MESSAGES, 'to@bench.test');
    await waitFor(() => sink.count() >= before + MESSAGES, 300_000, `${MESSAGES} delivered`);
    const seconds = (performance.now() - start) / 1000;
    const after = await redisUse(redis);
    return { rate: MESSAGES / seconds, calls: (after.calls - use.calls) / MESSAGES, cpuUs: (after.cpuUs - use.cpuUs) / MESSAGES };
  };
  const cold = await pass();
  const steady = await pass();
  for (const n of fleet) await stop(n.child);
  const run = shared ? `fleet of ${nodes}` : `${nodes} node, no fleet`;
  // The baseline's Redis figures are the other nodes' heartbeats only: not reported.
  return { run, cold: cold.rate, steady: steady.rate, redisCalls: shared ? steady.calls : null, redisCpuUs: shared ? steady.cpuUs : null };
}

interface LimitRow { readonly run: string; readonly peak: number; readonly rate: number; readonly refused: number; readonly throttled: number }

async function limitHeld(work: string, dns: string, port: number, sink: Sink, redisPort: number, nodes: number, shared: boolean): Promise<LimitRow> {
  const fleet: Node[] = [];
  for (let i = 0; i < nodes; i++) fleet.push(await startNode(work, `${shared ? 'held' : 'free'}${nodes}-${i}`, { dns, port, limited: true, ...(shared ? { redisPort } : {}) }));
  Object.assign(sink.stats, { peakSessions: 0, refused: 0, throttled: 0, acceptedAt: [] });
  const total = LIMIT_RATE * LIMIT_SECONDS;
  await inject(fleet, total, 'to@limited.test');
  await waitFor(() => sink.stats.acceptedAt.length >= total, (LIMIT_SECONDS + 120) * 1000, `${total} accepted by the limited sink`);
  // The pace past the first second's burst, as the receiver saw it.
  const at = [...sink.stats.acceptedAt].sort((a, b) => a - b);
  const steady = at.slice(LIMIT_RATE);
  const rate = ((steady.length - 1) * 1000) / ((steady.at(-1) ?? 0) - (steady[0] ?? 0) || 1);
  for (const n of fleet) await stop(n.child);
  const run = nodes === 1 ? `one node${shared ? ', a fleet' : ''}` : `${nodes} nodes${shared ? ', a fleet' : ', independent'}`;
  return { run, peak: sink.stats.peakSessions, rate, refused: sink.stats.refused, throttled: sink.stats.throttled };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'tern-bench-cluster-'));
  const port = await freePort([OPEN, LIMITED]);
  const dns = await startDnsZone({
    'bench.test': { mx: [{ exchange: 'mx.bench.test', priority: 10 }] }, 'mx.bench.test': { a: [OPEN] },
    'limited.test': { mx: [{ exchange: 'mx.limited.test', priority: 10 }] }, 'mx.limited.test': { a: [LIMITED] },
  });
  const redisPort = await freePort();
  const redisChild = launch('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const redis = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 100 });
  redis.on('error', () => undefined);
  await waitFor(() => redis.connect().then(() => true, () => false), 10_000, 'redis-server');
  const open = await startSmtpSink(OPEN, port);
  // Above the limit the receiver says so: 421 past its sessions, [TSS04] past a second's burst and rate.
  const limited = await startSink({ host: LIMITED, port, patience: { maxSessions: LIMIT_SESSIONS, rate: { count: LIMIT_RATE * 6, windowMs: 5_000 } } });
  try {
    const rows: ThroughputRow[] = [];
    if (process.env.BENCH_THROUGHPUT !== '0') {
    progress(`throughput: ${MESSAGES} messages a pass, one node without a fleet, then fleets of ${FLEETS.join(', ')}`);
    rows.push(await throughput(work, dns.server, port, open, redis, redisPort, 1, false));
    for (const n of FLEETS) rows.push(await throughput(work, dns.server, port, open, redis, redisPort, n, true));
    }
    const base = rows[0]?.steady ?? 1;
    progress(`limits: ${LIMIT_SESSIONS} sessions and ${LIMIT_RATE}/s at the receiver, ${LIMIT_RATE * LIMIT_SECONDS} messages`);
    const limits = [
      await limitHeld(work, dns.server, port, limited, redisPort, 1, false),
      await limitHeld(work, dns.server, port, limited, redisPort, 3, true),
      await limitHeld(work, dns.server, port, limited, redisPort, 3, false),
    ];

    console.log(`\nFleet throughput, ${MESSAGES} x 10 KiB a pass, unlimited receiver (this machine: all nodes, Redis and the load on it)\n`);
    console.log('| run | cold msg/s | steady msg/s | steady vs one node | Redis calls/msg | Redis CPU µs/msg |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.run} | ${r.cold.toFixed(0)} | ${r.steady.toFixed(0)} | ${(r.steady / base).toFixed(2)} | ${r.redisCalls?.toFixed(2) ?? '-'} | ${r.redisCpuUs?.toFixed(1) ?? '-'} |`);
    console.log(`\nLimit held: receiver allows ${LIMIT_SESSIONS} sessions and ${LIMIT_RATE}/s from one address; each node is set to the same\n`);
    console.log('| run | peak sessions | error | steady msg/s | error | 421 refused | [TSS04] throttled |');
    console.log('|---|---|---|---|---|---|---|');
    const pct = (v: number, limit: number): string => `${v > limit ? '+' : ''}${(((v - limit) / limit) * 100).toFixed(1)} %`;
    for (const l of limits) console.log(`| ${l.run} | ${l.peak} | ${pct(l.peak, LIMIT_SESSIONS)} | ${l.rate.toFixed(1)} | ${pct(l.rate, LIMIT_RATE)} | ${l.refused} | ${l.throttled} |`);
  } finally {
    await stop(open.child);
    await limited.close();
    redis.disconnect();
    await stop(redisChild);
    await dns.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  progress(`failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
