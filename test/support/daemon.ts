import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { validateConfig, type Config } from '../../src/config/index.ts';
import { createDaemon, type Daemon } from '../../src/daemon.ts';
import { systemClock, type Clock } from '../../src/lib/clock.ts';

/** A log line as pino writes it; tests read outcomes from these, as an operator would. */
export type LogLine = Record<string, unknown> & { msg: string; event?: string; recipient?: string; reply?: string; cause?: string };

export interface RunningTern {
  readonly daemon: Daemon;
  readonly logs: LogLine[];
  /** Final or retry log lines for one recipient, in order. */
  outcomes(recipient: string): LogLine[];
  readonly config: Config;
  readonly smtpPort: number;
  readonly adminPort: number;
  readonly spoolDir: string;
  stop(): Promise<void>;
}

/** Raw config (YAML-shaped) for a test daemon on loopback, merged over test defaults. */
/** The admin token every test daemon is given; `adminFetch` sends it. */
export const ADMIN_TOKEN = 'test-admin-token';

/** fetch() on a test daemon's admin listener, with the bearer token. */
export function adminFetch(port: number, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });
}

export function testConfig(raw: { dnsServer: string; deliveryPort: number; spoolDir: string } & Record<string, unknown>): Record<string, unknown> {
  const { dnsServer, deliveryPort, spoolDir, ...rest } = raw;
  const base: Record<string, any> = {
    hostname: 'tern.test',
    smtp: { listen: ['127.0.0.1:0'] },
    admin: { listen: '127.0.0.1:0', token: ADMIN_TOKEN },
    spool: { dir: spoolDir, min_free: '1MB' },
    dns: { servers: [dnsServer], timeout: '300ms', attempts: 2 },
    delivery: {
      port: deliveryPort,
      tls: 'opportunistic',
      retry: { base: '300ms', max: '2s', jitter: 0 },
      timeouts: { connect: '2s', greeting: '2s', command: '3s', data: '5s', idle: '300ms' },
    },
    log: { level: process.env.TERN_TEST_LOG ?? 'silent' },
    // One loop whatever the machine's CPUs, so a suite behaves alike everywhere; TERN_TEST_THREADS=2
    // runs it with shards (ADR 0010); the tests of shards set their own.
    tuning: { threads: Number(process.env.TERN_TEST_THREADS ?? 1) },
  };
  return merge(base, rest);
}

function merge(a: Record<string, any>, b: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object' ? merge(a[k], v) : v;
  }
  return out;
}

export function tempDir(prefix = 'tern-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** The real daemon, in process: real spool on disk, real sockets, real DNS server. */
export async function startTern(raw: Record<string, unknown>, clock: Clock = systemClock): Promise<RunningTern> {
  const loaded = validateConfig(raw, 'test', process.cwd());
  if (!loaded.ok) throw new Error(`bad test config: ${JSON.stringify(loaded.problems)}`);
  const config = loaded.config;
  const logs: LogLine[] = [];
  const echo = process.env.TERN_TEST_LOG !== undefined;
  const logLine = (line: string): void => {
    logs.push(JSON.parse(line) as LogLine);
    if (echo) process.stderr.write(line);
  };
  const log = pino({ level: echo ? config.log.level : 'info' }, { write: logLine });
  const daemon = createDaemon(config, { clock, log, logLine });
  await daemon.start();
  const smtp = daemon.smtpAddresses()[0];
  const admin = daemon.adminAddress();
  if (!smtp || !admin) throw new Error('daemon did not bind');
  const outcomes = (recipient: string): LogLine[] =>
    logs.filter((l) => l.recipient === recipient && ['delivered', 'retry', 'failed'].includes(String(l.event)));
  return { daemon, logs, outcomes, config, smtpPort: smtp.port, adminPort: admin.port, spoolDir: config.spool.dir, stop: () => daemon.stop(2_000) };
}
