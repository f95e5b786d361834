/**
 * The per-message pipeline, wired: ingress → spool → queue → delivery → events. One of these is
 * the whole of Tern with one event loop; with shards (ADR 0010) each thread runs one over its own
 * partition. What must be one per process — the shaper, admin, metrics serving, signals — is
 * passed in or left to the caller (src/daemon.ts), which also decides the order of start and stop.
 */
import type { Logger } from 'pino';
import type { Classification } from './bounce/index.ts';
import { fleetNodeName, type Config } from './config/index.ts';
import { createDelivery, loadTrust, type Delivery, type DeliveryPorts } from './delivery/index.ts';
import type { Signer } from './dkim/index.ts';
import { createResolver, type TlsaAnswer } from './dns/index.ts';
import { planEgress } from './egress/index.ts';
import { returnPath, returnsDir, SentLedger } from './returns/index.ts';
import { CampaignLog, campaignLogDir, createFeedback, createRelayedRecorder, joinFeedback, type EventLog, type Feedback, type FeedbackDeps, type FeedbackOptions, type Ledger, type WebhookOptions } from './feedback/index.ts';
import { createIngress } from './ingress/index.ts';
import type { Clock } from './lib/clock.ts';
import type { Metrics } from './metrics/index.ts';
import { fateEvent, recipientIndexOf, relayedEvents, type FeedbackEvent } from './model/event.ts';
import type { QueueId } from './model/ids.ts';
import { domainOf, type Envelope } from './model/envelope.ts';
import type { JournalRecord } from './model/journal.ts';
import { usable, type TlsaLookup } from './model/dane.ts';
import type { SmtpReply } from './model/reply.ts';
import { createQueue, matchesSelector, type MessageView, type Queue, type RecipientOutcome } from './queue/index.ts';
import type { Change } from './shaping/index.ts';
import type { Readiness } from './model/readiness.ts';
import type { Operated, Selector } from './model/selector.ts';
import { suspensionFor, type Suspension } from './model/suspension.ts';
import { SuppressionCopy, type SuppressionChange } from './model/suppression.ts';
import { partitionDir, partitionsOf, presentPartitions } from './shards/partitions.ts';
import { joinSpools, openSpool, type LoadedMessage } from './spool/index.ts';
import { openMtaSts, sessionOf, type PolicyDns } from './tls-policy/index.ts';
import { openTlsRpt } from './tls-reports.ts';

export interface PipelineDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly classify: (reply: SmtpReply) => Classification;
  readonly signer: Signer;
  /** A hard bounce was recorded: the address goes on the suppression list (suppression.enabled). */
  readonly suppress?: (domain: string, address: string, detail: string) => void;
  /** The shaper, or a shard's view of it (src/shaping/remote.ts). */
  readonly shaping: Pick<DeliveryPorts, 'path' | 'acquire' | 'release' | 'observe' | 'session' | 'warmup'>;
}

/** Which shard of how many this pipeline is (ADR 0010); a single loop is shard 0 of 1. */
export interface PipelineLayout {
  readonly shard: number;
  readonly threads: number;
  /** Where the event log goes when not to a file of this pipeline's own (shards share one). */
  readonly eventLog?: EventLog;
}

