import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const VERDICTS = ['delivered', 'retry', 'failed'] as const;
const EVENT_TYPES = ['relayed', 'delivered', 'soft_bounce', 'failed', 'complaint'] as const;
const WEBHOOK_RESULTS = ['ok', 'refused', 'failed'] as const;

/**
 * Which metrics a registry exports. With shards (ADR 0010) each shard's registry has the
 * pipeline's and the coordinator's has the process's and the shaper's, so that merging them
 * (src/shards/) sums what shards counted and never adds up one process's memory N times.
 */
export type MetricsScope = 'all' | 'coordinator' | 'shard';

/** Seconds: a delivery transaction from its first connect attempt to its last reply. */
const ATTEMPT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: one DKIM signature (RSA-2048 takes about a millisecond in the thread pool). */
const SIGN_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/** Every metric Tern exports, defined in one place; labels are closed sets. */
export function createMetrics(scope: MetricsScope = 'all', thread = 'main') {
  const registry = new Registry();
  const perShard = scope === 'coordinator' ? [] : [registry];
  const perProcess = scope === 'shard' ? [] : [registry];
  if (scope !== 'shard') {
    collectDefaultMetrics({ register: registry, prefix: 'tern_process_' });
    // prom-client names these gauges *_total, which promtool rejects (a _total suffix means a counter).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      registry.removeSingleMetric(`tern_process_${name}`);
    }
  }
  const accepted = new Counter({ name: 'tern_messages_accepted_total', help: 'Messages accepted from upstream and spooled', registers: perShard });
  const acceptedRecipients = new Counter({ name: 'tern_recipients_accepted_total', help: 'Recipients accepted from upstream', registers: perShard });
  const attempts = new Counter({ name: 'tern_delivery_attempts_total', help: 'Per-recipient delivery attempts by verdict', labelNames: ['verdict'] as const, registers: perShard });
  for (const verdict of VERDICTS) attempts.labels({ verdict }).inc(0);
  const queueRecipients = new Gauge({ name: 'tern_queue_recipients', help: 'Recipients waiting for a final outcome', registers: perShard });
  const queueMessages = new Gauge({ name: 'tern_queue_messages', help: 'Messages in the queue by state', labelNames: ['state'] as const, registers: perShard });
  const connections = new Gauge({ name: 'tern_delivery_connections', help: 'Open outbound SMTP connections', registers: perShard });
  const ingressSessions = new Gauge({ name: 'tern_ingress_sessions', help: 'Open inbound SMTP sessions on the relay listeners', registers: perShard });
  // Labels from closed vocabularies (33 reasons, 5 categories, 3 types): cardinality stays bounded.
  const bounces = new Counter({ name: 'tern_bounces_total', help: 'Failed delivery attempts per recipient, by bounce classification', labelNames: ['reason', 'category', 'type', 'retry'] as const, registers: perShard });
  const events = new Counter({ name: 'tern_events_total', help: 'Feedback events made durable, by type', labelNames: ['type'] as const, registers: perShard });
  for (const type of EVENT_TYPES) events.labels({ type }).inc(0);
  const webhookRequests = new Counter({ name: 'tern_webhook_requests_total', help: 'Webhook POSTs by result (ok: 2xx; refused: 4xx other than 408/429; failed: anything else)', labelNames: ['result'] as const, registers: perShard });
  for (const result of WEBHOOK_RESULTS) webhookRequests.labels({ result }).inc(0);
  const webhookEvents = new Counter({ name: 'tern_webhook_events_total', help: 'Events acknowledged by the webhook', registers: perShard });
  const feedbackPending = new Gauge({ name: 'tern_feedback_pending_events', help: 'Events in the outbox not yet acknowledged by the webhook', registers: perShard });
  const feedbackBytes = new Gauge({ name: 'tern_feedback_outbox_bytes', help: 'Disk used by the feedback outbox', registers: perShard });
  const feedbackDropped = new Counter({ name: 'tern_feedback_dropped_total', help: 'Events dropped unsent (retention or disk bound)', registers: perShard });
  // MX rules. `provider` is a provider named in the rules files, or "other"; `rule` an adaptive
  // rule's id from them; `reason` a bounce reason or a hold (paused, ready-queue-full): all closed sets.
  const shapingActions = new Counter({ name: 'tern_shaping_actions_total', help: 'Changes made by adaptive rules, by rule and action (lower, relower, extend, pause, fail, raise, recovered, expired)', labelNames: ['rule', 'action'] as const, registers: perProcess });
  const pausedPaths = new Gauge({ name: 'tern_shaping_paused_paths', help: 'Delivery paths paused or failing by an adaptive rule, by provider', labelNames: ['provider'] as const, registers: perProcess });
  const deferrals = new Counter({ name: 'tern_deferrals_total', help: 'Recipients deferred, by provider and reason (a bounce reason, or paused / ready-queue-full / suspended when no attempt was made)', labelNames: ['provider', 'reason'] as const, registers: perShard });
  // cause: bounce, expired, adaptive, admin (the event's cause); reason: a bounce reason (closed).
  const failures = new Counter({ name: 'tern_failures_total', help: 'Recipients failed for good, by provider, cause (bounce, expired, adaptive, admin) and bounce reason', labelNames: ['provider', 'cause', 'reason'] as const, registers: perShard });
  // level: the path's TLS level (4 values); version: what Node names the protocol, or "none" for plaintext (a handful).
  const tlsPolicy = new Counter({ name: 'tern_delivery_tls_policy_total', help: 'Delivery attempts under a recipient domain\'s TLS policy (dane, mta-sts), by policy, mode (enforce, testing), result (success, failure) and failure (RFC 8460 result type)', labelNames: ['policy', 'mode', 'result', 'failure'] as const, registers: perShard });
  const deliveryTls = new Counter({ name: 'tern_delivery_tls_connections_total', help: 'Outbound SMTP connections opened, by the path\'s TLS level, the TLS version negotiated (none: plaintext) and whether the certificate verified', labelNames: ['level', 'version', 'verified'] as const, registers: perShard });
  // action: one of the admin write calls (suspend, resume, flush, bounce); result: ok, not-found, refused, failed.
  const adminActions = new Counter({ name: 'tern_admin_actions_total', help: 'Admin API write calls (suspend, resume, flush, bounce), by action and result (ok, not-found, refused: a bad request, failed)', labelNames: ['action', 'result'] as const, registers: perProcess });
  const clusterRedisUp = new Gauge({ name: 'tern_cluster_redis_up', help: 'With cluster.redis: 1 while Redis answers (limits shared), 0 while it does not (each limit at this node\'s share); 0 without a cluster', registers: perProcess });
  const clusterNodes = new Gauge({ name: 'tern_cluster_nodes', help: 'Live nodes of the fleet as this node last saw them (0 without a cluster)', registers: perProcess });
  const clusterNode = new Gauge({ name: 'tern_cluster_node_info', help: 'This node\'s name in its fleet (cluster.node), as a label; 1 while it sends, 0 once it drains', labelNames: ['node'] as const, registers: perProcess });
  const clusterShared = new Counter({ name: 'tern_cluster_shared_total', help: 'What this node told the fleet (sent) and took from it (taken): adaptive effects, suspensions, warm-up ramps', labelNames: ['topic', 'direction'] as const, registers: perProcess });
  const suspensions = new Gauge({ name: 'tern_admin_suspensions', help: 'Operator suspensions in force, by target (domain, site)', labelNames: ['target'] as const, registers: perProcess });
  // Over every shard, the oldest counts, not the sum (prom-client's aggregator for the merge).
  const oldestQueued = new Gauge({ name: 'tern_queue_oldest_message_age_seconds', help: 'Age of the oldest message waiting in the queue (0 when empty)', aggregator: 'max', registers: perShard });
  const attemptSeconds = new Histogram({ name: 'tern_delivery_attempt_duration_seconds', help: 'Delivery transactions (one message to one domain\'s recipients), connect to last reply, by provider', labelNames: ['provider'] as const, buckets: ATTEMPT_BUCKETS, registers: perShard });
  // type: MX, A, AAAA, TXT; result: answer, nxdomain, temporary (every server failed or timed out).
  const dnsLookups = new Counter({ name: 'tern_dns_lookups_total', help: 'DNS queries sent (cache misses), by record type and result (answer, nxdomain, temporary)', labelNames: ['type', 'result'] as const, registers: perShard });
  const dkimSeconds = new Histogram({ name: 'tern_dkim_sign_duration_seconds', help: 'Time to make one DKIM signature, by algorithm', labelNames: ['algorithm'] as const, buckets: SIGN_BUCKETS, registers: perShard });
  const oldestPending = new Gauge({ name: 'tern_feedback_oldest_pending_age_seconds', help: 'Age of the oldest event not yet acknowledged by the webhook (0 when none wait)', aggregator: 'max', registers: perShard });
  // code and enhanced come from the reply catalogue (src/ingress/smtp/replies.ts): a closed set.
  const ingressRefusals = new Counter({ name: 'tern_ingress_refusals_total', help: 'Replies 4xx/5xx sent to SMTP clients, by code and enhanced status code', labelNames: ['code', 'enhanced'] as const, registers: perShard });
  const providerQueue = new Gauge({ name: 'tern_provider_queue_recipients', help: 'Recipients waiting, by the provider of the path of their last attempt ("other": not a configured provider; "unknown": not attempted yet)', labelNames: ['provider'] as const, registers: perProcess });
  const providerConnections = new Gauge({ name: 'tern_provider_connections', help: 'Open outbound SMTP connections, by provider', labelNames: ['provider'] as const, registers: perProcess });
  // pool and source: names from egress (configured), or "default" without it.
  const egressAttempts = new Counter({ name: 'tern_egress_attempts_total', help: 'Per-recipient delivery attempts by egress pool, source and verdict', labelNames: ['pool', 'source', 'verdict'] as const, registers: perShard });
  const sourceConnections = new Gauge({ name: 'tern_egress_connections', help: 'Open outbound SMTP connections, by egress source', labelNames: ['source'] as const, registers: perProcess });
  // source: a warming source from egress.sources; scope: "total" or a provider in its schedule.
  const warmupDay = new Gauge({ name: 'tern_egress_warmup_day', help: 'The step of its warm-up schedule each warming source is on (-1: not started)', labelNames: ['source'] as const, registers: perProcess });
  const warmupRemaining = new Gauge({ name: 'tern_egress_warmup_remaining', help: 'What a warming source may still send today, in all (scope "total") or to a provider', labelNames: ['source', 'scope'] as const, registers: perProcess });
  // result: failed, complaint, autoreply, not-failure, unmatched, forged (docs/bounces.md).
  const returns = new Counter({ name: 'tern_returns_total', help: 'Recipients of mail returned to the bounce listener, by what became of them (failed, complaint, autoreply, not-failure, unmatched, forged)', labelNames: ['result'] as const, registers: perProcess });
  // reason: hard-bounce, complaint, admin.
  const suppressionRefusals = new Counter({ name: 'tern_suppression_refusals_total', help: 'RCPTs refused because the address is suppressed for the sender domain, by why it was suppressed', labelNames: ['reason'] as const, registers: perShard });
  const suppressedAddresses = new Gauge({ name: 'tern_suppressed_addresses', help: 'Entries on the suppression list (sender domain, address)', registers: perProcess });
  const spoolBytes = new Gauge({ name: 'tern_spool_bytes', help: 'Disk used by the spool (every partition)', registers: perProcess });
  const spoolFree = new Gauge({ name: 'tern_spool_free_bytes', help: 'Free space on the spool\'s file system, for an unprivileged writer', registers: perProcess });
  const loopDelay = eventLoopDelay(registry, thread);
  return {
    registry, returns, suppressionRefusals, suppressedAddresses, egressAttempts, sourceConnections, warmupDay, warmupRemaining, oldestQueued, attemptSeconds, dnsLookups, dkimSeconds, oldestPending, ingressRefusals, providerQueue, providerConnections, spoolBytes, spoolFree, loopDelay, accepted, acceptedRecipients, attempts, bounces, queueRecipients, queueMessages, connections, ingressSessions,
    events, webhookRequests, webhookEvents, feedbackPending, feedbackBytes, feedbackDropped, shapingActions, pausedPaths, deferrals, failures, deliveryTls, tlsPolicy,
    adminActions, suspensions, clusterRedisUp, clusterNodes, clusterNode, clusterShared,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * The event loop's delay in this thread (`thread`: "main", or "shard-N"), p99 and max since the
 * last scrape: a loop busy with one thing delays every connection it serves. Every thread has a
 * label of its own, so merging shards' registries keeps them apart.
 */
function eventLoopDelay(registry: Registry, thread: string): { stop(): void } {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const delay = new Gauge({
    name: 'tern_event_loop_delay_seconds', help: 'Event-loop delay since the last scrape, by thread and statistic (p99, max)', labelNames: ['thread', 'stat'] as const, registers: [registry],
    collect() {
      // Nanoseconds; NaN before the first sample.
      const seconds = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
      this.labels({ thread, stat: 'p99' }).set(seconds(histogram.percentile(99)));
      this.labels({ thread, stat: 'max' }).set(seconds(histogram.max));
      histogram.reset();
    },
  });
  delay.labels({ thread, stat: 'p99' }).set(0);
  return { stop: () => histogram.disable() };
}
