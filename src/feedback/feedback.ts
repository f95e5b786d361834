import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import { errorKind, RepeatedLog } from '../lib/repeated-log.ts';
import { isFinal, type FeedbackEvent } from '../model/event.ts';
import { openEventLog, type EventLog, type EventLogOptions } from './event-log.ts';
import { openKpis, type KpiScope, type KpiView } from './kpis.ts';
import { openOutbox, type OutboxStats, type StoredEvent } from './outbox.ts';
import { createWebhookSender, type WebhookOptions, type WebhookResult } from './webhook.ts';

export interface FeedbackOptions {
  readonly dir: string;
  /** Endpoints; each gets every event, acknowledged separately, so a slow one never holds up another. */
  readonly webhooks: readonly WebhookOptions[];
  readonly retentionMs: number;
  readonly maxDiskBytes: number;
  readonly segmentBytes?: number;
  readonly log?: EventLogOptions;
  /** An event log opened elsewhere (shards share the coordinator's), used in place of `log`. */
  readonly eventLog?: EventLog;
}

export interface FeedbackDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly random?: () => number;
  /** Events made durable (metrics count them here). */
  onEvents?(events: readonly FeedbackEvent[]): void;
  onWebhook?(result: WebhookResult, events: number, ms: number): void;
  onDrop?(count: number, why: string): void;
}

/**
 * What the outbox already holds for messages still in the spool: a restart must not repeat it.
 * Mutable: recovery adds what it records, so a message loaded twice is reconciled once.
 */
export interface Ledger {
  readonly relayed: Set<string>;
  /** queue id → recipient index → its final event. */
  readonly finals: ReadonlyMap<string, ReadonlyMap<number, FeedbackEvent>>;
}

export interface Feedback {
  recover(): Promise<Ledger>;
  /** Durable once resolved; then counted in KPIs, copied to the event log, offered to the webhook. */
  record(events: readonly FeedbackEvent[]): Promise<void>;
  start(): void;
  stop(): Promise<void>;
  kpi(scope: KpiScope, id: string): KpiView | undefined;
  stats(): OutboxStats;
  /** The longest any endpoint's outbox has had events waiting without an acknowledgement (ms). */
  stalledMs(): number;
  /** When the oldest event some endpoint has not acknowledged was recorded; undefined when none waits. */
  oldestPendingAt(): number | undefined;
}

const KPI_SAVE_MS = 5_000;
const GROWTH_WARNINGS = [10_000, 100_000, 1_000_000, 10_000_000];

/**
 * feedback: every recipient's life cycle as events — a durable outbox, a signed batching webhook,
 * an optional JSON-lines log, and campaign KPIs (docs/feedback.md).
 */