export interface Pipeline {
  readonly queue: Queue;
  readonly delivery: Delivery;
  readonly feedback: Feedback;
  /** Spool and outbox read back after a stop or a crash; nothing runs yet. */
  recover(): Promise<void>;
  /** Events and the queue run; resolves once every recovered message is scheduled. */
  run(): Promise<void>;
  /** SMTP in: the last step of a start; `addresses` as Ingress.start takes them. */
  listen(addresses?: readonly { host: string; port: number }[]): Promise<void>;
  /** A drain (POST /api/v1/drain): no new mail; sessions in progress finish; delivery goes on. */
  closeIngress(): Promise<void>;
  /** Stop accepting, finish in-flight deliveries within graceMs, close the rest of the way in. */
  drain(graceMs: number): Promise<void>;
  /** Events flushed, spool closed: the last step of a stop. */
  close(): Promise<void>;
  /** An adaptive change on a path: mail waiting for it may be due now. */
  shapingChanged(change: Change, path: string): void;
  /** The operator's suspensions in force now (admin keeps them; a resume then flushes). */
  setSuspensions(list: readonly Suspension[]): void;
  /** Make due now the waiting mail a selector names (POST /api/v1/flush). */
  flush(selector: Selector): Promise<Operated>;
  /** Fail the waiting mail a selector names, cause "admin" (POST /api/v1/bounce). */
  bounce(selector: Selector, reason: string): Promise<Operated>;
  /** One message waiting in this pipeline's queue, or undefined. */
  message(id: QueueId): Promise<MessageView | undefined>;
  smtpAddresses(): { host: string; port: number }[];
  /** A change to the suppression list, for this pipeline's copy (ingress checks it at RCPT). */
  suppressionChanged(change: SuppressionChange): void;
  /** SIGHUP changed feedback.webhook or feedback.webhooks (the rest of feedback waits for a restart). */
  setWebhooks(feedback: Config['feedback']): Promise<void>;
  /** What GET /readyz asks of this pipeline. */
  readiness(): Promise<Readiness>;
  /** Set the queue, connection and outbox gauges from live state (before a scrape). */
  refreshGauges(): void;
}

