import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import { errorKind, RepeatedLog } from '../lib/repeated-log.ts';
import { isFinal, recipientIndexOf, type FeedbackEvent } from '../model/event.ts';
import { openEventLog, type EventLog, type EventLogOptions } from './event-log.ts';
import { openKpis, type KpiScope, type KpiView } from './kpis.ts';
import { openOutbox, type Outbox, type OutboxStats, type StoredEvent } from './outbox.ts';
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
  /** In a fleet: this node's name, stamped on every event it records (`node`). */
  readonly node?: string;
}

interface Endpoint {
  readonly webhook: WebhookOptions;
  readonly outbox: Outbox;
  readonly sender: ReturnType<typeof createWebhookSender>;
}

const sameWebhook = (a: WebhookOptions, b: WebhookOptions): boolean => JSON.stringify(a) === JSON.stringify(b);

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
  kpiList(scope: KpiScope): KpiView[];
  stats(): OutboxStats;
  /** The longest any endpoint's outbox has had events waiting without an acknowledgement (ms). */
  stalledMs(): number;
  /** When the oldest event some endpoint has not acknowledged was recorded; undefined when none waits. */
  oldestPendingAt(): number | undefined;
  /** Endpoints changed by a reload (their outboxes stay: see the function). */
  setWebhooks(webhooks: readonly WebhookOptions[]): Promise<void>;
}

const KPI_SAVE_MS = 5_000;
/** Events read back at once when a reload leaves no endpoint and the backlog is marked done. */
const READ_BATCH = 10_000;
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
  const extraDir = (url: string): string => join(options.dir, `outbox-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`);
  const endpointOf = (webhook: WebhookOptions, own: Outbox): Endpoint => ({
    webhook,
    outbox: own,
    sender: createWebhookSender(webhook, {
      clock, log, ...(deps.random ? { random: deps.random } : {}),
      take: (max) => own.take(max),
      ack: (events) => own.ack(events),
      ...(deps.onWebhook ? { onResult: deps.onWebhook } : {}),
    }),
  });
  // Replaced as a whole by a reload (setWebhooks), never changed in place.
  let endpoints: readonly Endpoint[] = options.webhooks.map((webhook, i) => endpointOf(webhook, i === 0 ? outbox : outboxFor(extraDir(webhook.url))));
  let extras = endpoints.slice(1);
  let started = false;
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
        const index = recipientIndexOf(e);
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

  async function record(given: readonly FeedbackEvent[]): Promise<void> {
    if (given.length === 0) return;
    const events = options.node ? given.map((e) => ({ ...e, node: options.node })) : given;
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
    if (level > warnedAt) log.warn({ pending, bytes, urls: endpoints.map((e) => e.webhook.url) }, `feedback: ${pending} events waiting for the webhook`);
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

  /**
   * A reload's endpoints. Outboxes stay where they are: the first endpoint is served by the primary
   * outbox whatever its URL (so a moved endpoint gets what waited for the old one), and further
   * endpoints keep theirs by URL. A sender whose settings changed is replaced; its unacknowledged
   * events are read again by the new one. A new further endpoint gets the events recorded from now
   * on; a removed one's outbox stays on disk, with what it had not acknowledged.
   */
  async function setWebhooks(next: readonly WebhookOptions[]): Promise<void> {
    const kept = new Map(extras.map((e) => [e.webhook.url, e]));
    const primary = endpoints[0];
    const fresh: Endpoint[] = [];
    for (const [i, webhook] of next.entries()) {
      const before = i === 0 ? primary : kept.get(webhook.url);
      if (i > 0) kept.delete(webhook.url);
      if (before && sameWebhook(before.webhook, webhook)) {
        fresh.push(before);
        continue;
      }
      if (before) {
        await before.sender.stop();
        await before.outbox.rewind();
      }
      const own = i === 0 ? outbox : before?.outbox ?? (await openExtra(webhook.url));
      fresh.push(endpointOf(webhook, own));
    }
    if (primary && next.length === 0) {
      await primary.sender.stop();
      await markAllDone();
    }
    for (const gone of kept.values()) {
      await gone.sender.stop();
      await gone.outbox.close();
      log.warn({ url: gone.webhook.url, unacknowledged: gone.outbox.stats().pending }, 'feedback: webhook endpoint removed by a reload; its outbox stays on disk');
    }
    endpoints = fresh;
    extras = fresh.slice(1);
    if (started) for (const e of fresh) e.sender.start();
  }

  /**
   * The last endpoint is gone: what waited for it is marked done, as a start with no webhook does
   * (recover), or it would wait for ever and make /readyz say the outbox is wedged.
   */
  async function markAllDone(): Promise<void> {
    await outbox.rewind();
    let done = 0;
    for (let batch = await outbox.take(READ_BATCH); batch.length > 0; batch = await outbox.take(READ_BATCH)) {
      await outbox.ack(batch);
      done += batch.length;
    }
    if (done > 0) log.info({ events: done }, 'feedback: no webhook is configured any more; events left unacknowledged are marked done');
  }

  /** A further endpoint's outbox, with whatever an earlier run left in it. */
  async function openExtra(url: string): Promise<Outbox> {
    const own = outboxFor(extraDir(url));
    await own.recover(() => undefined);
    return own;
  }

  return {
    recover,
    record,
    setWebhooks,
    stalledMs: () => Math.max(outbox.stalledMs(), ...extras.map((e) => e.outbox.stalledMs())),
    oldestPendingAt: () => earliest([outbox, ...extras.map((e) => e.outbox)].map((o) => o.oldestPendingAt())),
    start() {
      started = true;
      for (const e of endpoints) e.sender.start();
      scheduleSave();
    },
    async stop() {
      started = false;
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
    kpiList: (scope) => kpis.list(scope),
    stats,
  };
}

const sum = (list: readonly OutboxStats[], key: keyof OutboxStats): number => list.reduce((n, s) => n + s[key], 0);

/** The earliest of some times, any of which may be missing. */
export function earliest(times: readonly (number | undefined)[]): number | undefined {
  const known = times.filter((t): t is number => t !== undefined);
  return known.length > 0 ? Math.min(...known) : undefined;
}
