import { MessageChannel, Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Config } from '../config/index.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { errorKind, RepeatedLog } from '../lib/repeated-log.ts';
import type { PoolView } from '../delivery/index.ts';
import { mergeKpiLists, mergeKpiViews, openEventLog, type EventLog, type KpiView } from '../feedback/index.ts';
import type { Shaper } from '../shaping/index.ts';
import type { WarmupPort } from '../model/egress.ts';
import { serveShard, type ShardLink } from '../shaping/remote.ts';
import { SessionTally } from '../shaping/sessions.ts';
import { PEAK_WINDOW_MS } from '../delivery/limits.ts';
import { shardConfig } from './config.ts';
import { caller, type Caller } from './rpc.ts';
import { sumMaps, sumOperated, sumQueueViews, type QueueView, type Shards } from './shards.ts';
import type { MessageView } from '../queue/index.ts';
import type { Operated } from '../model/selector.ts';
import type { ShardData, ShardNote } from './worker.ts';
import type { Readiness } from '../model/readiness.ts';

/** A shard that has not answered /readyz's question within this is counted not ready. */
const READINESS_DEADLINE_MS = 2_000;

function withDeadline<T>(promise: Promise<T>, ms: number, clock: Clock): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = clock.at(clock.now() + ms, () => reject(new Error(`no answer within ${ms} ms`)));
  });
  return Promise.race([promise, late]).finally(() => timer?.cancel());
}

export interface WorkerShardsDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** The shaper every shard's pools ask (src/shaping/remote.ts). */
  readonly shaper: Pick<Shaper, 'path' | 'acquire' | 'release' | 'refund' | 'observe'>;
  /** Warm-up's counts, which shards' attempts go into (docs/egress.md). */
  readonly warmup?: WarmupPort;
  /** A shard saw a hard bounce: the address goes on the suppression list (when enabled). */
  readonly suppress?: (domain: string, address: string, detail: string) => void;
  /** Where shards' log lines go; without it each shard writes its own to stdout. */
  readonly logLine?: (line: string) => void;
  /** A shard died: its partition is stuck until the process restarts (the spool keeps it safe). */
  readonly onFailure: (err: Error) => void;
}

interface Running {
  readonly worker: Worker;
  readonly rpc: Caller;
  readonly link: ShardLink;
}

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

// The worker's file beside this one: .ts when run from source, .js once built.
const ENTRY = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

/**
 * N shards in worker threads, and the coordinator's side of them (ADR 0010): each shard is
 * started with its share of the settings and a port to the shaper; start and stop steps go to
 * all of them; admin's views are their answers summed.
 */