export function createPipeline(config: Config, { clock, log, metrics, classify, signer, shaping, suppress }: PipelineDeps, layout: PipelineLayout = { shard: 0, threads: 1 }): Pipeline {
  const present = [...new Set([...presentPartitions(config.spool.dir), ...presentPartitions(config.feedback.dir)])];
  const [own = layout.shard, ...adopted] = partitionsOf(layout.shard, layout.threads, present);
  if (adopted.length > 0) log.info({ shard: layout.shard, adopted }, 'recovering the spool partitions of a run with more threads');
  const spoolLog = log.child({ stage: 'spool' });
  const spool = joinSpools(
    openSpool({ ...config.spool, dir: partitionDir(config.spool.dir, own), space_share: 1 / layout.threads }, clock, spoolLog),
    // Adopted partitions take no new mail: they need no cache of fresh bodies.
    adopted.map((k) => openSpool({ ...config.spool, dir: partitionDir(config.spool.dir, k), body_cache: 0 }, clock, spoolLog)),
  );
  const feedbackDeps: FeedbackDeps = {
    clock,
    log: log.child({ stage: 'feedback' }),
    onEvents: (events) => {
      for (const e of events) {
        metrics.events.labels({ type: e.type }).inc();
        campaignLog?.record(e);
        if (sentLedger && e.type === 'delivered') sentLedger.record({ queue_id: e.queue_id, index: recipientIndexOf(e), recipient: e.recipient, sender: e.sender, message_id: e.message_id, meta: e.meta, at: Date.parse(e.time) });
        // A hard bounce says the address is bad: suppressed for this sender domain (when enabled).
        if (suppress && e.type === 'failed' && e.cause === 'bounce' && e.bounce?.type === 'hard' && e.sender !== '') {
          suppress(domainOf(e.sender), e.recipient, e.response ? `${e.response.code}${e.response.enhanced ? ` ${e.response.enhanced}` : ''} ${e.response.text}` : e.bounce.reason);
        }
      }
    },
    onWebhook: (result, events) => {
      metrics.webhookRequests.labels({ result }).inc();
      if (result === 'ok') metrics.webhookEvents.inc(events);
    },
    onDrop: (count) => metrics.feedbackDropped.inc(count),
  };
  const options = feedbackOptions(config);
  const feedback = joinFeedback(
    createFeedback({ ...options, dir: partitionDir(options.dir, own), ...(layout.eventLog ? { eventLog: layout.eventLog } : {}) }, feedbackDeps),
    adopted.map((k) => createFeedback({ ...withoutLog(options), dir: partitionDir(options.dir, k) }, feedbackDeps)),
  );
  // What the outbox held at start: consulted once per recovered message, then dropped.
  let ledger: Ledger | undefined;
  // Recovered messages whose relayed events could not be recorded at their first load.
  const relayedOwed = new Set<QueueId>();
  // The operator's suspensions (admin holds the list and sends it on every change).
  let suspensions: readonly Suspension[] = [];
  const egress = planEgress(config.egress, config.hostname);
  // Asynchronous bounces (docs/bounces.md): VERP return paths, and a ledger of what was delivered.
  const bounceDomain = config.bounce.domain;
  const sentLedger = bounceDomain ? new SentLedger(returnsDir(config), layout.shard, clock, log.child({ stage: 'returns' })) : undefined;
  // Each campaign's delivery log, which the dashboard reads (docs/dashboard.md).
  const campaignLog = config.feedback.campaign_log.keep > 0 ? new CampaignLog(campaignLogDir(config), layout.shard, clock, log.child({ stage: 'feedback' })) : undefined;
  // The coordinator's suppression list, as changes tell it; ingress asks it at RCPT.
  const suppressions = new SuppressionCopy();
  const resolver = createResolver(config.dns, clock, (type, result) => metrics.dnsLookups.labels({ type, result }).inc());
  const tlsTrust = config.delivery.tls_ca_file ? loadTrust(config.delivery.tls_ca_file) : undefined;
  const dns = policyDns(resolver);
  // One cache file a shard: each finds the policies of the domains it delivers to.
  const mtaSts = config.delivery.mta_sts.enabled
    ? openMtaSts(config.delivery.mta_sts, { dns, trust: tlsTrust, file: `mta-sts.${layout.shard}.json`, clock, log: log.child({ stage: 'tls-policy' }) })
    : undefined;
  const tlsReports = openTlsRpt(config, {
    shard: layout.shard, ...dns, ownSmtp: () => ingress.addresses()[0], trust: tlsTrust, clock, log: log.child({ stage: 'tls-rpt' }),
  });
  const delivery = createDelivery(
    {
      port: config.delivery.port, localName: config.hostname, timeouts: { command: config.delivery.timeouts.command, data: config.delivery.timeouts.data },
      egress,
      shards: layout.threads,
      ...(tlsTrust ? { tlsTrust } : {}),
    },
    shaping,
    {
      clock, log: log.child({ stage: 'delivery' }),
      onConnection: ({ level, tls }) => metrics.deliveryTls.labels({ level, version: tls?.version ?? 'none', verified: String(tls?.verified ?? false) }).inc(),
      onRoom: (path, room) => queue.release(path, room),
      ...(mtaSts ? { tlsPolicy: (domain: string) => mtaSts.forDomain(domain) } : {}),
      ...(config.delivery.dane ? { tlsa: (host: string) => resolver.resolveTlsa(host).then(daneOf) } : {}),
      onTlsPolicy: (applied, session) => {
        metrics.tlsPolicy.labels({ policy: applied.type, mode: applied.mode ?? '', result: applied.result ?? '', failure: applied.failure ?? '' }).inc();
        tlsReports?.record(session.domain, sessionOf(session));
      },
    },
  );
  const { timeouts } = config.delivery;
  const queue = createQueue(
    {
      retry: config.delivery.retry,
      maxActive: config.delivery.max_active,
      maxActiveRecipients: config.delivery.max_active_recipients,
      // Generous: DNS retries, five MX addresses, then a full transaction, before we call it stuck.
      stallAfter: config.dns.timeout * config.dns.attempts * 4 + 5 * (timeouts.connect + timeouts.greeting) + timeouts.command + timeouts.data + 60_000,
    },
    {
      load: async (id) => {
        const loaded = await spool.load(id);
        const known = ledger;
        if (known) {
          await reconcile(loaded, known, { record: feedback.record, journal: spool.journal, now: clock.now(), log }).catch((err: unknown) => {
            // The queue loads it again later, when the ledger is gone: remember the debt till then.
            if (!known.relayed.has(id)) relayedOwed.add(id);
            throw err;
          });
        } else if (relayedOwed.has(id)) {
          await feedback.record(relayedEvents(loaded.envelope, clock.now()));
          relayedOwed.delete(id);
        }
        return loaded;
      },
      journal: spool.journal,
      remove: spool.remove,
      quarantine: spool.quarantine,
      openBody: (envelope) => spool.openBody(envelope.id, envelope.bodySize, envelope.prepend),
      peek: (id) => spool.load(id),
      route: resolver.route,
      suspended: (domain, site) => suspensionFor(suspensions, domain, site, clock.now()),
      ...(bounceDomain ? { returnPath: (envelope: Envelope, index: number) => returnPath(envelope.id, index, config.bounce.secret, bounceDomain) } : {}),
      deliver: async (job) => {
        const started = performance.now();
        const outcome = await delivery.deliver(job);
        // Only attempts: a hold or a failed path made no connection.
        if (outcome.kind !== 'held' && outcome.kind !== 'path-failed') metrics.attemptSeconds.labels({ provider: outcome.route.provider ?? 'other' }).observe((performance.now() - started) / 1000);
        return outcome;
      },
      classify,
      report: (outcomes) => feedback.record(outcomes.flatMap((o) => eventOf(o, clock.now()))),
      observe: (o: RecipientOutcome) => {
        const v = o.verdict;
        if (v.kind === 'retry' && v.held) {
          metrics.deferrals.labels({ provider: o.route.provider ?? 'other', reason: v.held }).inc();
          return;
        }
        const provider = o.route.provider ?? 'other';
        if (v.kind === 'failed') metrics.failures.labels({ provider, cause: v.cause, reason: v.bounce.reason }).inc();
        // An operator's bounce is no attempt: it shows in failures only.
        if (v.kind === 'failed' && v.cause === 'admin') return;
        metrics.attempts.labels({ verdict: v.kind }).inc();
        if (o.route.source) metrics.egressAttempts.labels({ pool: o.route.pool ?? 'default', source: o.route.source, verdict: v.kind }).inc();
        if (v.kind === 'delivered') return;
        metrics.bounces.labels({ reason: v.bounce.reason, category: v.bounce.category, type: v.bounce.type, retry: String(v.bounce.retry) }).inc();
        if (v.kind === 'retry') metrics.deferrals.labels({ provider, reason: v.bounce.reason }).inc();
      },
    },
    { clock, log: log.child({ stage: 'queue' }) },
  );
  const relayed = createRelayedRecorder({ record: feedback.record, onRecorded: queue.enqueue, clock, log: log.child({ stage: 'feedback' }) });
  const ingress = createIngress(
    { ...config.smtp, hostname: config.hostname, validity: config.delivery.validity, reusePort: layout.threads > 1, pools: egress.pools },
    {
      begin: spool.begin,
      // An outbox that fails holds accepted mail (src/feedback/relayed.ts): take no more meanwhile.
      healthy: () => (relayed.waiting() > 0 ? Promise.resolve(false) : spool.healthy()),
      // DKIM: the body hash is computed as the message streams to disk; the signature (made in
      // the thread pool) is stored with the envelope and sent on top of the stored bytes.
      ...(config.dkim.keys.length > 0 ? { observeBody: (receivedAt: number) => signer.begin(receivedAt) } : {}),
      accept: (envelope) => {
        metrics.accepted.inc();
        metrics.acceptedRecipients.inc(envelope.recipients.length);
        relayed.accepted(envelope);
      },
      refused: (code, enhanced) => metrics.ingressRefusals.labels({ code: String(code), enhanced }).inc(),
      ...(config.suppression.enabled ? {
        suppressed: (sender: string, recipient: string) => {
          const found = suppressions.find(sender, recipient, clock.now());
          if (found) metrics.suppressionRefusals.labels({ reason: found.reason }).inc();
          return found;
        },
      } : {}),
    },
    { clock, log: log.child({ stage: 'ingress' }) },
  );
  let ids: QueueId[] = [];

  return {
    queue,
    delivery,
    feedback,
    async recover() {
      await mtaSts?.start();
      await tlsReports?.start();
      ids = await spool.recover();
      ledger = await feedback.recover();
    },
    run() {
      feedback.start();
      queue.start();
      return queue.recover(ids).finally(() => {
        ledger = undefined;
        ids = [];
      });
    },
    listen: (addresses) => ingress.start(addresses),
    closeIngress: () => ingress.stop(),
    async drain(graceMs) {
      const closingIngress = ingress.stop();
      // Messages whose 250 went out just now are queued while the queue still runs, so they
      // are delivered within the grace period rather than after the next start.
      await relayed.stop();
      delivery.stop();
      await queue.stop(graceMs);
      delivery.abort();
      await closingIngress;
      await relayed.stop(); // again: transactions that finished while ingress closed
    },
    async close() {
      await sentLedger?.flush();
      await campaignLog?.flush();
      await feedback.stop();
      await mtaSts?.stop();
      await tlsReports?.stop();
      await spool.close();
    },
    shapingChanged(change, path) {
      // A rule that fails a path's mail fails what waits for it too, not only what comes next
      // (also when another node of a fleet fired it).
      if (change.action === 'fail' && (change.change === 'fail' || change.change === 'adopted')) queue.expedite(path);
      // Mail the path held back was placed behind the rest at the lowered pace; that pace is gone.
      if (change.change === 'expired' || change.change === 'recovered') queue.release(path);
    },
    setSuspensions(list) {
      suspensions = list;
    },
    flush: (selector) => queue.flush(matchesSelector(selector, resolver.route)),
    bounce: (selector, reason) => queue.bounce(matchesSelector(selector, resolver.route), reason),
    message: (id) => queue.inspect(id),
    smtpAddresses: () => ingress.addresses(),
    setWebhooks: (next) => feedback.setWebhooks(webhooksOf(next)),
    suppressionChanged: (change) => suppressions.apply(change),
    async readiness() {
      return { spool: await spool.healthy(), listening: ingress.listening(), outboxStalledMs: feedback.stalledMs() };
    },
    refreshGauges() {
      const q = queue.snapshot();
      metrics.queueRecipients.set(q.recipients);
      metrics.queueMessages.labels({ state: 'scheduled' }).set(q.scheduled);
      metrics.queueMessages.labels({ state: 'active' }).set(q.active);
      metrics.connections.set(delivery.snapshot().connections);
      metrics.ingressSessions.set(ingress.sessions());
      const f = feedback.stats();
      metrics.feedbackPending.set(f.pending);
      metrics.feedbackBytes.set(f.bytes);
      const now = clock.now();
      const arrived = queue.oldestArrival();
      metrics.oldestQueued.set(arrived === undefined ? 0 : Math.max(0, now - arrived) / 1000);
      const pendingSince = feedback.oldestPendingAt();
      metrics.oldestPending.set(pendingSince === undefined ? 0 : Math.max(0, now - pendingSince) / 1000);
    },
  };
}

