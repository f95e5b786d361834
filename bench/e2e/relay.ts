/**
 * End-to-end relay benchmark: Tern and Postfix side by side, same load, same sink, one run.
 *
 *   npm run bench                      # 5000 messages per MTA
 *   BENCH_MESSAGES=20000 npm run bench
 *
 * For each MTA: a warm-up batch, then a throughput pass (Postfix's smtp-source injects N × 10 KiB
 * messages over 20 sessions; the clock runs from the first injection to the last delivery counted
 * by smtp-sink), then a latency pass (an in-process SMTP client, 20 persistent sessions, times
 * end-of-DATA → 250 for every message). Tern resolves the sink through an in-process DNS zone;
 * Postfix relays to it through relayhost. Output: one JSON line per MTA, then a short summary.
 * Each also reports the machine's CPU over the throughput pass (busy %, and CPU µs per message
 * summed over every process: the MTA, smtp-source, smtp-sink), and for Tern its threads' share
 * (event loop, libuv pool, V8 helpers), so a slow run can be told from a busy host.
 *
 * Then the same again with DKIM signing (RSA-2048, one key generated per run): Tern with a
 * `dkim.keys` entry for bench.test, against Postfix with OpenDKIM as a milter. This run delivers to
 * a second smtp-sink that dumps every message, so the script can check that each one arrived with a
 * DKIM-Signature and verify a few of them cryptographically (mailauth, key from the generated pair).
 *
 * Environment: BENCH_MESSAGES (5000), BENCH_LATENCY_MESSAGES (2000), BENCH_WARMUP (5000),
 * BENCH_WEBHOOK (1: Tern sends feedback events to an in-process HTTP receiver; the summary reports them),
 * BENCH_TERN_NODE_ARGS (extra node flags for Tern, e.g. --cpu-prof), BENCH_STALL_S (60: give up waiting once the sink has counted nothing new for this long),
 * BENCH_MTAS ("tern,postfix,load-tools"; load-tools is smtp-source straight into smtp-sink, the ceiling of the
 * load itself, plain run only), BENCH_SOURCES (1: smtp-source processes in parallel), BENCH_TERN_LOG (warn), BENCH_REUSE_CONNECTIONS=1 (smtp-source -d: one
 * connection per injecting session instead of one per message), BENCH_DKIM (1; 0 skips the DKIM
 * run), BENCH_DKIM_MESSAGES (5000: throughput-pass messages per MTA in the DKIM run),
 * BENCH_MILTER_SOCKET (unix: OpenDKIM on a Unix socket, as Debian packages it; inet: on 127.0.0.1:PORT),
 * BENCH_TERN_THREADS (Tern's tuning.threads; unset: Tern's default, "auto"), BENCH_SINKS (1: smtp-sink
 * processes, one per loopback address 127.0.0.2, .3, …; above 1, smtp-source K sends to
 * dK.bench.test, whose MX is sink K mod BENCH_SINKS, and the load tools' ceiling spreads likewise).
 *
 * A benchmark, not a test: slow figures are reported, never failed; only a broken setup exits non-zero.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, closeSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDnsZone } from '../../test/support/dns-zone.ts';
import { verifyWithMailauth } from '../../test/support/dkim.ts';
import { freePort } from '../../test/support/ports.ts';
import { masterAlive, privateMainCf } from '../../test/support/postfix.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SIZE = 10_240;
const SESSIONS = 20;
const FROM = 'from@bench.test';
const TO = 'to@bench.test';

const MESSAGES = intEnv('BENCH_MESSAGES', 5000);
const LATENCY_MESSAGES = intEnv('BENCH_LATENCY_MESSAGES', 2000);
// Long enough for V8 to finish tiering Tern's hot code up (docs/performance.md, "Warm-up").
const WARMUP = intEnv('BENCH_WARMUP', 5000);
/** smtp-source processes injecting in parallel (the sessions shared among them). */
const SOURCES = intEnv('BENCH_SOURCES', 1);
/** smtp-sink processes, one per loopback address: one sink, like one source, has a ceiling of its own. */
const SINKS = intEnv('BENCH_SINKS', 1);
const SINK_HOSTS = Array.from({ length: SINKS }, (_, k) => `127.0.0.${2 + k}`);
const SINK_HOST = SINK_HOSTS[0] as string;
/** The recipient domain of smtp-source K: bench.test with one sink, else the domain routed to sink K mod SINKS. */
const sinkDomain = (k: number): string => (SINKS > 1 ? `d${k % SINKS}.bench.test` : 'bench.test');
const STALL_MS = intEnv('BENCH_STALL_S', 60) * 1000;
const MTAS = (process.env.BENCH_MTAS ?? 'tern,postfix,load-tools').split(',').map((s) => s.trim()).filter(Boolean);
const TERN_LOG = process.env.BENCH_TERN_LOG ?? 'warn';
/** Extra node flags for the Tern process, e.g. "--cpu-prof --cpu-prof-dir=scratch/prof" (not allowed in NODE_OPTIONS). */
const TERN_NODE_ARGS = (process.env.BENCH_TERN_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** What runs Tern, before `--config FILE`: `bin/tern.js start`, or a prototype (bench/micro/threads/shards-prototype.ts). */
const TERN_ENTRY = (process.env.BENCH_TERN_ENTRY ?? 'bin/tern.js start').split(' ').filter(Boolean);
/** smtp-source -d: keep each injecting session open across messages instead of one connection per message. */
const REUSE = process.env.BENCH_REUSE_CONNECTIONS === '1';
/** BENCH_TERN_THREADS: Tern's tuning.threads (shards, ADR 0010); unset leaves Tern's default ("auto"). */
const TERN_THREADS = process.env.BENCH_TERN_THREADS;
/** The DKIM run: Tern signing vs Postfix + OpenDKIM, after the plain run. */
const DKIM = process.env.BENCH_DKIM !== '0';
/** BENCH_WEBHOOK=1: Tern sends its feedback events to an HTTP receiver in this process (200 to all). */
const WEBHOOK = process.env.BENCH_WEBHOOK === '1';
/** Postfix + OpenDKIM manages a few hundred msg/s at best, so the DKIM run injects fewer messages. */
const DKIM_MESSAGES = intEnv('BENCH_DKIM_MESSAGES', 5000);
/**
 * How Postfix reaches OpenDKIM. Debian's opendkim.conf uses a Unix socket; over loopback TCP every
 * message took ~70 ms longer on this machine (p50 ~91 ms instead of ~23 ms), which caps 20 sessions
 * near 200 msg/s, so the Unix socket is the fairer default.
 */
const MILTER_SOCKET = process.env.BENCH_MILTER_SOCKET ?? 'unix';
const DKIM_DOMAIN = 'bench.test';
const DKIM_SELECTOR = 'bench';

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return n;
}