export function workerShards(config: Config, threads: number, deps: WorkerShardsDeps): Shards {
  const { log } = deps;
  const eventLog: EventLog | undefined = config.feedback.log
    ? openEventLog({ path: config.feedback.log.path, maxBytes: config.feedback.log.max_size, keep: config.feedback.log.keep })
    : undefined;
  let closing = false;
  let addresses: { host: string; port: number }[] = [];
  const settings = shardConfig(config, threads);

  const faults = new RepeatedLog(log, deps.clock);
  const sessions = new SessionTally(PEAK_WINDOW_MS);
  const spawn = (shard: number): Running => {
    const { port1, port2 } = new MessageChannel();
    const data: ShardData = { config: settings, shard, threads, level: log.level, forwardLogs: deps.logLine !== undefined, shaping: port2 };
    const worker = new Worker(ENTRY, { workerData: data, transferList: [port2] });
    const rpc = caller(worker);
    let down = false;
    // An uncaught error is followed by the worker's exit: report the shard once.
    const failed = (err: Error): void => {
      if (down) return;
      down = true;
      rpc.fail(err);
      if (closing) return;
      log.fatal({ err, shard }, 'a shard stopped; its spool partition waits for a restart');
      deps.onFailure(err);
    };
    worker.on('message', (m: ShardNote) => {
      if (m.t === 'log') deps.logLine?.(m.line);
      else if (m.t === 'events') eventLog?.write(m.events).catch((err: unknown) => faults.warn(`event-log:${errorKind(err)}`, { err }, 'feedback: cannot write the event log'));
      else if (m.t === 'suppress') deps.suppress?.(m.domain, m.address, m.detail);
    });
    worker.on('error', failed);
    worker.on('exit', (code) => failed(new Error(`shard ${shard} exited with code ${code}`)));
    return { worker, rpc, link: serveShard(port1, deps.shaper, sessions, deps.clock, deps.warmup) };
  };
  const shards = Array.from({ length: threads }, (_, k) => spawn(k));
  const all = <T>(op: string, arg?: unknown): Promise<T[]> => Promise.all(shards.map((s) => s.rpc.call<T>(op, arg)));

  return {
    async recover() {
      await all('recover');
    },
    async run() {
      await all('run');
    },
    async listen() {
      // Shard 0 binds first; the others share the ports it got (port 0 in the config means any).
      const [first, ...rest] = shards as [Running, ...Running[]];
      addresses = await first.rpc.call<{ host: string; port: number }[]>('listen');
      await Promise.all(rest.map((s) => s.rpc.call('listen', addresses)));
    },
    async drain(graceMs) {
      // A shard that died has nothing left to finish; the others still do.
      const results = await Promise.allSettled(shards.map((s) => s.rpc.call('drain', graceMs)));
      for (const r of results) if (r.status === 'rejected') log.warn({ err: r.reason as Error }, 'a shard could not drain');
    },
    async closeIngress() {
      await all('close-ingress');
    },
    async close() {
      const results = await Promise.allSettled(shards.map((s) => s.rpc.call('close')));
      closing = true;
      for (const s of shards) s.link.close();
      await Promise.all(shards.map((s) => s.worker.terminate()));
      await eventLog?.close();
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
    shapingChanged(change, path) {
      for (const s of shards) {
        s.link.changed(path);
        s.rpc.call('changed', { change, path }).catch((err: unknown) => log.warn({ err }, 'a shard did not take a shaping change'));
      }
    },
    async setSuspensions(list) {
      await all('suspensions', list);
    },
    flush: async (selector) => sumOperated(await all<Operated>('flush', selector)),
    bounce: async (selector, reason) => sumOperated(await all<Operated>('bounce', { selector, reason })),
    async message(id) {
      return (await all<MessageView | undefined>('message', id)).find((m) => m !== undefined);
    },
    reloadKeys() {
      // Each shard reads the key files itself: no key material crosses threads.
      for (const s of shards) s.rpc.call('reload-keys').catch((err: unknown) => log.error({ err }, 'reload: a shard did not re-read its keys'));
    },
    setLogLevel(level) {
      for (const s of shards) s.rpc.call('log-level', level).catch((err: unknown) => log.warn({ err }, 'reload: a shard did not take the new log level'));
    },
    rulesChanged() {
      for (const s of shards) s.link.reloaded();
    },
    async record(events) {
      // Shard 0's outbox: any shard's would do; KPIs and the webhook merge across them.
      await (shards[0] as Running).rpc.call('record', events);
    },
    suppressionsChanged(change) {
      for (const s of shards) s.rpc.call('suppression', change).catch((err: unknown) => log.warn({ err }, 'a shard did not take a suppression change'));
    },
    egressChanged(capped) {
      for (const s of shards) s.link.capped(capped);
    },
    async setWebhooks(feedback) {
      await all('webhooks', feedback);
    },
    smtpAddresses: () => [...addresses],
    async metrics(registry) {
      const parts = [await registry.getMetricsAsJSON(), ...(await all<MetricsJson>('metrics'))];
      return AggregatorRegistry.aggregate(parts).metrics();
    },
    async queue() {
      return sumQueueViews(await all<QueueView>('queue'));
    },
    async readiness() {
      // A shard that died or hangs is a shard not ready; the others still answer.
      const answers = await Promise.allSettled(shards.map((s) => withDeadline(s.rpc.call<Readiness>('readiness'), READINESS_DEADLINE_MS, deps.clock)));
      return answers.map((a) => (a.status === 'fulfilled' ? a.value : undefined));
    },
    async kpi(scope, id) {
      return mergeKpiViews(await all<KpiView | undefined>('kpi', { scope, id }));
    },
    async kpiList(scope) {
      return mergeKpiLists(await all<KpiView[]>('kpiList', { scope }));
    },
    async pools() {
      return sumMaps(await all<Map<string, PoolView>>('pools'), (a, b) => ({ connections: a.connections + b.connections, waiting: a.waiting + b.waiting, ...(a.tls_policies || b.tls_policies ? { tls_policies: { ...a.tls_policies, ...b.tls_policies } } : {}) }));
    },
    async queued() {
      return sumMaps(await all<Map<string, number>>('queued'), (a, b) => a + b);
    },
  };
}