export function createFeedback(options: FeedbackOptions, deps: FeedbackDeps): Feedback {
  const { clock, log } = deps;
  // A full disk fails every batch the same way: one line a minute, with a count.
  const faults = new RepeatedLog(log, clock);
  const kpis = openKpis(join(options.dir, 'kpis.json'));
  const outboxFor = (dir: string, deletable?: (lastN: number) => boolean) => openOutbox({
    dir,
    segmentBytes: options.segmentBytes ?? 16 * 1_048_576,
    maxBytes: options.maxDiskBytes,
    retentionMs: options.retentionMs,
    ...(deletable ? { deletable } : {}),
    now: () => clock.now(),
    onDrop: (count, why) => {
      log.error({ events: count, why, dir }, 'feedback: events dropped without being delivered');
      deps.onDrop?.(count, why);
    },
  });
  // The primary outbox numbers the events the KPIs and crash recovery rely on; it also serves the
  // first endpoint. Every further endpoint has its own outbox, named after its URL.
  const outbox = outboxFor(join(options.dir, 'outbox'), (lastN) => lastN <= kpis.savedThrough());
  const endpoints = options.webhooks.map((webhook, i) => {
    const own = i === 0 ? outbox : outboxFor(join(options.dir, `outbox-${createHash('sha256').update(webhook.url).digest('hex').slice(0, 12)}`));
    const sender = createWebhookSender(webhook, {
      clock, log, ...(deps.random ? { random: deps.random } : {}),
      take: (max) => own.take(max),
      ack: (events) => own.ack(events),
      ...(deps.onWebhook ? { onResult: deps.onWebhook } : {}),
    });
    return { outbox: own, sender };
  });
  const extras = endpoints.slice(1);
  const eventLog: EventLog | undefined = options.eventLog ?? (options.log ? openEventLog(options.log) : undefined);
  let saveTimer: Timer | undefined;
  let warnedAt = 0;

  async function recover(): Promise<Ledger> {
    const relayed = new Set<string>();
    const finals = new Map<string, Map<number, FeedbackEvent>>();
    const unsent: StoredEvent[] = [];
    await outbox.recover((stored: StoredEvent, acked: boolean) => {
      // With no endpoint, events are done once recorded (a crash may have beaten the ack write).
      if (!acked && endpoints.length === 0) unsent.push(stored);
      const e = stored.event;
      kpis.apply(stored.n, e);
      if (e.type === 'relayed') relayed.add(e.queue_id);
      if (isFinal(e)) {
        const index = Number(e.id.split('.')[1]);
        const map = finals.get(e.queue_id) ?? new Map<number, FeedbackEvent>();
        map.set(index, e);
        finals.set(e.queue_id, map);
      }
    });
    for (const extra of extras) await extra.outbox.recover(() => undefined);
    if (unsent.length > 0) {
      log.info({ events: unsent.length }, 'feedback: no webhook is configured; events left unacknowledged are marked done');
      await outbox.ack(unsent);
    }
    await kpis.save();
    await outbox.sweep();
    return { relayed, finals };
  }

  async function record(events: readonly FeedbackEvent[]): Promise<void> {
    if (events.length === 0) return;
    const [stored] = await Promise.all([outbox.append(events), ...extras.map((e) => e.outbox.append(events))]);
    for (const s of stored) kpis.apply(s.n, s.event);
    deps.onEvents?.(events);
    if (eventLog) eventLog.write(events).catch((err: unknown) => faults.warn(`event-log:${errorKind(err)}`, { err }, 'feedback: cannot write the event log'));
    // Without a webhook nobody else acknowledges: the outbox still made the KPIs crash-proof.
    // Nothing waits for that acknowledgement (recovery redoes it), so the 250 does not either.
    if (endpoints.length === 0) outbox.ack(stored).catch((err: unknown) => faults.warn(`ack:${errorKind(err)}`, { err }, 'feedback: cannot record acknowledgements'));
    for (const e of endpoints) e.sender.wake();
    warnIfGrowing();
  }

  function warnIfGrowing(): void {
    const { pending, bytes } = stats();
    const level = GROWTH_WARNINGS.filter((t) => pending >= t).at(-1) ?? 0;
    if (level > warnedAt) log.warn({ pending, bytes, urls: options.webhooks.map((w) => w.url) }, `feedback: ${pending} events waiting for the webhook`);
    warnedAt = level;
  }

  /** Totals over every endpoint's outbox: a backlog anywhere is a backlog. */
  function stats(): OutboxStats {
    const all = [outbox, ...extras.map((e) => e.outbox)].map((o) => o.stats());
    return { pending: sum(all, 'pending'), bytes: sum(all, 'bytes'), segments: sum(all, 'segments') };
  }

  function scheduleSave(): void {
    saveTimer = clock.at(clock.now() + KPI_SAVE_MS, () => {
      kpis.save().then(() => outbox.sweep()).catch((err: unknown) => log.error({ err }, 'feedback: cannot save KPIs')).finally(scheduleSave);
    });
  }

  return {
    recover,
    record,
    stalledMs: () => Math.max(outbox.stalledMs(), ...extras.map((e) => e.outbox.stalledMs())),
    oldestPendingAt: () => earliest([outbox, ...extras.map((e) => e.outbox)].map((o) => o.oldestPendingAt())),
    start() {
      for (const e of endpoints) e.sender.start();
      scheduleSave();
    },
    async stop() {
      saveTimer?.cancel();
      await Promise.all(endpoints.map((e) => e.sender.stop()));
      // A snapshot that cannot be written (disk full) is not lost: the outbox keeps every event
      // it would cover, and the next start replays them. Stopping must still close the files.
      await kpis.save().then(() => outbox.sweep(), (err: unknown) => log.error({ err }, 'feedback: cannot save KPIs at stop; they will be rebuilt from the outbox at the next start'));
      await outbox.close();
      for (const e of extras) await e.outbox.close();
      await eventLog?.close();
    },
    kpi: (scope, id) => kpis.view(scope, id),
    stats,
  };
}

const sum = (list: readonly OutboxStats[], key: keyof OutboxStats): number => list.reduce((n, s) => n + s[key], 0);

/** The earliest of some times, any of which may be missing. */
export function earliest(times: readonly (number | undefined)[]): number | undefined {
  const known = times.filter((t): t is number => t !== undefined);
  return known.length > 0 ? Math.min(...known) : undefined;
}