const progress = (text: string): void => {
  process.stderr.write(`[bench] ${text}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();

// ---------------------------------------------------------------------------------------------
// Cleanup: every child process and scratch directory registers here; runs on success, on error
// and on SIGINT/SIGTERM. A synchronous last resort on process exit kills whatever is left.

const cleanups: { name: string; run: () => Promise<void> | void }[] = [];
const children = new Set<ChildProcess>();

function onCleanup(name: string, run: () => Promise<void> | void): void {
  cleanups.push({ name, run });
}

let cleaning: Promise<void> | undefined;
/** Once cleanup has begun nothing new may start (a signal can arrive mid-setup). */
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const step = cleanups.pop() as (typeof cleanups)[number];
      try {
        await step.run();
      } catch (err) {
        progress(`cleanup of ${step.name} failed: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}

process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: cleaning up`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

/** Spawn a child that is killed on cleanup. */
function launch(command: string, args: readonly string[], options: { cwd?: string } = {}): ChildProcess {
  if (cleaning) throw new Error(`aborted: not starting ${command}`);
  const child = spawn(command, args, { cwd: options.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function run(command: string, args: readonly string[]): { code: number; out: string } {
  if (cleaning && !args.includes('stop') && !args.includes('abort')) throw new Error(`aborted: not running ${command}`);
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error) return { code: -1, out: r.error.message };
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

// ---------------------------------------------------------------------------------------------
// Postfix's tools: smtp-source (load), smtp-sink (receiver), postfix itself.

function ensurePostfix(): void {
  aptInstall('postfix', ['/usr/sbin/postfix', '/usr/sbin/smtp-source', '/usr/sbin/smtp-sink'], 'postfix postfix/main_mailer_type select No configuration\n');
}

function ensureOpendkim(): void {
  aptInstall('opendkim', ['/usr/sbin/opendkim']);
}

/** Install a Debian package unless every needed file is already there (apt-get update only if the first try fails). */
function aptInstall(pkg: string, needed: readonly string[], preseed?: string): void {
  if (needed.every((p) => existsSync(p))) return;
  progress(`installing Debian package ${pkg} (for ${needed.map((p) => p.split('/').pop()).join(', ')})`);
  if (preseed) {
    const r = spawnSync('debconf-set-selections', { input: preseed, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`debconf-set-selections failed: ${r.stderr || r.error?.message}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let install = spawnSync('apt-get', ['install', '-y', pkg], { env, encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  if (install.status !== 0) {
    spawnSync('apt-get', ['update'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    install = spawnSync('apt-get', ['install', '-y', pkg], { env, encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const missing = needed.filter((p) => !existsSync(p));
  if (install.status !== 0 || missing.length > 0) throw new Error(`cannot install ${pkg} (missing: ${missing.join(', ') || 'none'})`);
}

interface Sink {
  readonly port: number;
  /** Messages the sink has received ("." answered), cumulative. */
  count(): number;
  lastProgressAt(): number;
  /** Resolves with the instant the counter first reached target. */
  reached(target: number): Promise<number>;
}

/**
 * SINKS smtp-sink processes on one port, one per address of SINK_HOSTS, counted as one sink.
 * dumpDir: smtp-sink -d, one file per message received in that directory (names never collide:
 * smtp-sink adds a random suffix).
 */
async function startSink(dumpDir?: string): Promise<Sink> {
  const port = await freePort(SINK_HOSTS);
  const counts = SINK_HOSTS.map(() => 0);
  let count = 0;
  let lastProgress = now();
  const waiters: { target: number; resolve: (at: number) => void }[] = [];
  const progressed = (k: number, n: number, at: number): void => {
    if (n <= (counts[k] as number)) return;
    count += n - (counts[k] as number);
    counts[k] = n;
    lastProgress = at;
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as (typeof waiters)[number];
      if (count >= w.target) {
        waiters.splice(i, 1);
        w.resolve(at);
      }
    }
  };
  await Promise.all(SINK_HOSTS.map((host, k) => startOneSink(host, port, dumpDir, (n, at) => progressed(k, n, at))));
  return {
    port,
    count: () => count,
    lastProgressAt: () => lastProgress,
    reached: (target) => (count >= target ? Promise.resolve(now()) : new Promise((resolve) => waiters.push({ target, resolve }))),
  };
}

/** One smtp-sink on host:port; `counted` hears its cumulative count of messages each time it reports. */
async function startOneSink(host: string, port: number, dumpDir: string | undefined, counted: (n: number, at: number) => void): Promise<void> {
  const dump = dumpDir === undefined ? [] : ['-d', join(dumpDir, '%H%M%S.')];
  const child = launch('/usr/sbin/smtp-sink', ['-c', '-u', 'root', ...dump, `${host}:${port}`, '1000']);
  onCleanup(`smtp-sink on ${host}${dumpDir === undefined ? '' : ' (dumping)'}`, () => stopChild(child));
  let rest = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    const at = now();
    const records = (rest + chunk).split(/[\r\n]/);
    rest = records.pop() ?? '';
    for (const record of records) {
      const m = /mesg=(\d+)/.exec(record);
      if (m) counted(Number(m[1]), at);
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => (stderr += s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Ready when it accepts a connection and greets.
  const deadline = Date.now() + 10_000;
  while (!(await banner(host, port))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`smtp-sink did not start on ${host}:${port}: ${stderr.trim()}`);
    await Promise.race([sleep(100), exited]);
  }
}

/** True when host:port accepts a TCP connection and sends a 220 greeting. */
function banner(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.on('error', () => undefined);
      if (ok) socket.end('QUIT\r\n');
      else socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      buf += s;
      if (buf.includes('\n')) done(buf.startsWith('220'));
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

interface Injection {
  /** Every smtp-source done: the first failure's code and stderr, else 0. */
  readonly done: Promise<{ code: number | null; stderr: string }>;
  readonly children: readonly ChildProcess[];
}

/**
 * SOURCES smtp-source processes in parallel, the messages and sessions shared among them: one
 * smtp-source tops out near 7,800 msg/s (../shared/devbench), below what a many-core MTA may take.
 */
function smtpSource(port: number, messages: number, host: (k: number) => string): Injection {
  const parts = Array.from({ length: Math.min(SOURCES, messages) }, (_, i) => ({
    messages: Math.floor(messages / SOURCES) + (i < messages % SOURCES ? 1 : 0),
    sessions: Math.max(1, Math.floor(SESSIONS / SOURCES) + (i < SESSIONS % SOURCES ? 1 : 0)),
  }));
  const runs = parts.map((p, k) => oneSmtpSource(host(k), port, p.messages, p.sessions, `to@${sinkDomain(k)}`));
  const done = Promise.all(runs.map((r) => r.done)).then((results) => results.find((r) => r.code !== 0) ?? { code: 0, stderr: '' });
  return { done, children: runs.map((r) => r.child) };
}

function oneSmtpSource(host: string, port: number, messages: number, sessions: number, to: string): { done: Promise<{ code: number | null; stderr: string }>; child: ChildProcess } {
  const child = launch('/usr/sbin/smtp-source', [...(REUSE ? ['-d'] : []), '-s', String(sessions), '-m', String(messages), '-l', String(SIZE), '-f', FROM, '-t', to, `${host}:${port}`]);
  let stderr = '';
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => (stderr += s));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.once('exit', (code) => resolve({ code, stderr: stderr.trim() }));
    child.once('error', (err) => resolve({ code: -1, stderr: err.message }));
  });
  return { done, child };
}

// ---------------------------------------------------------------------------------------------
// Latency client: persistent sessions, one transaction after another, end-of-DATA → 250 timed.

class Session {
  readonly #socket: Socket;
  #buffer = '';
  #lines: string[] = [];
  #waiter: ((reply: { text: string; at: number }) => void) | undefined;
  #ready: { text: string; at: number }[] = [];
  #failure: Error | undefined;
  #onFailure: ((err: Error) => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.setNoDelay(true);
    socket.on('data', (chunk: string) => {
      const at = now();
      this.#buffer += chunk;
      for (let i = this.#buffer.indexOf('\n'); i >= 0; i = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, i).replace(/\r$/, '');
        this.#buffer = this.#buffer.slice(i + 1);
        this.#lines.push(line);
        if (/^\d{3}-/.test(line)) continue;
        const reply = { text: this.#lines.join('\n'), at };
        this.#lines = [];
        const waiter = this.#waiter;
        this.#waiter = undefined;
        if (waiter) waiter(reply);
        else this.#ready.push(reply);
      }
    });
    const fail = (err: Error): void => {
      this.#failure ??= err;
      this.#onFailure?.(this.#failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static async open(port: number, host: string): Promise<Session> {
    const socket = connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const session = new Session(socket);
    const greeting = await session.reply();
    if (!greeting.text.startsWith('220')) throw new Error(`greeting: ${greeting.text}`);
    return session;
  }

  reply(timeoutMs = 60_000): Promise<{ text: string; at: number }> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('reply timeout')), timeoutMs);
      this.#waiter = (r) => {
        clearTimeout(timer);
        this.#onFailure = undefined;
        resolve(r);
      };
      this.#onFailure = (err) => {
        clearTimeout(timer);
        reject(err);
      };
    });
  }

  async command(line: string | Buffer): Promise<{ text: string; at: number; sentAt: number }> {
    const sentAt = now();
    this.#socket.write(line);
    const r = await this.reply();
    return { ...r, sentAt };
  }

  write(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  close(): void {
    this.#socket.removeAllListeners('close');
    this.#socket.on('error', () => undefined);
    this.#socket.end('QUIT\r\n');
  }
}

