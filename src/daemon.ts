/**
 * The composition root: the only place that knows every stage. Data flows one way —
 * ingress → spool → queue → delivery — and each stage gets only the functions it needs.
 */
import type { Logger } from 'pino';
import { createAdmin } from './admin/index.ts';
import type { Config } from './config/index.ts';
import { createDelivery } from './delivery/index.ts';
import { createResolver } from './dns/index.ts';
import { createIngress } from './ingress/index.ts';
import type { Clock } from './lib/clock.ts';
import { createMetrics } from './metrics/index.ts';
import { createQueue, type RecipientOutcome } from './queue/index.ts';
import { openSpool } from './spool/index.ts';

export interface Daemon {
  start(): Promise<void>;
  /** Stop accepting, let in-flight work finish within graceMs, then close everything. */
  stop(graceMs?: number): Promise<void>;
  smtpAddresses(): { host: string; port: number }[];
  adminAddress(): { host: string; port: number } | undefined;
}

export interface DaemonDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

const MAX_RECIPIENTS_PER_TRANSACTION = 100;

export function createDaemon(config: Config, { clock, log }: DaemonDeps): Daemon {
  const metrics = createMetrics();
  const spool = openSpool(config.spool, clock);
  const resolver = createResolver(config.dns, clock);
  const delivery = createDelivery(
    {
      port: config.delivery.port,
      localName: config.hostname,
      tls: config.delivery.tls,
      timeouts: config.delivery.timeouts,
      limits: config.shaping.defaults,
    },
    { clock, log: log.child({ stage: 'delivery' }) },
  );
  const { timeouts } = config.delivery;
  const queue = createQueue(
    {
      retry: config.delivery.retry,
      maxActive: config.delivery.max_active,
      maxActiveRecipients: config.delivery.max_active_recipients,
      maxRecipientsPerTransaction: MAX_RECIPIENTS_PER_TRANSACTION,
      // Generous: DNS retries, five MX addresses, then a full transaction, before we call it stuck.
      stallAfter: config.dns.timeout * config.dns.attempts * 4 + 5 * (timeouts.connect + timeouts.greeting) + timeouts.command + timeouts.data + 60_000,
    },
    {
      load: spool.load,
      journal: spool.journal,
      remove: spool.remove,
      openBody: spool.openBody,
      route: resolver.route,
      deliver: delivery.deliver,
      observe: (o: RecipientOutcome) => metrics.attempts.labels({ verdict: o.verdict.kind }).inc(),
    },
    { clock, log: log.child({ stage: 'queue' }) },
  );
  const ingress = createIngress(
    { ...config.smtp, hostname: config.hostname, validity: config.delivery.validity },
    {
      begin: spool.begin,
      healthy: spool.healthy,
      accept: (envelope) => {
        metrics.accepted.inc();
        metrics.acceptedRecipients.inc(envelope.recipients.length);
        queue.enqueue(envelope);
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
      },
      queue: () => ({ ...queue.snapshot(), delivery: delivery.snapshot() }),
    },
    log.child({ stage: 'admin' }),
  );

  return {
    async start() {
      const ids = await spool.recover();
      queue.start();
      const recovered = queue.recover(ids);
      await admin.start();
      await ingress.start();
      await recovered;
    },
    async stop(graceMs = 30_000) {
      log.info('stopping: no new mail accepted, finishing in-flight deliveries');
      const closingIngress = ingress.stop();
      delivery.stop();
      await queue.stop(graceMs);
      delivery.abort();
      await closingIngress;
      await admin.stop();
      log.info('stopped');
    },
    smtpAddresses: () => ingress.addresses(),
    adminAddress: () => admin.address(),
  };
}
