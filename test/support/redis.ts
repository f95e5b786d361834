import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { until } from './smtp-client.ts';

/** Debian's redis-server on 127.0.0.1:port, without persistence; resolves once it answers PING. */
export async function startRedis(port: number): Promise<ChildProcess> {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  // Refused until the server listens: each try's error is the answer "not yet", not news.
  probe.on('error', () => undefined);
  await until(async () => probe.connect().then(() => probe.ping()).then(() => true, () => { probe.disconnect(); return false; }), 10_000, 'redis-server to answer');
  probe.disconnect();
  return proc;
}

/** `kill -9`, as a crashed or unplugged Redis; resolves once the process is gone. */
export async function killRedis(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGKILL');
  await gone;
}