/** A message of exactly SIZE bytes (the terminating dot not included), with a unique Message-ID. */
function makeMessage(n: number): Buffer {
  const id = String(n).padStart(9, '0');
  const head =
    `From: <${FROM}>\r\nTo: <${TO}>\r\nSubject: tern relay bench ${id}\r\n` +
    `Date: ${new Date().toUTCString()}\r\nMessage-ID: <${id}.latency@bench.test>\r\n\r\n`;
  const line = `${'x'.repeat(76)}\r\n`;
  let body = head;
  while (body.length + 2 * line.length <= SIZE) body += line;
  body += `${'y'.repeat(SIZE - body.length - 2)}\r\n`;
  return Buffer.from(body, 'latin1');
}

async function latencyPass(port: number, messages: number, host: string): Promise<{ latencies: number[]; errors: string[] }> {
  const latencies: number[] = [];
  const errors: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    let session: Session | undefined;
    try {
      session = await Session.open(port, host);
      const ehlo = await session.command('EHLO latency.bench.test\r\n');
      if (!ehlo.text.startsWith('250')) throw new Error(`EHLO: ${ehlo.text}`);
      while (next < messages) {
        const n = next++;
        const mail = await session.command(`MAIL FROM:<${FROM}>\r\n`);
        const rcpt = mail.text.startsWith('250') ? await session.command(`RCPT TO:<${TO}>\r\n`) : mail;
        const data = rcpt.text.startsWith('250') ? await session.command('DATA\r\n') : rcpt;
        if (!data.text.startsWith('354')) {
          errors.push(data.text.split('\n')[0] ?? data.text);
          await session.command('RSET\r\n');
          continue;
        }
        session.write(makeMessage(n));
        const end = await session.command('.\r\n');
        if (end.text.startsWith('250')) latencies.push(end.at - end.sentAt);
        else errors.push(end.text.split('\n')[0] ?? end.text);
      }
    } catch (err) {
      errors.push(`session: ${(err as Error).message}`);
    } finally {
      session?.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(SESSIONS, Math.max(1, messages)) }, worker));
  return { latencies, errors };
}

function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

// ---------------------------------------------------------------------------------------------
// One measurement, MTA-agnostic: it needs only the MTA's SMTP port and the shared sink.

interface Measured {
  readonly msgs: number;
  readonly delivered: number;
  readonly seconds: number;
  readonly injectSeconds: number;
  readonly msgPerS: number;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly latencySamples: number;
  readonly latencyPassPerS: number;
  readonly cpu: CpuUse;
  readonly problems: string[];
}

/**
 * CPU over the throughput pass, from /proc: the whole machine (MTA, smtp-source, smtp-sink and
 * this script alike, so the figure compares like with like), and, for Tern, its threads.
 */
interface CpuUse {
  /** Share of all CPUs busy, in percent. */
  readonly busyPct: number;
  /** Machine CPU time per delivered message, in µs. */
  readonly usPerMsg: number;
  /** Tern's CPU time per message by thread kind (main, pool, v8), in µs. */
  readonly threads?: Readonly<Record<string, number>>;
}

// USER_HZ, the unit of /proc CPU times, is 100 on every Linux this bench runs on.
const TICK_US = 10_000;

function machineTicks(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - (fields[3] ?? 0) - (fields[4] ?? 0), total };
}

/** CPU ticks of a process's threads, grouped: the main thread's loop, the shards' loops, libuv's pool, V8's helpers. */
function threadTicks(pid: number): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const kind = tid === String(pid) ? 'main' : comm === 'WorkerThread' ? 'shards' : comm.startsWith('libuv') ? 'pool' : comm.startsWith('V8') ? 'v8' : 'other';
    ticks.set(kind, (ticks.get(kind) ?? 0) + Number(fields[11]) + Number(fields[12]));
  }
  return ticks;
}

function cpuSince(start: { machine: { busy: number; total: number }; threads?: Map<string, number> }, pid: number | undefined, messages: number): CpuUse {
  const end = machineTicks();
  const busy = end.busy - start.machine.busy;
  const total = end.total - start.machine.total;
  const perMsg = (ticks: number): number => Math.round((ticks * TICK_US) / Math.max(1, messages));
  let threads: Record<string, number> | undefined;
  if (pid !== undefined && start.threads) {
    threads = {};
    for (const [kind, ticks] of threadTicks(pid)) threads[kind] = perMsg(ticks - (start.threads.get(kind) ?? 0));
  }
  return { busyPct: total > 0 ? Math.round((100 * busy) / total) : 0, usPerMsg: perMsg(busy), ...(threads ? { threads } : {}) };
}

/** Wait until the sink has counted target messages, or nothing has arrived for STALL_MS. */
async function delivered(sink: Sink, target: number): Promise<{ complete: boolean; at: number }> {
  const since = now();
  const reached = sink.reached(target).then((at) => ({ complete: true, at }));
  let stop = false;
  const stalled = (async () => {
    while (!stop) {
      await sleep(250);
      const last = Math.max(since, sink.lastProgressAt());
      if (now() - last > STALL_MS) return { complete: false, at: last };
    }
    return { complete: true, at: 0 };
  })();
  const result = await Promise.race([reached, stalled]);
  stop = true;
  return result;
}

