/**
 * The composition root: the only place that knows every stage. Data flows one way —
 * ingress → spool → queue → delivery — and each stage gets only the functions it needs.
 */
import type { Logger } from 'pino';
import { createAdmin } from './admin/index.ts';
import { classifyReplies, createClassifier, defaultRules, loadRulesFile, type Rule } from './bounce/index.ts';
import type { Config } from './config/index.ts';
import { createDelivery } from './delivery/index.ts';
import { createSigner, DkimHasher, loadKeys } from './dkim/index.ts';
import { createResolver } from './dns/index.ts';
import { createIngress } from './ingress/index.ts';
import type { Clock } from './lib/clock.ts';
import { TernError } from './lib/errors.ts';
import { prefixed } from './lib/streams.ts';
import { createMetrics } from './metrics/index.ts';
import { createQueue, type RecipientOutcome } from './queue/index.ts';
import { openSpool } from './spool/index.ts';

export interface Daemon {
  start(): Promise<void>;
  /** Stop accepting, let in-flight work finish within graceMs, then close everything. */
  stop(graceMs?: number): Promise<void>;
  /** SIGHUP: re-read DKIM keys; a bad key keeps the old set and says why. */
  reload(): { ok: boolean; problems: string[] };
  smtpAddresses(): { host: string; port: number }[];
  adminAddress(): { host: string; port: number } | undefined;
}

export interface DaemonDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

const MAX_RECIPIENTS_PER_TRANSACTION = 100;

/** Problems in the files a valid config points at (DKIM keys, bounce rules), reported like config problems. */
export function checkFiles(config: Config): { path: string; problem: string }[] {
  return [...loadKeys(config.dkim.keys).problems, ...loadBounceRules(config).problems];
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
      quarantine: spool.quarantine,
      openBody: (envelope) => prefixed(envelope.prepend ?? '', spool.openBody(envelope.id, envelope.bodySize)),
      route: resolver.route,
      deliver: delivery.deliver,
      classify,
      observe: (o: RecipientOutcome) => {
        metrics.attempts.labels({ verdict: o.verdict.kind }).inc();
        if (o.verdict.kind !== 'delivered') {
          const b = o.verdict.bounce;
          metrics.bounces.labels({ reason: b.reason, category: b.category, type: b.type, retry: String(b.retry) }).inc();
        }
      },
    },
    { clock, log: log.child({ stage: 'queue' }) },
  );
  const ingress = createIngress(
    { ...config.smtp, hostname: config.hostname, validity: config.delivery.validity },
    {
      begin: spool.begin,
      healthy: spool.healthy,
      // DKIM: the body hash is computed as the message streams to disk; the signature (made in
      // the thread pool) is stored with the envelope and sent on top of the stored bytes.
      ...(config.dkim.keys.length > 0
        ? {
            observeBody: (receivedAt: number) => {
              const hasher = new DkimHasher();
              return {
                stream: hasher,
                finish: () => signer.sign({ header: hasher.header ?? '', bodyHash: hasher.bodyHash(), time: Math.floor(receivedAt / 1000) }),
              };
            },
          }
        : {}),
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
      await spool.close();
      await admin.stop();
      log.info('stopped');
    },
    reload() {
      const next = loadKeys(config.dkim.keys);
      const problems = next.problems.map((p) => `${p.path}: ${p.problem}`);
      if (problems.length > 0) {
        log.error({ problems }, 'reload: DKIM keys not replaced; the previous keys stay in use');
        return { ok: false, problems };
      }
      signer.setKeys(next.keys);
      log.info({ keys: next.keys.map((k) => `${k.selector}._domainkey.${k.domain}`) }, 'reload: DKIM keys re-read');
      return { ok: true, problems };
    },
    smtpAddresses: () => ingress.addresses(),
    adminAddress: () => admin.address(),
  };
}
