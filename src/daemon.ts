/**
 * The composition root: the only place that knows every stage. Data flows one way —
 * ingress → spool → queue → delivery — and each stage gets only the functions it needs.
 */
import type { Logger } from 'pino';
import { createAdmin } from './admin/index.ts';
import { REASON_TABLE, classifyReplies, createClassifier, defaultRules, loadRulesFile, type Rule } from './bounce/index.ts';
import type { Config } from './config/index.ts';
import { createDelivery, loadTrust } from './delivery/index.ts';
import { createSigner, loadKeys } from './dkim/index.ts';
import { createResolver } from './dns/index.ts';
import { createIngress } from './ingress/index.ts';
import type { Clock } from './lib/clock.ts';
import { TernError } from './lib/errors.ts';
import { lowerHelperThreadPriority } from './lib/thread-priority.ts';
import { createMetrics } from './metrics/index.ts';
import { createQueue, type RecipientOutcome } from './queue/index.ts';
import { baseSettings, createShaper, loadRuleSet, type Change, type LoadedRuleSet, type PathIdentity } from './shaping/index.ts';
import { openSpool, type LoadedMessage } from './spool/index.ts';
import { createFeedback, createRelayedRecorder, type FeedbackOptions, type Ledger } from './feedback/index.ts';
import { fateEvent, relayedEvents, type FeedbackEvent } from './model/event.ts';
import type { QueueId } from './model/ids.ts';
import type { JournalRecord } from './model/journal.ts';

export interface Daemon {
  start(): Promise<void>;
  /** Stop accepting, let in-flight work finish within graceMs, then close everything. */
  stop(graceMs?: number): Promise<void>;
  /** SIGHUP: re-read DKIM keys and MX rules; a bad file keeps what was in use and says why. */
  reload(): { ok: boolean; problems: string[] };
  smtpAddresses(): { host: string; port: number }[];
  adminAddress(): { host: string; port: number } | undefined;
}

export interface DaemonDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

/** Problems in the files a valid config points at (DKIM keys, bounce and MX rules), reported like config problems. */
export function checkFiles(config: Config): { path: string; problem: string }[] {
  const shaping = loadShapingRules(config);
  return [...loadKeys(config.dkim.keys).problems, ...loadBounceRules(config).problems, ...(shaping.ok ? [] : shaping.problems), ...checkTrust(config)];
}

/** delivery.tls_ca_file must hold readable certificates: Node would take a broken one silently, and verify would trust nothing. */
function checkTrust(config: Config): { path: string; problem: string }[] {
  const file = config.delivery.tls_ca_file;
  if (!file) return [];
  try {
    loadTrust(file);
    return [];
  } catch (err) {
    return [{ path: 'delivery.tls_ca_file', problem: (err as Error).message.replace(/^delivery\.tls_ca_file: /, '') }];
  }
}

/** The operator's MX rules over Tern's; problems named by file and place. */
function loadShapingRules(config: Config): LoadedRuleSet {
  const loaded = loadRuleSet({ rulesFile: config.shaping.rules_file, defaultRules: config.shaping.default_rules, reasons: Object.keys(REASON_TABLE) });
  if (loaded.ok) return loaded;
  return { ok: false, problems: loaded.problems.map((p) => ({ path: `shaping.rules_file: ${p.path}`, problem: p.problem })) };
}

/** Operator rules first, then Tern's defaults. */
function loadBounceRules(config: Config): { rules: readonly Rule[]; problems: { path: string; problem: string }[] } {
  const file = config.bounce.rules_file;
  if (!file) return { rules: defaultRules(), problems: [] };
  const loaded = loadRulesFile(file);
  if (!loaded.ok) return { rules: [], problems: loaded.problems.map((p) => ({ path: `bounce.rules_file: ${p.path}`, problem: p.problem })) };
  return { rules: [...loaded.rules, ...defaultRules()], problems: [] };
}