async function inject(sink: Sink, port: number, messages: number, problems: string[], what: string, host: (k: number) => string): Promise<{ complete: boolean; start: number; end: number; injected: number }> {
  const base = sink.count();
  const start = now();
  const injection = smtpSource(port, messages, host);
  let injected = 0;
  void injection.done.then((r) => {
    injected = now();
    if (r.code !== 0) problems.push(`${what}: smtp-source exited ${r.code}: ${r.stderr.split('\n').slice(-3).join(' | ')}`);
  });
  const outcome = await delivered(sink, base + messages);
  if (!outcome.complete) {
    problems.push(`${what}: sink counted ${sink.count() - base}/${messages} messages; nothing new for ${STALL_MS / 1000}s`);
    await Promise.all(injection.children.map((c) => stopChild(c, 1000)));
  }
  await injection.done;
  return { complete: outcome.complete, start, end: outcome.at, injected: injected || now() };
}

/** `host`: where smtp-source K sends (the MTA on 127.0.0.1; the sinks themselves for the load tools' ceiling). */
async function measure(name: string, port: number, sink: Sink, messages: number, drained?: () => Promise<string | undefined>, pid?: number, host: (k: number) => string = () => '127.0.0.1'): Promise<Measured> {
  const problems: string[] = [];
  if (WARMUP > 0) {
    progress(`${name}: warm-up, ${WARMUP} messages`);
    await inject(sink, port, WARMUP, problems, 'warm-up', host);
  }

  progress(`${name}: throughput pass, ${messages} messages × ${SIZE} bytes over ${SESSIONS} sessions`);
  const base = sink.count();
  const cpuStart = { machine: machineTicks(), ...(pid !== undefined ? { threads: threadTicks(pid) } : {}) };
  const t = await inject(sink, port, messages, problems, 'throughput', host);
  const got = Math.min(messages, sink.count() - base);
  const cpu = cpuSince(cpuStart, pid, got);
  const seconds = (t.end - t.start) / 1000;
  const injectSeconds = (t.injected - t.start) / 1000;
  const check = await drained?.();
  if (check) problems.push(`after throughput pass: ${check}`);

  progress(`${name}: latency pass, ${LATENCY_MESSAGES} messages over ${SESSIONS} persistent sessions`);
  const latencyBase = sink.count();
  const latencyStart = now();
  const lat = await latencyPass(port, LATENCY_MESSAGES, host(0));
  const latencySeconds = (now() - latencyStart) / 1000;
  if (lat.errors.length > 0) problems.push(`latency pass: ${lat.errors.length} errors, first: ${lat.errors[0]}`);
  const latOutcome = await delivered(sink, latencyBase + lat.latencies.length);
  if (!latOutcome.complete) problems.push(`latency pass: sink counted ${sink.count() - latencyBase}/${lat.latencies.length} accepted messages`);
  const sorted = lat.latencies.toSorted((a, b) => a - b);

  return {
    msgs: messages,
    delivered: got,
    seconds,
    injectSeconds,
    msgPerS: seconds > 0 ? got / seconds : 0,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    latencySamples: sorted.length,
    latencyPassPerS: latencySeconds > 0 ? sorted.length / latencySeconds : 0,
    cpu,
    problems,
  };
}

// ---------------------------------------------------------------------------------------------
// Tern: the real daemon as a child process, exactly as an operator starts it.

interface Tern {
  readonly pid: number | undefined;
  readonly port: number;
  readonly adminPort: number;
  queue(): Promise<{ scheduled: number; active: number; recipients: number; feedback?: { pending: number } }>;
  /** With BENCH_WEBHOOK=1: when each acknowledged event arrived (performance.now()). */
  readonly webhookArrivals: number[];
  /** Warning-or-worse log lines seen so far (first 20) and their count. */
  complaints(): { count: number; first: string[] };
  stop(): Promise<void>;
}

/** name: scratch files are work/NAME-spool, NAME.yaml and NAME.log; dkimKeyFile adds a dkim.keys entry for bench.test. */
async function startTern(sinkPort: number, work: string, options: { name?: string; dkimKeyFile?: string } = {}): Promise<Tern> {
  const name = options.name ?? 'tern';
  const dns = await startDnsZone({
    'bench.test': { mx: [{ exchange: 'mx.bench.test', priority: 10 }] },
    'mx.bench.test': { a: [SINK_HOST] },
    ...Object.fromEntries(SINK_HOSTS.flatMap((ip, k) => [
      [`d${k}.bench.test`, { mx: [{ exchange: `mx.d${k}.bench.test`, priority: 10 }] }],
      [`mx.d${k}.bench.test`, { a: [ip] }],
    ])),
  });
  onCleanup('dns zone', () => dns.close());
  const port = await freePort();
  const adminPort = await freePort();
  const spool = join(work, `${name}-spool`);
  const configPath = join(work, `${name}.yaml`);
  const webhookArrivals: number[] = [];
  const webhookUrl = WEBHOOK ? await startWebhookReceiver(webhookArrivals) : undefined;
  writeFileSync(
    configPath,
    [
      'hostname: tern.bench',
      `smtp: { listen: ["127.0.0.1:${port}"], max_message_size: 25MB, max_recipients: 1000, max_clients: 1000 }`,
      `admin: { listen: "127.0.0.1:${adminPort}", token: bench }`,
      `spool: { dir: ${JSON.stringify(spool)}, min_free: 1MB }`,
      `dns: { servers: ["${dns.server}"], timeout: 2s, attempts: 2 }`,
      `delivery: { port: ${sinkPort}, max_active: 10000, timeouts: { idle: 2s } }`,
      'shaping: { defaults: { max_connections: 20, max_messages_per_connection: 1000 } }',
      ...(options.dkimKeyFile === undefined
        ? []
        : [`dkim: { keys: [{ domain: ${DKIM_DOMAIN}, selector: ${DKIM_SELECTOR}, key_file: ${JSON.stringify(options.dkimKeyFile)}, algorithm: rsa-sha256 }] }`]),
      ...(webhookUrl ? [`feedback: { webhook: { url: "${webhookUrl}", secret: bench } }`] : []),
      `log: { level: ${TERN_LOG} }`,
      ...(TERN_THREADS ? [`tuning: { threads: ${TERN_THREADS} }`] : []),
      '',
    ].join('\n'),
  );

  const child = launch(process.execPath, [...TERN_NODE_ARGS, ...TERN_ENTRY, '--config', configPath]);
  const logFile = createWriteStream(join(work, `${name}.log`));
  let ready = false;
  let complaintCount = 0;
  const complaints: string[] = [];
  const tail: string[] = [];
  const onLine = (line: string): void => {
    if (line === '') return;
    logFile.write(`${line}\n`);
    tail.push(line);
    if (tail.length > 20) tail.shift();
    let entry: { msg?: unknown; level?: unknown } | undefined;
    try {
      entry = JSON.parse(line) as { msg?: unknown; level?: unknown };
    } catch {
      entry = undefined;
    }
    if (entry?.msg === 'ready') ready = true;
    if (!entry || typeof entry.level !== 'number' || entry.level >= 40) {
      complaintCount++;
      if (complaints.length < 20) complaints.push(line);
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      lines.forEach(onLine);
    });
    stream?.on('end', () => onLine(rest));
  }
  const stop = async (): Promise<void> => {
    await stopChild(child, 15_000);
    await new Promise<void>((resolve) => logFile.end(resolve));
  };
  onCleanup(name, stop);

  // At log level warn the "ready" line is not printed, so also probe the listener itself.
  const deadline = Date.now() + 30_000;
  while (!ready && !(await banner('127.0.0.1', port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`tern exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail.join('\n')}`);
    }
    if (Date.now() > deadline) throw new Error(`tern not ready after 30s:\n${tail.join('\n')}`);
    await sleep(100);
  }

  const queue = (): Promise<{ scheduled: number; active: number; recipients: number }> =>
    new Promise((resolve, reject) => {
      get({ host: '127.0.0.1', port: adminPort, path: '/api/v1/queue', timeout: 5000, headers: { authorization: 'Bearer bench' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => (body += s));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as { scheduled: number; active: number; recipients: number });
          } catch (err) {
            reject(new Error(`admin /api/v1/queue: ${res.statusCode} ${body.slice(0, 200)}`, { cause: err }));
          }
        });
      }).on('error', reject);
    });
  return { pid: child.pid, port, adminPort, queue, webhookArrivals, complaints: () => ({ count: complaintCount, first: [...complaints] }), stop };
}