function feedbackOptions(config: Config): FeedbackOptions {
  const node = fleetNodeName(config);
  const { feedback } = config;
  return {
    dir: feedback.dir,
    retentionMs: feedback.retention,
    maxDiskBytes: feedback.max_disk,
    webhooks: webhooksOf(feedback),
    ...(feedback.log ? { log: { path: feedback.log.path, maxBytes: feedback.log.max_size, keep: feedback.log.keep } } : {}),
    ...(node ? { node } : {}),
  };
}

/** feedback.webhook, then each of feedback.webhooks. */
function webhooksOf(feedback: Config['feedback']): WebhookOptions[] {
  const endpoints = [...(feedback.webhook ? [feedback.webhook] : []), ...feedback.webhooks];
  return endpoints.map((w) => ({
    url: w.url, secret: w.secret, maxBatch: w.max_batch, maxWaitMs: w.max_wait,
    timeoutMs: w.timeout, concurrency: w.concurrency, backoffBaseMs: 1_000, backoffMaxMs: w.backoff_max,
  }));
}

/** An adopted partition's events are not copied to the event log again: they were when recorded. */
function withoutLog({ log: _copied, ...rest }: FeedbackOptions): FeedbackOptions {
  return rest;
}

/** One outcome → its event; a "too many recipients" split retried at once is not a bounce. */
function eventOf(o: RecipientOutcome, now: number): FeedbackEvent[] {
  if (o.verdict.kind === 'retry' && !o.verdict.counts) return [];
  return [fateEvent(o.envelope, o.index, o.attempt, o.verdict, o.route, now)];
}

