/**
 * A measuring prototype for ADR 0010, not the product: `tern start` in N worker threads, each a
 * whole Tern (its own shaper and admin, so limits are per thread here) over its own spool
 * (spool.dir/shard-K), all listening on the same SMTP address with reusePort. It answers one
 * question before the shards are built: does throughput grow with threads when the loops split
 * the connections? Run it in place of Tern in the relay bench:
 *
 *   BENCH_TERN_ENTRY="bench/micro/threads/shards-prototype.ts 2" BENCH_MTAS=tern npm run bench
 *
 * Shard K's admin listens on the configured port + K (the bench reads shard 0's queue only).
 */
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../../src/config/index.ts';
import { createDaemon } from '../../../src/daemon.ts';
import { systemClock } from '../../../src/lib/clock.ts';

interface Job { readonly config: string; readonly shard: number }

if (isMainThread) {
  const threads = Number(process.argv[2] ?? 2);
  const at = process.argv.indexOf('--config');
  const config = process.argv[at + 1];
  if (at < 0 || !config || !(threads >= 1)) throw new Error('usage: shards-prototype.ts THREADS --config FILE');
  const workers = Array.from({ length: threads }, (_, shard) => new Worker(new URL(import.meta.url), { workerData: { config, shard } satisfies Job }));
  const stop = (): void => { for (const w of workers) w.postMessage('stop'); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} else {
  const { config: file, shard } = workerData as Job;
  const loaded = loadConfig(file);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const base = loaded.config;
  const spool = join(base.spool.dir, `shard-${shard}`);
  const [host, port] = base.admin.listen.split(/:(?=\d+$)/) as [string, string];
  const config = {
    ...base,
    smtp: { ...base.smtp, reusePort: true },
    spool: { ...base.spool, dir: spool },
    feedback: { ...base.feedback, dir: join(spool, 'feedback') },
    shaping: { ...base.shaping, state_dir: join(spool, 'shaping') },
    admin: { ...base.admin, listen: `${host}:${Number(port) + shard}` },
  } as Config;
  const log = pino({ level: config.log.level, base: { service: 'tern', shard } });
  const daemon = createDaemon(config, { clock: systemClock, log });
  await daemon.start();
  log.info({ smtp: daemon.smtpAddresses() }, 'ready');
  parentPort?.once('message', () => void daemon.stop(5_000).then(() => process.exit(0)));
}