/** An HTTP endpoint on loopback that acknowledges every batch and notes when each event came. */
async function startWebhookReceiver(arrivals: number[]): Promise<string> {
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = performance.now();
      const count = (JSON.parse(Buffer.concat(chunks).toString()) as unknown[]).length;
      for (let i = 0; i < count; i++) arrivals.push(now);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup('webhook receiver', () => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/events`;
}

/** Events acknowledged in the busiest second, and how long after the last delivery the outbox drained. */
async function webhookNote(tern: Tern, lastDeliveryAt: number): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const q = await tern.queue();
    if ((q.feedback?.pending ?? 0) === 0) break;
    await sleep(100);
  }
  const arrivals = tern.webhookArrivals;
  const perSecond = new Map<number, number>();
  for (const at of arrivals) perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1);
  const peak = Math.max(0, ...perSecond.values());
  const lag = arrivals.length > 0 ? Math.max(0, (arrivals.at(-1) as number) - lastDeliveryAt) : 0;
  return `webhook: ${arrivals.length} events acknowledged; busiest second ${peak} events/s; outbox drained ${Math.round(lag)} ms after the measurement ended`;
}

// ---------------------------------------------------------------------------------------------
// Postfix: a private instance in a scratch directory, relaying everything to the sink.

const MASTER_CF = `
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
`;

/**
 * `postfix start` reports fatal errors only through syslog(3). Without a syslog daemon there is no
 * /dev/log and the reason is lost, so listen there ourselves (only if nobody else does).
 */
async function syslogListener(): Promise<{ lines: () => string[] }> {
  const script = [
    'import os, socket, sys',
    'p = "/dev/log"',
    'if os.path.exists(p):',
    '    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    '    try:',
    '        c.connect(p); print("existing", flush=True); sys.exit(0)',
    '    except OSError:',
    '        os.unlink(p)',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(p); os.chmod(p, 0o666)',
    'print("listening", flush=True)',
    'while True:',
    '    sys.stdout.write(s.recv(65536).decode("utf-8", "replace").rstrip("\\n\\0") + "\\n"); sys.stdout.flush()',
  ].join('\n');
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const child = launch(python, ['-u', '-c', script]);
  const lines: string[] = [];
  let rest = '';
  const first = new Promise<string>((resolve) => {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) {
        if (p === 'listening' || p === 'existing') resolve(p);
        else lines.push(p);
      }
    });
    child.once('exit', () => resolve('exited'));
    child.once('error', () => resolve('exited'));
  });
  const state = await Promise.race([first, sleep(5000).then(() => 'timeout')]);
  if (state === 'listening') {
    onCleanup('/dev/log listener', async () => {
      await stopChild(child, 2000);
      rmSync('/dev/log', { force: true });
    });
  } else {
    await stopChild(child, 1000);
    if (state !== 'existing') progress('note: no /dev/log listener (python3 unavailable?); postfix start errors may be silent');
  }
  return { lines: () => [...lines] };
}

interface Postfix {
  readonly port: number;
  /** Undefined when the queue is empty, else a description of what is left. */
  leftover(): string | undefined;
  maillogProblems(): string[];
  stop(): Promise<void>;
}

let syslogStarted: Promise<{ lines: () => string[] }> | undefined;
/** One /dev/log listener per run, shared by every Postfix instance (and OpenDKIM). */
const syslog = (): Promise<{ lines: () => string[] }> => (syslogStarted ??= syslogListener());

/** name: the instance lives in work/NAME; mainCf: extra main.cf lines. */
async function startPostfix(sinkPort: number, work: string, options: { name?: string; mainCf?: readonly string[] } = {}): Promise<Postfix> {
  const name = options.name ?? 'postfix';
  const logs = await syslog();
  const dir = join(work, name);
  const etc = join(dir, 'etc');
  const queue = join(dir, 'queue');
  const data = join(dir, 'data');
  const maillog = join(dir, 'maillog');
  for (const d of [dir, etc, queue, data]) mkdirSync(d, { recursive: true, mode: 0o755 });
  // Postfix daemons run as user postfix and must reach their queue through every parent.
  for (const d of [work, dir, etc, queue, data]) chmodSync(d, 0o755);
  const uid = Number(run('id', ['-u', 'postfix']).out);
  const gid = Number(run('id', ['-g', 'postfix']).out);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no "postfix" user; is the postfix package installed?');
  chownSync(data, uid, gid);

  const port = await freePort();
  writeFileSync(
    join(etc, 'main.cf'),
    [
      ...privateMainCf({ queue, data, maillog, prefix: dir, hostname: 'postfix.bench' }),
      `relayhost = [${SINK_HOST}]:${sinkPort}`,
      ...(SINKS > 1 ? [`transport_maps = inline:{ ${SINK_HOSTS.map((ip, k) => `d${k}.bench.test=smtp:[${ip}]:${sinkPort}`).join(', ')} }`] : []),
      'smtp_tls_security_level = none',
      'message_size_limit = 25000000',
      'in_flow_delay = 0',
      'default_process_limit = 100',
      'smtp_destination_concurrency_limit = 20',
      ...(options.mainCf ?? []),
      '',
    ].join('\n'),
  );
  writeFileSync(join(etc, 'master.cf'), `127.0.0.1:${port} inet n - n - - smtpd\n${MASTER_CF.trimStart()}`);

  const why = (what: string, out: string): Error => {
    const log = existsSync(maillog) ? readFileSync(maillog, 'utf8').trim().split('\n').slice(-10) : [];
    return new Error([`${what} failed`, out, ...logs.lines().slice(-10), ...log].filter(Boolean).join('\n  '));
  };
  let started = false;
  const stop = async (): Promise<void> => {
    if (!started) return;
    started = false;
    const r = run('/usr/sbin/postfix', ['-c', etc, 'stop']);
    if (r.code !== 0) progress(`postfix stop exited ${r.code}: ${r.out}`);
    // master removes its pid file once every child is gone.
    const pidFile = join(queue, 'pid', 'master.pid');
    const deadline = Date.now() + 15_000;
    while (existsSync(pidFile) && masterAlive(pidFile) && Date.now() < deadline) await sleep(100);
    if (existsSync(pidFile) && masterAlive(pidFile)) run('/usr/sbin/postfix', ['-c', etc, 'abort']);
  };
  onCleanup(name, stop);

  // `check` creates missing queue directories and fixes ownership; set-permissions is the fallback.
  let check = run('/usr/sbin/postfix', ['-c', etc, 'check']);
  if (check.code !== 0) {
    progress(`postfix check: ${check.out || `exit ${check.code}`}; retrying after set-permissions create-missing`);
    run('/usr/sbin/postfix', ['-c', etc, 'set-permissions', 'create-missing']);
    check = run('/usr/sbin/postfix', ['-c', etc, 'check']);
    if (check.code !== 0) throw why('postfix check', check.out);
  }
  started = true;
  const start = run('/usr/sbin/postfix', ['-c', etc, 'start']);
  if (start.code !== 0) {
    await sleep(300);
    throw why('postfix start', start.out);
  }
  const deadline = Date.now() + 30_000;
  while (!(await banner('127.0.0.1', port))) {
    if (Date.now() > deadline) throw why(`postfix smtpd on 127.0.0.1:${port}`, 'not answering after 30s');
    await sleep(100);
  }

  return {
    port,
    leftover() {
      const left: string[] = [];
      for (const sub of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) {
        const r = run('find', [join(queue, sub), '-type', 'f']);
        const n = r.out === '' ? 0 : r.out.split('\n').length;
        if (n > 0) left.push(`${sub}=${n}`);
      }
      return left.length > 0 ? `postfix queue not empty: ${left.join(' ')}` : undefined;
    },
    maillogProblems() {
      if (!existsSync(maillog)) return [];
      return readFileSync(maillog, 'utf8')
        .split('\n')
        .filter((l) => /(warning|error|fatal|panic):|status=(deferred|bounced)/.test(l));
    },
    stop,
  };
}


// ---------------------------------------------------------------------------------------------
// DKIM: one RSA-2048 key for both signers, OpenDKIM as Postfix's milter, and a check of what arrived.

interface DkimKey {
  readonly keyFile: string;
  /** selector._domainkey.domain. → TXT record, for verifying what arrived. */
  readonly txt: Record<string, string>;
}

/** A fresh RSA-2048 key as PKCS#8 PEM, mode 600, owned by opendkim when that user exists. */
function makeDkimKey(work: string): DkimKey {
  const dir = join(work, 'dkim');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = join(dir, `${DKIM_SELECTOR}.pem`);
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  const uid = Number(run('id', ['-u', 'opendkim']).out);
  const gid = Number(run('id', ['-g', 'opendkim']).out);
  if (Number.isInteger(uid) && Number.isInteger(gid)) chownSync(keyFile, uid, gid);
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return { keyFile, txt: { [`${DKIM_SELECTOR}._domainkey.${DKIM_DOMAIN}.`]: `v=DKIM1; k=rsa; p=${p}` } };
}

/** Where the DKIM run's sink dumps messages: tmpfs when there is one (cheaper for the sink), else the scratch directory. */
function dkimDumpDir(work: string): string {
  if (existsSync('/dev/shm')) {
    try {
      const dir = mkdtempSync(join('/dev/shm', 'tern-bench-dkim-'));
      onCleanup('sink dump directory', () => rmSync(dir, { recursive: true, force: true }));
      return dir;
    } catch {
      // fall through to the scratch directory
    }
  }
  const dir = join(work, 'dkim-sink');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** True when the socket accepts a connection (a milter sends no greeting). */
function accepts(target: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(target);
    const timer = setTimeout(() => done(false), 2000);
    function done(ok: boolean): void {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.destroy();
      resolve(ok);
    }
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

interface Opendkim {
  /** Where Postfix finds the milter, in smtpd_milters syntax. */
  readonly milter: string;
  /** Anything OpenDKIM printed or logged to syslog, apart from its start and stop lines. */
  problems(): string[];
  stop(): Promise<void>;
}

async function startOpendkim(work: string, keyFile: string): Promise<Opendkim> {
  const logs = await syslog();
  let socket: string;
  let milter: string;
  let target: { host: string; port: number } | { path: string };
  if (MILTER_SOCKET === 'inet') {
    const port = await freePort();
    socket = `inet:${port}@127.0.0.1`;
    milter = `inet:127.0.0.1:${port}`;
    target = { host: '127.0.0.1', port };
  } else {
    // OpenDKIM creates the socket after switching to UserID, so it owns the directory; Postfix's
    // smtpd (user postfix, not chrooted here) must be able to connect, hence UMask 000.
    const dir = join(work, 'opendkim');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    for (const d of [work, dir]) chmodSync(d, 0o755);
    const uid = Number(run('id', ['-u', 'opendkim']).out);
    const gid = Number(run('id', ['-g', 'opendkim']).out);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no "opendkim" user; is the opendkim package installed?');
    chownSync(dir, uid, gid);
    const path = join(dir, 'milter.sock');
    socket = `local:${path}`;
    milter = `unix:${path}`;
    target = { path };
  }
  const conf = join(work, 'opendkim.conf');
  writeFileSync(
    conf,
    [
      // Syslog carries problems only: without SyslogSuccess nothing is logged per signed message.
      'Syslog yes',
      `Socket ${socket}`,
      'UMask 000',
      // Sign only. InternalHosts defaults to 127.0.0.1, so Postfix's mail from 127.0.0.1 is signed.
      'Mode s',
      `Domain ${DKIM_DOMAIN}`,
      `Selector ${DKIM_SELECTOR}`,
      `KeyFile ${keyFile}`,
      'Canonicalization relaxed/relaxed',
      'UserID opendkim',
      // The scratch directory sits under /tmp, which is world-writable; OpenDKIM refuses such a key path otherwise.
      'RequireSafeKeys false',
      '',
    ].join('\n'),
  );
  const child = launch('/usr/sbin/opendkim', ['-f', '-x', conf]);
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (s: string) => (output += s));
  }
  const stop = (): Promise<void> => stopChild(child);
  onCleanup('opendkim', stop);
  const logged = (): string[] => logs.lines().filter((l) => /opendkim\[\d+\]/.test(l) && !/OpenDKIM Filter v\S+ (starting|terminating)/.test(l));
  const deadline = Date.now() + 15_000;
  while (!(await accepts(target))) {
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      const why = [output.trim(), ...logged().slice(-5)].filter(Boolean).join('\n  ');
      throw new Error(`opendkim ${exited ? `exited (${child.exitCode ?? child.signalCode})` : 'not listening after 15s'} on ${socket}${why ? `:\n  ${why}` : ''}`);
    }
    await sleep(100);
  }
  return {
    milter,
    problems: () => [...output.split('\n').map((l) => l.trim()).filter(Boolean), ...logged()],
    stop,
  };
}

interface SignatureCheck {
  /** Messages the sink dumped. */
  readonly messages: number;
  /** Of those, how many carry a DKIM-Signature with d=bench.test and a=rsa-sha256. */
  readonly signed: number;
  readonly firstUnsigned?: string;
  /** A few messages verified end to end with mailauth against the generated key. */
  readonly sampled: number;
  readonly passed: number;
  readonly verdicts: string[];
}

/** Check every message the dumping sink holds, verify a few, then empty the directory for the next MTA. */
async function checkSignatures(dumpDir: string, key: DkimKey, samples = 3): Promise<SignatureCheck> {
  const files = readdirSync(dumpDir).toSorted();
  let signed = 0;
  let firstUnsigned: string | undefined;
  const head = Buffer.alloc(16_384);
  for (const file of files) {
    const fd = openSync(join(dumpDir, file), 'r');
    const n = readSync(fd, head, 0, head.length, 0);
    closeSync(fd);
    const text = head.toString('latin1', 0, n);
    const end = text.search(/\r?\n\r?\n/);
    // Unfold, then look for the signature among the message's header fields.
    const fields = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/);
    const sig = fields.find((f) => /^dkim-signature:/i.test(f));
    if (sig && new RegExp(`[;\\s]d=${DKIM_DOMAIN.replaceAll('.', '\\.')}\\s*(;|$)`).test(sig) && /[;\s]a=rsa-sha256\s*(;|$)/.test(sig)) signed++;
    else firstUnsigned ??= `${file}: ${sig ?? 'no DKIM-Signature'}`;
  }
  // Spread the samples over the run: first, middle, last...
  const picks = [...new Set(Array.from({ length: Math.min(samples, files.length) }, (_, i) => Math.round((i * (files.length - 1)) / Math.max(1, samples - 1))))];
  const verdicts: string[] = [];
  let passed = 0;
  for (const i of picks) {
    // smtp-sink writes bare LF line endings; DKIM is computed over CRLF.
    const message = Buffer.from(readFileSync(join(dumpDir, files[i] as string), 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
    const results = await verifyWithMailauth(message, key.txt).catch((err: unknown) => [`error: ${(err as Error).message}`]);
    verdicts.push(results.join('+') || 'none');
    if (results.length > 0 && results.every((r) => r === 'pass')) passed++;
  }
  for (const file of files) rmSync(join(dumpDir, file), { force: true });
  return { messages: files.length, signed, ...(firstUnsigned ? { firstUnsigned } : {}), sampled: picks.length, passed, verdicts };
}

// ---------------------------------------------------------------------------------------------
// One MTA, start to stop: measured figures plus notes for the summary.

interface Outcome {
  readonly measured: Measured;
  readonly notes: string[];
  signatures?: SignatureCheck;
}

async function runTern(label: string, sink: Sink, work: string, messages: number, options: { dkimKeyFile?: string } = {}): Promise<Outcome> {
  const tern = await startTern(sink.port, work, { name: label, ...options });
  progress(`${label} ready: smtp 127.0.0.1:${tern.port}, admin 127.0.0.1:${tern.adminPort}`);
  const drained = async (): Promise<string | undefined> => {
    // The sink has counted everything; the queue should follow within moments.
    for (let i = 0; i < 20; i++) {
      const q = await tern.queue();
      if (q.recipients === 0) return undefined;
      await sleep(100);
    }
    return `tern queue not empty: ${JSON.stringify(await tern.queue())}`;
  };
  const measured = await measure(label, tern.port, sink, messages, drained, tern.pid);
  const measuredAt = performance.now();
  const webhook = WEBHOOK ? [await webhookNote(tern, measuredAt)] : [];
  const q = await tern.queue().catch((err: unknown) => ({ error: (err as Error).message }));
  const { count, first } = tern.complaints();
  const notes = [`queue at end: ${JSON.stringify(q)}`, ...webhook, ...(count > 0 ? [`${count} warning/error log lines, first: ${first.slice(0, 5).join(' || ')}`] : [])];
  await tern.stop();
  return { measured, notes };
}

async function runPostfix(label: string, sink: Sink, work: string, messages: number, options: { mainCf?: readonly string[] } = {}): Promise<Outcome> {
  const postfix = await startPostfix(sink.port, work, { name: label.replace(/[^a-z0-9-]/g, '-'), ...options });
  progress(`${label} ready: smtpd 127.0.0.1:${postfix.port}`);
  const drained = async (): Promise<string | undefined> => {
    for (let i = 0; i < 20; i++) {
      if (postfix.leftover() === undefined) return undefined;
      await sleep(100);
    }
    return postfix.leftover();
  };
  const measured = await measure(label, postfix.port, sink, messages, drained);
  const problems = postfix.maillogProblems();
  const notes = problems.length > 0 ? [`${problems.length} maillog warnings, first: ${problems.slice(0, 3).join(' || ')}`] : [];
  await postfix.stop();
  return { measured, notes };
}

// ---------------------------------------------------------------------------------------------

const round = (x: number | null, digits: number): number | null => (x === null ? null : Number(x.toFixed(digits)));
const ms = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);

function jsonLine(bench: string, mta: string, r: Measured, extra: Record<string, unknown>): string {
  return JSON.stringify({
    bench,
    mta,
    node: process.version,
    cpus: availableParallelism(),
    msgs: r.msgs,
    size: SIZE,
    seconds: round(r.seconds, 3),
    msg_per_s: round(r.msgPerS, 1),
    p50_ms: round(r.p50, 2),
    p99_ms: round(r.p99, 2),
    cpu_busy_pct: r.cpu.busyPct,
    cpu_us_per_msg: r.cpu.usPerMsg,
    ...(r.cpu.threads ? { tern_cpu_us_per_msg: r.cpu.threads } : {}),
    ...(r.delivered < r.msgs ? { delivered: r.delivered } : {}),
    ...extra,
  });
}

function summary(title: string, results: ReadonlyMap<string, Outcome>): void {
  const width = Math.max(8, ...[...results.keys()].map((k) => k.length));
  console.log(title);
  for (const [mta, { measured: r, notes, signatures: s }] of results) {
    console.log(
      `  ${mta.padEnd(width)} ${r.msgPerS.toFixed(0).padStart(6)} msg/s end to end (${r.delivered}/${r.msgs} in ${r.seconds.toFixed(2)} s; ` +
        `injection done after ${r.injectSeconds.toFixed(2)} s)`,
    );
    console.log(
      `  ${''.padEnd(width)} ingest latency p50 ${ms(r.p50)}, p99 ${ms(r.p99)} (${r.latencySamples} messages on ${SESSIONS} persistent sessions, ` +
        `${r.latencyPassPerS.toFixed(0)} msg/s accepted)`,
    );
    const threads = r.cpu.threads ? `; Tern's threads ${Object.entries(r.cpu.threads).map(([k, v]) => `${k} ${v}`).join(', ')} µs/msg` : '';
    console.log(`  ${''.padEnd(width)} machine CPU ${r.cpu.busyPct} % busy, ${r.cpu.usPerMsg} µs per message (all processes)${threads}`);
    if (s) {
      console.log(
        `  ${''.padEnd(width)} DKIM-Signature (d=${DKIM_DOMAIN}, rsa-sha256) on ${s.signed}/${s.messages} messages the sink received; ` +
          `mailauth verified ${s.passed}/${s.sampled} sampled (${s.verdicts.join(', ')})`,
      );
      if (s.firstUnsigned) console.log(`  ${''.padEnd(width)} first unsigned: ${s.firstUnsigned}`);
    }
    for (const p of [...r.problems, ...notes]) console.log(`  ${''.padEnd(width)} ${p}`);
  }
}

