/**
 * Tern's shipped MX rules against receivers with scripted patience, all at once, one site each:
 *
 *   npm run bench:shaping
 *
 * Tern runs as `tern start` in a child process with Tern's default rules file and no rules of
 * the operator's. Each scenario injects mail for its site at 1.5× what its receiver allows (the
 * per-connection receiver allows any rate: it is offered 40 a second), for BENCH_CONVERGE_S
 * (Tern learns) then BENCH_STEADY_S (measured). Then the receiver relents; injection goes on at
 * more than Tern's static limits let through, and the script times how long until Tern delivers
 * at 90 % of that full speed over 10 s (BENCH_RELENT_MAX_S at most). Last, injection stops and it
 * waits for every message to arrive.
 *
 * Per scenario it prints one JSON line, then a table: the receiver's limit, the rate it allows,
 * the rate Tern kept in the steady window and its share of the allowed rate, the refusals it
 * provoked per 1,000 deliveries in that window (421 greetings, stalled sessions, [TSS04], 421 at
 * MAIL), the time from the receiver relenting to full speed, and messages lost (injected, neither
 * delivered nor still in Tern's queue when the script gives up waiting).
 *
 * Environment: BENCH_CONVERGE_S (120), BENCH_STEADY_S (120), BENCH_RELENT_MAX_S (600),
 * BENCH_DRAIN_MAX_S (900: how long to wait for the last messages once injection has stopped),
 * BENCH_SCENARIOS (all: concurrency,rate,per-connection,stall), BENCH_TERN_LOG (info),
 * BENCH_TERN_THREADS (Tern's tuning.threads; unset: its default, auto: 2 or more runs the shards,
 * whose limits the main thread's shaper holds across them).
 * A benchmark, not a test: it reports figures and never fails on them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startDnsZone, type ZoneEntry } from '../../test/support/dns-zone.ts';
import { freePort } from '../../test/support/ports.ts';
import { startSink, type Patience, type Sink } from '../../test/support/sink.ts';
import { message, sendMail, until } from '../../test/support/smtp-client.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONVERGE_MS = seconds('BENCH_CONVERGE_S', 120);
const STEADY_MS = seconds('BENCH_STEADY_S', 120);
const RELENT_MAX_MS = seconds('BENCH_RELENT_MAX_S', 600);
const DRAIN_MAX_MS = seconds('BENCH_DRAIN_MAX_S', 900);

interface Scenario {
  readonly name: string;
  readonly domain: string;
  readonly ip: string;
  readonly patience: Patience;
  /** The receiver's limit, in words. */
  readonly limit: string;
  /** Messages a second the receiver lets through. */
  readonly allowed: number;
  /** Messages a second injected; 1.5 × allowed unless the limit is not a rate. */
  readonly offered?: number;
  readonly relent: (p: Patience) => void;
  /** Once relented: what is injected, and the rate the receiver then takes from Tern at its static limits. */
  readonly after: { readonly offered: number; readonly fullSpeed: number };
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'concurrency', domain: 'conc.bench', ip: '127.0.0.21', patience: { maxSessions: 3, dataDelayMs: 100 },
    limit: '3 sessions, 421 above; 100 ms a message', allowed: 30, relent: (p) => { p.maxSessions = undefined; },
    after: { offered: 120, fullSpeed: 100 }, // 10 connections at 100 ms a message
  },
  {
    name: 'rate', domain: 'rate.bench', ip: '127.0.0.22', patience: { rate: { count: 600, windowMs: 60_000 } },
    limit: '600 messages a minute, 451 [TSS04] above', allowed: 10, relent: (p) => { p.rate = undefined; },
    after: { offered: 30, fullSpeed: 30 },
  },
  {
    name: 'per-connection', domain: 'perconn.bench', ip: '127.0.0.23', patience: { messagesPerConnection: 20, dataDelayMs: 20 },
    limit: '20 messages a connection, 421 after; all it is offered', allowed: 40, offered: 40, relent: (p) => { p.messagesPerConnection = undefined; },
    after: { offered: 40, fullSpeed: 40 },
  },
  {
    name: 'stall', domain: 'stall.bench', ip: '127.0.0.24', patience: { stallAbove: 3, dataDelayMs: 100 },
    limit: '3 sessions greeted, the rest never', allowed: 30, relent: (p) => { p.stallAbove = undefined; },
    after: { offered: 120, fullSpeed: 100 },
  },
];