/**
 * After a crash, make a recovered message agree with the outbox: events already made durable are
 * not made again, and events that never were are made now.
 * - A message never attempted whose `relayed` events are not in the outbox was cut off between
 *   its spool commit and its events: they are recorded now, before any attempt.
 * - A recipient whose final event is in the outbox but not in the spool journal was cut off after
 *   its event: the journal learns it, and the recipient is not attempted again.
 */
async function reconcile(
  loaded: LoadedMessage,
  ledger: Ledger,
  deps: { record(events: readonly FeedbackEvent[]): Promise<void>; journal(id: QueueId, records: readonly JournalRecord[]): Promise<void>; now: number; log: Logger },
): Promise<void> {
  const { envelope, states } = loaded;
  const finals = ledger.finals.get(envelope.id);
  const attempted = states.some((s) => s.attempts > 0 || s.final !== undefined);
  if (!attempted && !finals && !ledger.relayed.has(envelope.id)) {
    deps.log.info({ queue_id: envelope.id }, 'recovery: relayed events were not recorded before the crash; recording them now');
    ledger.relayed.add(envelope.id); // before the await: a concurrent load of the same message must not record them too
    await deps.record(relayedEvents(envelope, deps.now)).catch((err: unknown) => {
      ledger.relayed.delete(envelope.id);
      throw err;
    });
  }
  if (!finals) return;
  const records: JournalRecord[] = [];
  for (const [index, event] of finals) {
    const state = states[index];
    if (!state || state.final) continue;
    state.final = event.type === 'delivered' ? 'delivered' : 'failed';
    state.attempts = event.attempt ?? state.attempts;
    records.push({ t: 'final', r: index, n: state.attempts, v: state.final, ...(event.cause ? { cause: event.cause } : {}) });
  }
  if (records.length === 0) return;
  deps.log.info({ queue_id: envelope.id, recipients: records.length }, 'recovery: final events were recorded before the crash; not attempting those recipients again');
  await deps.journal(envelope.id, records);
}

/** What MTA-STS asks of DNS, from Tern's resolver: a name's TXT records, a host's addresses. */
function policyDns(resolver: ReturnType<typeof createResolver>): PolicyDns {
  return {
    txt: async (name) => {
      const answer = await resolver.resolveTxt(name);
      return answer.kind === 'txt' ? answer.records : undefined;
    },
    addresses: async (host) => {
      const answer = await resolver.resolveAddresses(host);
      return answer.kind === 'addresses' ? answer.addresses : [];
    },
  };
}

/** A TLSA answer as DANE reads it (RFC 7672 §2.2): only records DNSSEC vouches for count. */
function daneOf(answer: TlsaAnswer): TlsaLookup {
  if (answer.kind === 'temporary') return { kind: 'failed', detail: answer.detail };
  if (answer.kind === 'nxdomain' || !answer.authenticated || answer.records.length === 0) return { kind: 'none' };
  return { kind: 'dane', records: usable(answer.records) };
}