async function main(): Promise<void> {
  for (const mta of MTAS) if (!['tern', 'postfix', 'load-tools'].includes(mta)) throw new Error(`BENCH_MTAS: unknown MTA "${mta}"`);
  if (MESSAGES < 1) throw new Error('BENCH_MESSAGES must be at least 1');
  if (DKIM && DKIM_MESSAGES < 1) throw new Error('BENCH_DKIM_MESSAGES must be at least 1');
  if (MILTER_SOCKET !== 'unix' && MILTER_SOCKET !== 'inet') throw new Error(`BENCH_MILTER_SOCKET must be unix or inet, got "${MILTER_SOCKET}"`);
  ensurePostfix();
  if (DKIM && MTAS.includes('postfix')) ensureOpendkim();

  const work = mkdtempSync(join(tmpdir(), 'tern-bench-'));
  onCleanup('scratch directory', () => rmSync(work, { recursive: true, force: true }));
  const sink = await startSink();
  progress(`smtp-sink on ${SINK_HOSTS.join(', ')} port ${sink.port}; scratch ${work}; node ${process.version}, ${availableParallelism()} cpus`);

  // Plain relay.
  const plain = new Map<string, Outcome>();
  for (const mta of MTAS) {
    if (mta === 'tern') plain.set(mta, await runTern('tern', sink, work, MESSAGES));
    else if (mta === 'postfix') plain.set(mta, await runPostfix('postfix', sink, work, MESSAGES));
    else plain.set(mta, { measured: await measure(mta, sink.port, sink, MESSAGES, undefined, undefined, (k) => SINK_HOSTS[k % SINKS] as string), notes: ['smtp-source straight into smtp-sink: no MTA; the most this load can show'] });
  }

  // DKIM: same load, fewer messages, a sink that keeps what it receives so the signatures can be checked.
  const dkim = new Map<string, Outcome>();
  if (DKIM) {
    const key = makeDkimKey(work);
    const dumpDir = dkimDumpDir(work);
    const dkimSink = await startSink(dumpDir);
    progress(`DKIM run: RSA-2048 key ${key.keyFile}; dumping smtp-sink on ${SINK_HOSTS.join(', ')} port ${dkimSink.port} into ${dumpDir}`);
    for (const mta of MTAS) {
      if (mta === 'tern') {
        const outcome = await runTern('tern-dkim', dkimSink, work, DKIM_MESSAGES, { dkimKeyFile: key.keyFile });
        outcome.signatures = await checkSignatures(dumpDir, key);
        dkim.set('tern', outcome);
      } else if (mta === 'postfix') {
        const opendkim = await startOpendkim(work, key.keyFile);
        progress(`opendkim ready: milter ${opendkim.milter}`);
        const outcome = await runPostfix('postfix+opendkim', dkimSink, work, DKIM_MESSAGES, {
          mainCf: [`smtpd_milters = ${opendkim.milter}`, 'non_smtpd_milters = $smtpd_milters', 'milter_default_action = tempfail'],
        });
        await opendkim.stop();
        const problems = opendkim.problems();
        if (problems.length > 0) outcome.notes.push(`${problems.length} opendkim log lines, first: ${problems.slice(0, 3).join(' || ')}`);
        outcome.signatures = await checkSignatures(dumpDir, key);
        dkim.set('postfix+opendkim', outcome);
      }
    }
  }

  const ratioOf = (a: Outcome | undefined, b: Outcome | undefined): number | null =>
    a && b && b.measured.msgPerS > 0 ? round(a.measured.msgPerS / b.measured.msgPerS, 2) : null;
  const unsigned = (o: Outcome): Record<string, unknown> => {
    const s = o.signatures;
    return s && s.signed < s.messages ? { unsigned: s.messages - s.signed } : {};
  };

  const tern = plain.get('tern');
  const postfix = plain.get('postfix');
  const ratio = ratioOf(tern, postfix);
  if (tern) console.log(jsonLine('relay', 'tern', tern.measured, postfix ? { peer: 'postfix', ratio } : {}));
  if (postfix) console.log(jsonLine('relay', 'postfix', postfix.measured, {}));
  const loadTools = plain.get('load-tools');
  if (loadTools) console.log(jsonLine('relay', 'load-tools', loadTools.measured, {}));
  const ternDkim = dkim.get('tern');
  const postfixDkim = dkim.get('postfix+opendkim');
  const dkimRatio = ratioOf(ternDkim, postfixDkim);
  if (ternDkim) console.log(jsonLine('relay-dkim', 'tern', ternDkim.measured, { ...unsigned(ternDkim), ...(postfixDkim ? { peer: 'postfix+opendkim', ratio: dkimRatio } : {}) }));
  if (postfixDkim) console.log(jsonLine('relay-dkim', 'postfix+opendkim', postfixDkim.measured, unsigned(postfixDkim)));

  const load = `${SIZE} B, ${SESSIONS} injecting sessions (${REUSE ? 'connections reused' : 'one connection per message'}), loopback, ${availableParallelism()} cpus, node ${process.version}`;
  console.log('');
  summary(`relay bench: ${MESSAGES} messages × ${load}`, plain);
  if (ratio !== null) console.log(`  tern/postfix throughput ratio: ${ratio.toFixed(2)}`);
  if (loadTools && tern) console.log(`  tern at ${((100 * tern.measured.msgPerS) / Math.max(1, loadTools.measured.msgPerS)).toFixed(0)} % of what the load tools alone reach (${SOURCES} smtp-source → ${SINKS} smtp-sink)`);
  if (DKIM) {
    summary(`relay-dkim bench (RSA-2048, relaxed/relaxed; OpenDKIM on a${MILTER_SOCKET === 'unix' ? ' Unix' : 'n inet'} socket): ${DKIM_MESSAGES} messages × ${load}`, dkim);
    if (dkimRatio !== null) {
      console.log(`  tern-dkim/postfix+opendkim throughput ratio: ${dkimRatio.toFixed(2)} (issue target ≥ 5: ${dkimRatio >= 5 ? 'met' : 'not met'})`);
    }
    const p99 = ternDkim?.measured.p99;
    if (p99 !== undefined && p99 !== null) console.log(`  tern-dkim ingest p99: ${ms(p99)} (issue target < 100 ms: ${p99 < 100 ? 'met' : 'not met'})`);
  }
}

try {
  await main();
} catch (err) {
  process.exitCode = 1;
  console.error(`bench: setup failed: ${(err as Error).stack ?? String(err)}`);
} finally {
  await cleanupAll();
}