const chosen = (process.env.BENCH_SCENARIOS ?? SCENARIOS.map((s) => s.name).join(',')).split(',').map((s) => s.trim());

function seconds(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  return (Number.isFinite(v) && v > 0 ? v : fallback) * 1000;
}

async function main(): Promise<void> {
  const scenarios = SCENARIOS.filter((s) => chosen.includes(s.name));
  const scratch = mkdtempSync(join(tmpdir(), 'tern-bench-shaping-'));
  const port = await freePort(scenarios.map((s) => s.ip));
  const zone: Record<string, ZoneEntry> = {};
  for (const s of scenarios) {
    zone[s.domain] = { mx: [{ exchange: `mx.${s.domain}`, priority: 10 }] };
    zone[`mx.${s.domain}`] = { a: [s.ip] };
  }
  const dns = await startDnsZone(zone);
  const sinks = new Map<string, Sink>();
  for (const s of scenarios) sinks.set(s.name, await startSink({ host: s.ip, port, patience: { ...s.patience } }));
  const tern = await startTern(scratch, dns.server, port);
  let results: Result[] = [];
  try {
    results = await Promise.all(scenarios.map((s) => runScenario(s, sinks.get(s.name) as Sink, tern)));
  } finally {
    await stop(tern.proc);
    await Promise.all([...sinks.values()].map((k) => k.close()));
    await dns.close();
    rmSync(scratch, { recursive: true, force: true });
  }
  for (const r of results) console.log(JSON.stringify({ bench: 'shaping', node: process.version, ...r }));
  console.log(table(results));
}

/** The bench daemon's admin token (its admin listener is on loopback; the API always wants one). */
const ADMIN_TOKEN = 'bench';

interface RunningTern { readonly proc: ChildProcess; readonly smtpPort: number; readonly adminPort: number }