export function createDaemon(config: Config, { clock, log }: DaemonDeps): Daemon {
  const metrics = createMetrics();
  const loaded = loadKeys(config.dkim.keys);
  if (loaded.problems.length > 0) {
    throw new TernError('TERN_CONFIG_INVALID', loaded.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  }
  const signer = createSigner(loaded.keys);
  const bounceRules = loadBounceRules(config);
  if (bounceRules.problems.length > 0) {
    throw new TernError('TERN_CONFIG_INVALID', bounceRules.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  }
  const classify = classifyReplies(createClassifier(bounceRules.rules));
  const spool = openSpool(config.spool, clock, log.child({ stage: 'spool' }));
  const feedback = createFeedback(feedbackOptions(config), {
    clock,
    log: log.child({ stage: 'feedback' }),
    onEvents: (events) => {
      for (const e of events) metrics.events.labels({ type: e.type }).inc();
    },
    onWebhook: (result, events) => {
      metrics.webhookRequests.labels({ result }).inc();
      if (result === 'ok') metrics.webhookEvents.inc(events);
    },
    onDrop: (count) => metrics.feedbackDropped.inc(count),
  });
  // What the outbox held at start: consulted once per recovered message, then dropped.
  let ledger: Ledger | undefined;
  // Recovered messages whose relayed events could not be recorded at their first load.
  const relayedOwed = new Set<QueueId>();
  const resolver = createResolver(config.dns, clock);
  const shapingRules = loadShapingRules(config);
  if (!shapingRules.ok) throw new TernError('TERN_CONFIG_INVALID', shapingRules.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  const shaper = createShaper(
    { base: baseSettings(config), rules: shapingRules.rules, stateDir: config.shaping.state_dir },
    {
      clock,
      log: log.child({ stage: 'shaping' }),
      classify,
      onChange: (change: Change, path: PathIdentity) => {
        metrics.shapingActions.labels({ rule: change.rule, action: change.change }).inc();
        // A rule that fails a path's mail fails what waits for it too, not only what comes next.
        if (change.change === 'fail') queue.expedite(path.key);
        // Mail the path held back was placed behind the rest at the lowered pace; that pace is gone.
        if (change.change === 'expired' || change.change === 'recovered') queue.release(path.key);
      },
    },
  );
  const delivery = createDelivery(
    {
      port: config.delivery.port, localName: config.hostname, timeouts: { command: config.delivery.timeouts.command, data: config.delivery.timeouts.data },
      ...(config.delivery.tls_ca_file ? { tlsTrust: loadTrust(config.delivery.tls_ca_file) } : {}),
    },
    { path: shaper.path, acquire: shaper.acquire, release: shaper.release, observe: shaper.observe },
    {
      clock, log: log.child({ stage: 'delivery' }),
      onConnection: ({ level, tls }) => metrics.deliveryTls.labels({ level, version: tls?.version ?? 'none', verified: String(tls?.verified ?? false) }).inc(),
      onRoom: (path, room) => queue.release(path, room),
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
      route: resolver.route,
      deliver: delivery.deliver,
      classify,
      report: (outcomes) => feedback.record(outcomes.flatMap((o) => eventOf(o, clock.now()))),
      observe: (o: RecipientOutcome) => {
        const v = o.verdict;
        if (v.kind === 'retry' && v.held) {
          metrics.deferrals.labels({ provider: o.route.provider ?? 'other', reason: v.held }).inc();
          return;
        }
        metrics.attempts.labels({ verdict: v.kind }).inc();
        if (v.kind === 'delivered') return;
        metrics.bounces.labels({ reason: v.bounce.reason, category: v.bounce.category, type: v.bounce.type, retry: String(v.bounce.retry) }).inc();
        if (v.kind === 'retry') metrics.deferrals.labels({ provider: o.route.provider ?? 'other', reason: v.bounce.reason }).inc();
      },
    },
    { clock, log: log.child({ stage: 'queue' }) },
  );
  const relayed = createRelayedRecorder({ record: feedback.record, onRecorded: queue.enqueue, clock, log: log.child({ stage: 'feedback' }) });
  const ingress = createIngress(
    { ...config.smtp, hostname: config.hostname, validity: config.delivery.validity },
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
    },
    { clock, log: log.child({ stage: 'ingress' }) },
  );
  const admin = createAdmin(
    config.admin,
    {
      registry: metrics.registry,
      refresh: () => {
        const q = queue.snapshot();
        metrics.queueRecipients.set(q.recipients);
        metrics.queueMessages.labels({ state: 'scheduled' }).set(q.scheduled);
        metrics.queueMessages.labels({ state: 'active' }).set(q.active);
        metrics.connections.set(delivery.snapshot().connections);
        metrics.pausedPaths.reset();
        for (const [provider, count] of shaper.holds()) metrics.pausedPaths.labels({ provider }).set(count);
        const f = feedback.stats();
        metrics.feedbackPending.set(f.pending);
        metrics.feedbackBytes.set(f.bytes);
      },
      queue: () => ({ ...queue.snapshot(), delivery: delivery.snapshot(), feedback: feedback.stats() }),
      kpi: (scope, id) => feedback.kpi(scope, id),
      sites: () => ({ paths: shaper.views(), pools: delivery.pools(), queued: queue.queuedByPath() }),
    },
    log.child({ stage: 'admin' }),
  );

  return {
    async start() {
      const ids = await spool.recover();
      ledger = await feedback.recover();
      // Recovery ran file work, so libuv's pool threads exist now.
      await lowerHelpers(config.tuning, log);
      await shaper.start();
      feedback.start();
      queue.start();
      const recovered = queue.recover(ids).finally(() => {
        ledger = undefined;
      });
      await admin.start();
      await ingress.start();
      await recovered;
    },
    async stop(graceMs = 30_000) {
      log.info('stopping: no new mail accepted, finishing in-flight deliveries');
      const closingIngress = ingress.stop();
      // Messages whose 250 went out just now are queued while the queue still runs, so they
      // are delivered within the grace period rather than after the next start.
      await relayed.stop();
      delivery.stop();
      await queue.stop(graceMs);
      delivery.abort();
      await closingIngress;
      await relayed.stop(); // again: transactions that finished while ingress closed
      await shaper.stop();
      await feedback.stop();
      await spool.close();
      await admin.stop();
      log.info('stopped');
    },
    reload() {
      const keys = loadKeys(config.dkim.keys);
      const rules = loadShapingRules(config);
      const problems = [...keys.problems, ...(rules.ok ? [] : rules.problems)].map((p) => `${p.path}: ${p.problem}`);
      if (keys.problems.length > 0) log.error({ problems }, 'reload: DKIM keys not replaced; the previous keys stay in use');
      else {
        signer.setKeys(keys.keys);
        log.info({ keys: keys.keys.map((k) => `${k.selector}._domainkey.${k.domain}`) }, 'reload: DKIM keys re-read');
      }
      if (!rules.ok) log.error({ problems }, 'reload: MX rules not replaced; the previous rules stay in use');
      else shaper.setRules(rules.rules);
      return { ok: problems.length === 0, problems };
    },
    smtpAddresses: () => ingress.addresses(),
    adminAddress: () => admin.address(),
  };
}

/** Helper threads below the event loop (docs/operations.md); says what was done, and what failed. */
async function lowerHelpers(tuning: Config['tuning'], log: Logger): Promise<void> {
  const result = await lowerHelperThreadPriority({ nice: tuning.pool_nice, idle: tuning.pool_idle });
  if (result.niced + result.idle > 0) {
    log.info({ threads: result.threads, nice: tuning.pool_nice, sched_idle: result.idle }, 'helper threads run below the event loop');
  }
  if (result.problem) log.warn({ problem: result.problem }, 'tuning.pool_idle: helper threads not moved to SCHED_IDLE; they keep pool_nice');
}

function feedbackOptions(config: Config): FeedbackOptions {
  const { feedback } = config;
  const endpoints = [...(feedback.webhook ? [feedback.webhook] : []), ...feedback.webhooks];
  return {
    dir: feedback.dir,
    retentionMs: feedback.retention,
    maxDiskBytes: feedback.max_disk,
    webhooks: endpoints.map((w) => ({
      url: w.url, secret: w.secret, maxBatch: w.max_batch, maxWaitMs: w.max_wait,
      timeoutMs: w.timeout, concurrency: w.concurrency, backoffBaseMs: 1_000, backoffMaxMs: w.backoff_max,
    })),
    ...(feedback.log ? { log: { path: feedback.log.path, maxBytes: feedback.log.max_size, keep: feedback.log.keep } } : {}),
  };
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
