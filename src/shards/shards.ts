import type { Registry } from 'prom-client';
import type { PoolView } from '../delivery/index.ts';
import type { DkimKey } from '../dkim/index.ts';
import type { Config } from '../config/index.ts';
import type { KpiScope, KpiView } from '../feedback/index.ts';
import type { CappedSources } from '../model/egress.ts';
import type { FeedbackEvent } from '../model/event.ts';
import type { SuppressionChange } from '../model/suppression.ts';
import type { Readiness } from '../model/readiness.ts';
import type { QueueId } from '../model/ids.ts';
import type { Operated, Selector } from '../model/selector.ts';
import type { MessageView } from '../queue/index.ts';
import type { Suspension } from '../model/suspension.ts';
import type { Pipeline } from '../pipeline.ts';
import type { Change } from '../shaping/index.ts';

/** The queue as GET /api/v1/queue shows it: summed over shards. */
export interface QueueView {
  readonly scheduled: number;
  readonly active: number;
  readonly recipients: number;
  readonly delivery: { readonly sites: number; readonly connections: number; readonly waiting: number };
  readonly feedback: { readonly pending: number; readonly bytes: number; readonly segments: number };
}

/**
 * The pipelines of a process, one or several (ADR 0010), as the daemon drives them: the steps
 * of a start and a stop, what the shaper tells them, and the views admin merges. The daemon
 * holds one of these and does not know how many loops run behind it.
 */
export interface Shards {
  recover(): Promise<void>;
  /** Resolves once every recovered message is scheduled. */
  run(): Promise<void>;
  listen(): Promise<void>;
  drain(graceMs: number): Promise<void>;
  /** Every shard's SMTP listeners close (a drain); delivery goes on. */
  closeIngress(): Promise<void>;
  close(): Promise<void>;
  shapingChanged(change: Change, path: string): void;
  /** The operator's suspensions in force now, to every shard (before it runs, and on each change). */
  setSuspensions(list: readonly Suspension[]): Promise<void>;
  /** POST /api/v1/flush: every shard's waiting mail the selector names, made due now; counts summed. */
  flush(selector: Selector): Promise<Operated>;
  /** POST /api/v1/bounce: every shard's waiting mail the selector names, failed (cause "admin"); counts summed. */
  bounce(selector: Selector, reason: string): Promise<Operated>;
  /** GET /api/v1/messages/:id: the shard whose queue holds it answers. */
  message(id: QueueId): Promise<MessageView | undefined>;
  /** SIGHUP, the keys checked good (`keys`): every shard signs with the files as they are now. */
  reloadKeys(keys: readonly DkimKey[]): void;
  /** New MX rules are in force: every shard's paths get their settings afresh. */
  rulesChanged(): void;
  /** SIGHUP changed log.level: shards' loggers follow (one loop's is the daemon's own). */
  setLogLevel(level: string): void;
  /** Events made outside the pipeline (a bounce returned later): one shard's feedback records them. */
  record(events: readonly FeedbackEvent[]): Promise<void>;
  /** The suppression list changed: every shard's copy follows (docs/bounces.md, "Suppression"). */
  suppressionsChanged(change: SuppressionChange): void;
  /** Warm-up caps changed (docs/egress.md): every shard picks sources by them (one loop reads them directly). */
  egressChanged(capped: CappedSources): void;
  /** SIGHUP changed the webhook endpoints: every shard's feedback sends to the new ones. */
  setWebhooks(feedback: Config['feedback']): Promise<void>;
  smtpAddresses(): { host: string; port: number }[];
  /** The exposition text: `registry` (the process's metrics) with every shard's. */
  metrics(registry: Registry): Promise<string>;
  queue(): Promise<QueueView>;
  /** Each shard's readiness; `undefined` for a shard that did not answer. */
  readiness(): Promise<(Readiness | undefined)[]>;
  kpi(scope: KpiScope, id: string): Promise<KpiView | undefined>;
  /** Every campaign's (or delivery's) KPIs, merged over the shards, the most recently active first. */
  kpiList(scope: KpiScope): Promise<KpiView[]>;
  pools(): Promise<Map<string, PoolView>>;
  queued(): Promise<Map<string, number>>;
}

/** One pipeline on this thread: `tuning.threads: 1`, today's single loop. */
export function localShards(pipeline: Pipeline, reloadKeys: (keys: readonly DkimKey[]) => void): Shards {
  return {
    recover: () => pipeline.recover(),
    run: () => pipeline.run(),
    listen: () => pipeline.listen(),
    drain: (graceMs) => pipeline.drain(graceMs),
    closeIngress: () => pipeline.closeIngress(),
    close: () => pipeline.close(),
    shapingChanged: (change, path) => pipeline.shapingChanged(change, path),
    setSuspensions: async (list) => pipeline.setSuspensions(list),
    flush: (selector) => pipeline.flush(selector),
    bounce: (selector, reason) => pipeline.bounce(selector, reason),
    message: (id) => pipeline.message(id),
    reloadKeys,
    // The pools read the shaper's settings directly: nothing to push.
    rulesChanged: () => undefined,
    setLogLevel: () => undefined,
    setWebhooks: (feedback) => pipeline.setWebhooks(feedback),
    egressChanged: () => undefined,
    suppressionsChanged: (change) => pipeline.suppressionChanged(change),
    record: (events) => pipeline.feedback.record(events),
    smtpAddresses: () => pipeline.smtpAddresses(),
    metrics(registry) {
      pipeline.refreshGauges();
      return registry.metrics();
    },
    queue: () => Promise.resolve(queueView(pipeline)),
    readiness: async () => [await pipeline.readiness()],
    kpi: (scope, id) => Promise.resolve(pipeline.feedback.kpi(scope, id)),
    kpiList: (scope) => Promise.resolve(pipeline.feedback.kpiList(scope)),
    pools: () => Promise.resolve(pipeline.delivery.pools()),
    queued: () => Promise.resolve(pipeline.queue.queuedByPath()),
  };
}

export function queueView(pipeline: Pipeline): QueueView {
  return { ...pipeline.queue.snapshot(), delivery: pipeline.delivery.snapshot(), feedback: pipeline.feedback.stats() };
}

/** Several shards' queues as one: every count summed (a site with pools in two shards counts twice). */
export function sumQueueViews(views: readonly QueueView[]): QueueView {
  const add = (of: (v: QueueView) => number): number => views.reduce((n, v) => n + of(v), 0);
  return {
    scheduled: add((v) => v.scheduled),
    active: add((v) => v.active),
    recipients: add((v) => v.recipients),
    delivery: { sites: add((v) => v.delivery.sites), connections: add((v) => v.delivery.connections), waiting: add((v) => v.delivery.waiting) },
    feedback: { pending: add((v) => v.feedback.pending), bytes: add((v) => v.feedback.bytes), segments: add((v) => v.feedback.segments) },
  };
}

/** Several shards' counts of an operator's action, summed. */
export function sumOperated(counts: readonly Operated[]): Operated {
  return { messages: counts.reduce((n, c) => n + c.messages, 0), recipients: counts.reduce((n, c) => n + c.recipients, 0) };
}

/** Maps from several shards merged key by key. */
export function sumMaps<V>(maps: readonly ReadonlyMap<string, V>[], add: (a: V, b: V) => V): Map<string, V> {
  const total = new Map<string, V>();
  for (const m of maps) for (const [k, v] of m) {
    const known = total.get(k);
    total.set(k, known === undefined ? v : add(known, v));
  }
  return total;
}