async function startTern(scratch: string, dnsServer: string, deliveryPort: number): Promise<RunningTern> {
  const [smtpPort, adminPort] = [await freePort(), await freePort()];
  const config = {
    hostname: 'tern.bench',
    smtp: { listen: [`127.0.0.1:${smtpPort}`], max_clients: 2000 },
    admin: { listen: `127.0.0.1:${adminPort}`, token: ADMIN_TOKEN },
    spool: { dir: join(scratch, 'spool'), min_free: '1MB' },
    dns: { servers: [dnsServer] },
    // Shorter than the default 20 minutes so refused mail arrives within the run; rules untouched.
    delivery: { port: deliveryPort, retry: { base: '1m', max: '5m', jitter: 0.1 } },
    log: { level: process.env.BENCH_TERN_LOG ?? 'info' },
    ...(process.env.BENCH_TERN_THREADS ? { tuning: { threads: Number(process.env.BENCH_TERN_THREADS) || process.env.BENCH_TERN_THREADS } } : {}),
  };
  const path = join(scratch, 'tern.yaml');
  writeFileSync(path, stringify(config));
  const proc = spawn(process.execPath, [join(ROOT, 'bin/tern.js'), 'start', '--config', path], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  proc.stdout?.pipe(createWriteStream(join(tmpdir(), 'tern-bench-shaping.log')));
  await until(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`).catch(() => undefined))?.ok, 30_000, 'Tern to start');
  return { proc, smtpPort, adminPort };
}

interface Result {
  readonly scenario: string;
  readonly limit: string;
  readonly allowed_per_s: number;
  readonly achieved_per_s: number;
  readonly pct_of_allowed: number;
  readonly refusals_per_1000: number;
  readonly refusals_steady: number;
  readonly delivered_steady: number;
  readonly full_speed_per_s: number;
  readonly full_speed_after_s: number | null;
  readonly injected: number;
  readonly delivered: number;
  readonly still_queued: number;
  readonly lost: number;
}

async function runScenario(s: Scenario, sink: Sink, tern: RunningTern): Promise<Result> {
  const start = Date.now();
  const steadyFrom = start + CONVERGE_MS;
  const relentAt = steadyFrom + STEADY_MS;
  let injected = await inject(s.domain, s.offered ?? s.allowed * 1.5, tern.smtpPort, () => Date.now() >= relentAt, 0);
  s.relent(sink.patience);
  let fullAt: number | undefined;
  const fast = (): boolean => {
    const now = Date.now();
    if (fullAt === undefined && atSpeed(sink, s.after.fullSpeed, now)) fullAt = now;
    return fullAt !== undefined || now >= relentAt + RELENT_MAX_MS;
  };
  injected += await inject(s.domain, s.after.offered, tern.smtpPort, fast, injected);
  await until(() => sink.received.length >= injected, DRAIN_MAX_MS, 'every message').catch(() => undefined);
  const queued = await queuedFor(tern.adminPort, `mx.${s.domain}`);
  const delivered = sink.stats.acceptedAt.filter((at) => at >= steadyFrom && at < relentAt).length;
  const refusals = sink.stats.refusedAt.filter((at) => at >= steadyFrom && at < relentAt).length;
  const achieved = delivered / (STEADY_MS / 1000);
  return {
    scenario: s.name, limit: s.limit, allowed_per_s: s.allowed,
    achieved_per_s: round(achieved), pct_of_allowed: round((100 * achieved) / s.allowed),
    refusals_per_1000: delivered > 0 ? round((1000 * refusals) / delivered) : 0, refusals_steady: refusals, delivered_steady: delivered,
    full_speed_per_s: s.after.fullSpeed,
    full_speed_after_s: fullAt === undefined ? null : round((fullAt - relentAt) / 1000),
    injected, delivered: received(sink), still_queued: queued, lost: injected - received(sink) - queued,
  };
}

const received = (sink: Sink): number => new Set(sink.received.flatMap((m) => m.rcptTo)).size;

/** Recipients Tern still holds for the site (waiting or ready), by its sites API. */
async function queuedFor(adminPort: number, site: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/sites/${site}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).catch(() => undefined);
  return res?.ok ? ((await res.json()) as { queued_recipients: number }).queued_recipients : 0;
}

/** At 90 % of `perSecond` or more over the last 10 seconds. */
function atSpeed(sink: Sink, perSecond: number, now: number): boolean {
  const times = sink.stats.acceptedAt;
  let n = 0;
  for (let i = times.length - 1; i >= 0 && (times[i] as number) > now - 10_000; i--) n++;
  return n >= 0.9 * perSecond * 10;
}

/** `perSecond` messages a second, one SMTP session each, until `done()`; numbered from `first`. */
async function inject(domain: string, perSecond: number, port: number, done: () => boolean, first: number): Promise<number> {
  let sent = 0;
  const started = Date.now();
  const lanes = Math.max(1, Math.ceil(perSecond / 20));
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    for (let i = lane; !done(); i += lanes) {
      const due = started + (i * 1000) / perSecond;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const to = `u${first + i}@${domain}`;
      const reply = await sendMail(port, 'news@campaign.bench', [to], message({ to, body: `${'x'.repeat(76)}\r\n`.repeat(26) }));
      if (reply.startsWith('250')) sent++;
    }
  }));
  return sent;
}

function table(results: readonly Result[]): string {
  const rows = results.map((r) => `| ${r.scenario} | ${r.limit} | ${r.allowed_per_s}/s | ${r.achieved_per_s}/s | ${r.pct_of_allowed} % | ${r.refusals_per_1000} (${r.refusals_steady} for ${r.delivered_steady}) | ${r.full_speed_after_s === null ? `> ${RELENT_MAX_MS / 1000} s` : `${r.full_speed_after_s} s`} (${r.full_speed_per_s}/s) | ${r.lost} of ${r.injected}${r.still_queued > 0 ? ` (${r.still_queued} still queued)` : ''} |`);
  return [
    `converge ${CONVERGE_MS / 1000} s, steady ${STEADY_MS / 1000} s, Tern's shipped rules`,
    '| scenario | receiver | allows | Tern kept (steady) | of allowed | refusals per 1,000 deliveries (steady) | full speed after relenting | lost |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

const round = (n: number): number => Math.round(n * 100) / 100;

function stop(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

await main();
