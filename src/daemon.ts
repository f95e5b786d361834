/**
 * The composition root: the pipeline (src/pipeline.ts: ingress → spool → queue → delivery →
 * events, each stage getting only the functions it needs) and what there is one of per process —
 * the shaper, admin and metrics, reloads — and the order they start and stop in.
 */
import type { Logger } from 'pino';
import { createAdmin, drainView, openWrites } from './admin/index.ts';
import { clusterCheck } from './cluster/index.ts';
import { createDashboard, DASHBOARD_ASSETS } from './dashboard/index.ts';
import { campaignLogCsv, campaignLogDir, campaignTimeline, readCampaignLog, sweepCampaignLogsHourly } from './feedback/index.ts';
import { REASON_TABLE, classifyReplies, createClassifier, loadBounceRules, qualifyMessage } from './bounce/index.ts';
import { changedKeys, sortChanges, type Config } from './config/index.ts';
import { loadTrust } from './delivery/index.ts';
import { createSigner, loadKeys } from './dkim/index.ts';
import { checkEgressAddresses, createCalendar, createWarmup, egressObserver, egressView, ReputationBook, warmupSources } from './egress/index.ts';
import type { Clock } from './lib/clock.ts';
import type { QueueId } from './model/ids.ts';
import { TernError } from './lib/errors.ts';
import { lowerHelperThreadPriority } from './lib/thread-priority.ts';
import { createMetrics, diskUsage, refreshProcessGauges, type Metrics } from './metrics/index.ts';
import { checkListenerTls, createReturnsIngress, MAX_RETURN_SIZE } from './ingress/index.ts';
import { openFleet } from './fleet.ts';
import { createPipeline } from './pipeline.ts';
import { createSuppressionStore, suppressionView } from './suppression/index.ts';
import { createReturnHandler, returnsDir, type ReturnHandlerDeps } from './returns/index.ts';
import { localShards, resolveThreads, workerShards, type Shards } from './shards/index.ts';
import { baseSettings, createShaper, loadRuleSet, type Change, type LoadedRuleSet, type PathIdentity } from './shaping/index.ts';

export interface Daemon {
  start(): Promise<void>;
  /** Stop accepting, let in-flight work finish within graceMs, then close everything. */
  stop(graceMs?: number): Promise<void>;
  /**
   * SIGHUP with the config read again (`next`; without it, the one in force): what may change
   * live changes (config/changes.ts), the rest is named as needing a restart; the DKIM keys and
   * MX rules files are read again either way, and a bad one keeps what was in use and says why.
   */
  reload(next?: Config): Reloaded;
  smtpAddresses(): { host: string; port: number }[];
  adminAddress(): { host: string; port: number } | undefined;
  /** The bounce listener's addresses (bounce.listen), when bounce.domain is set. */
  returnsAddresses(): { host: string; port: number }[];
}

export interface DaemonDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** With shards: where their log lines go (each shard writes its own to stdout without it). */
  readonly logLine?: (line: string) => void;
  /** With shards: one stopped (ADR 0010); the process should stop and be restarted. */
  readonly onFailure?: (err: Error) => void;
  /** Sets the level of the logger passed in and every child of it (SIGHUP, log.level). */
  readonly setLogLevel?: (level: string) => void;
}

export interface Reloaded {
  readonly ok: boolean;
  readonly problems: string[];
  /** Changed keys now in force. */
  readonly applied: string[];
  /** Changed keys that wait for a restart. */
  readonly restart: string[];
}

/** Problems in what a valid config points at (DKIM keys, bounce and MX rules, TLS files, egress addresses), reported like config problems. */
export function checkFiles(config: Config): { path: string; problem: string }[] {
  const shaping = loadShapingRules(config);
  return [
    ...loadKeys(config.dkim.keys).problems, ...loadBounceRules(config.bounce.rules_file).problems, ...(shaping.ok ? [] : shaping.problems),
    ...checkTrust(config), ...checkListenerTls(config.smtp.tls), ...checkEgressAddresses(config.egress),
  ];
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

export function createDaemon(config: Config, deps: DaemonDeps): Daemon {
  const { clock, log, logLine, onFailure } = deps;
  // The config in force: what a reload compares the file with (config/changes.ts).
  let running = config;
  const threads = resolveThreads(config.tuning.threads);
  const metrics = createMetrics(threads === 1 ? 'all' : 'coordinator');
  const loaded = loadKeys(config.dkim.keys);
  if (loaded.problems.length > 0) {
    throw new TernError('TERN_CONFIG_INVALID', loaded.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  }
  const bounceRules = loadBounceRules(config.bounce.rules_file);
  if (bounceRules.problems.length > 0) {
    throw new TernError('TERN_CONFIG_INVALID', bounceRules.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  }
  const classifier = createClassifier(bounceRules.rules);
  const classify = classifyReplies(classifier);
  const shapingRules = loadShapingRules(config);
  if (!shapingRules.ok) throw new TernError('TERN_CONFIG_INVALID', shapingRules.problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
  const { egress } = config;
  const warmup = createWarmup(
    { sources: warmupSources(egress), timezone: egress.timezone, stateDir: egress.state_dir, badShare: egress.warmup_hold_above },
    { clock, log: log.child({ stage: 'egress' }), onChange: () => shards.egressChanged(warmup.capped()) },
  );
  const suppressions = createSuppressionStore(
    { dir: config.suppression.state_dir, periodMs: config.suppression.period },
    { clock, log: log.child({ stage: 'suppression' }), onChange: (change) => shards.suppressionsChanged(change) },
  );
  // A hard bounce from any shard puts the address on the list (shards keep copies).
  const suppress = config.suppression.enabled ? (domain: string, address: string, detail: string) => void suppressions.add(domain, address, 'hard-bounce', detail) : undefined;
  const returns = openReturns(config, {
    qualify: (raw) => qualifyMessage(raw, classifier),
    record: (events) => shards.record(events),
    ...(config.suppression.enabled ? { complained: (domain: string, address: string) => void suppressions.add(domain, address, 'complaint', 'complained (feedback report)') } : {}),
    count: (result) => metrics.returns.labels({ result }).inc(),
    clock, log: log.child({ stage: 'returns' }),
  });
  const reputation = new ReputationBook(
    { days: egress.reputation_days, dir: egress.state_dir, calendar: createCalendar(egress.timezone) },
    { clock, log: log.child({ stage: 'egress' }) },
  );
  // A drain (POST /api/v1/drain): since when no new mail is taken, for a rolling upgrade.
  let drainingSince: number | undefined;
  const fleet = openFleet(config, { clock, log, metrics, draining: () => drainingSince !== undefined });
  const membership = fleet?.membership;
  const shaper = createShaper(
    { base: baseSettings(config), rules: shapingRules.rules, stateDir: config.shaping.state_dir },
    {
      clock,
      log: log.child({ stage: 'shaping' }),
      classify,
      onObserved: egressObserver(warmup, reputation, classify),
      ...(fleet ? { limiter: fleet.limiter } : {}),
      onChange: (change: Change, path: PathIdentity) => {
        metrics.shapingActions.labels({ rule: change.rule, action: change.change }).inc();
        shards.shapingChanged(change, path.key);
        fleet?.shapingChanged(change);
      },
    },
  );
  const shards: Shards = threads === 1
    ? singleLoop()
    : workerShards(config, threads, { clock, log, shaper, warmup, ...(suppress ? { suppress } : {}), ...(logLine ? { logLine } : {}), onFailure: onFailure ?? (() => undefined) });
  function singleLoop(): Shards {
    const signer = createSigner(loaded.keys, (algorithm, seconds) => metrics.dkimSeconds.labels({ algorithm }).observe(seconds));
    const pipeline = createPipeline(config, {
      clock, log, metrics, classify, signer, ...(suppress ? { suppress } : {}),
      shaping: { path: shaper.path, acquire: shaper.acquire, release: shaper.release, observe: shaper.observe, warmup },
    });
    return localShards(pipeline, (keys) => signer.setKeys(keys));
  }
  const spoolDisk = diskUsage(config.spool.dir, clock);
  const writes = openWrites(config.admin.state_dir, {
    suspensionsChanged: (list) => shards.setSuspensions(list),
    flush: (selector) => shards.flush(selector),
    bounce: (selector, reason) => shards.bounce(selector, reason),
    counted: (action, result) => metrics.adminActions.labels({ action, result }).inc(),
    warmup: (source, action, days) => {
      const done = action === 'skip' ? warmup.skip(source, days) : warmup[action](source);
      if (done) fleet?.rampChanged(source);
      return done;
    },
    ...(fleet ? { told: fleet.told } : {}),
    suppressionList: suppressions,
  }, clock, log.child({ stage: 'admin' }));
  fleet?.attach({ shaper, warmup, suspensions: writes.suspensions, suspensionsChanged: (list) => shards.setSuspensions(list), flush: (selector) => shards.flush(selector) });
  // The dashboard samples often and shows no disk figures: it leaves the spool walk (cached
  // DISK_CACHE_MS) to scrapes, which would otherwise read a walk made before it.
  const refreshedMetrics = async (disk: boolean): Promise<string> => {
    metrics.clusterNodes.set(membership ? membership.view().nodes.length : 0);
    await refreshProcessGauges(metrics, {
      queued: () => shards.queued(),
      pools: () => shards.pools(),
      recipients: async () => (await shards.queue()).recipients,
      labelsOf: (path) => shaper.labelsOf(path),
      holds: () => shaper.holds(),
      suspensions: () => writes.suspensions.list(),
      ...(disk ? { disk: spoolDisk } : {}),
      warmups: () => warmup.views(),
      suppressed: () => suppressions.size,
    });
    return shards.metrics(metrics.registry);
  };
  let campaignLogSweeper: { stop(): void } | undefined;
  const admin = createAdmin(
    config.admin,
    {
      metricsType: metrics.registry.contentType,
      metrics: () => refreshedMetrics(true),
      dashboard: createDashboard({ token: config.admin.token, assetsDir: DASHBOARD_ASSETS }, { metrics: () => refreshedMetrics(false) }, clock, log.child({ stage: 'dashboard' })),
      queue: () => shards.queue(),
      readiness: () => shards.readiness(),
      kpi: (scope, id) => shards.kpi(scope, id),
      campaigns: () => shards.kpiList('campaign'),
      campaignLog: (id, query) => readCampaignLog(campaignLogDir(config), id, query),
      campaignCsv: (id, query) => campaignLogCsv(campaignLogDir(config), id, query),
      campaignTimeline: (id, since) => campaignTimeline(campaignLogDir(config), id, since),
      drain: {
        async start(remote) {
          if (drainingSince === undefined) {
            drainingSince = clock.now();
            log.warn('draining: no new mail is accepted; delivery goes on (POST /api/v1/drain)');
            if (fleet) metrics.clusterNode.labels({ node: fleet.node }).set(0);
            await shards.closeIngress();
            metrics.adminActions.labels({ action: 'drain', result: 'ok' }).inc();
            await writes.audit.record({ action: 'drain', selector: {}, remote, result: 'ok', detail: {} });
          }
          return drainView(drainingSince, await shards.queue());
        },
        view: async () => drainView(drainingSince, await shards.queue()),
        since: () => drainingSince,
      },
      ...(membership ? { cluster: () => ({ view: membership.view(), check: clusterCheck(membership.view(), membership.liveNodes()) }) } : {}),
      sites: async () => ({ paths: shaper.views().map((p) => ({ ...p, reputation: reputation.summary(p.source, p.site) ?? null })), pools: await shards.pools(), queued: await shards.queued() }),
      reputation: (filter) => reputation.list(filter),
      writes,
      message: (id) => shards.message(id as QueueId),
      egress: () => egressView(egress, config.hostname, warmup.views()),
      suppressions: (filter) => ({ enabled: config.suppression.enabled, entries: suppressions.list(filter).map(suppressionView) }),
    },
    log.child({ stage: 'admin' }),
    clock,
  );

  return {
    async start() {
      if (threads > 1) log.info({ threads }, 'starting shards');
      await shards.recover();
      // Recovery ran file work, so libuv's pool threads exist now. Shards leave them alone: with
      // N loops able to fill every core, helpers below them starve, and a loop waiting on one
      // (an fsync before a 250, V8 joining its compile or GC jobs) waits for ever (ADR 0010).
      if (threads === 1) await lowerHelpers(config.tuning, log);
      await shaper.start();
      await warmup.start();
      await reputation.start();
      await suppressions.start();
      // Every entry, to each shard's copy, before ingress listens.
      shards.suppressionsChanged({ add: suppressions.list({}, Infinity) });
      shards.egressChanged(warmup.capped());
      // Before the queue runs: a restart must not send what an operator suspended.
      await shards.setSuspensions(writes.suspensions.list());
      const recovered = shards.run();
      await fleet?.start();
      await admin.start();
      await shards.listen();
      await returns?.start();
      campaignLogSweeper = config.feedback.campaign_log.keep > 0 ? sweepCampaignLogsHourly(campaignLogDir(config), config.feedback.campaign_log.keep, clock, log.child({ stage: 'feedback' })) : undefined;
      await recovered;
    },
    async stop(graceMs = 30_000) {
      log.info('stopping: no new mail accepted, finishing in-flight deliveries');
      await returns?.stop();
      campaignLogSweeper?.stop();
      await fleet?.stop();
      await shards.drain(graceMs);
      await shaper.stop();
      await warmup.stop();
      await reputation.stop();
      await suppressions.stop();
      await shards.close();
      await admin.stop();
      await writes.audit.close();
      metrics.loopDelay.stop();
      log.info('stopped');
    },
    reload(next = running) {
      const { live, restart } = sortChanges(changedKeys(running, next));
      if (restart.length > 0) log.warn({ keys: restart }, 'reload: these changes need a restart; the running values stay in force');
      const keys = loadKeys(next.dkim.keys);
      const rules = loadShapingRules(next);
      const problems = [...keys.problems, ...(rules.ok ? [] : rules.problems)].map((p) => `${p.path}: ${p.problem}`);
      if (keys.problems.length > 0) log.error({ problems }, 'reload: DKIM keys not replaced; the previous keys stay in use');
      else {
        shards.reloadKeys(keys.keys);
        running = { ...running, dkim: next.dkim };
        log.info({ keys: keys.keys.map((k) => `${k.selector}._domainkey.${k.domain}`) }, 'reload: DKIM keys re-read');
      }
      if (!rules.ok) log.error({ problems }, 'reload: MX rules not replaced; the previous rules stay in use');
      else {
        // Path defaults come from shaping.defaults (live) over the delivery timeouts in force.
        shaper.setRules(rules.rules, baseSettings({ shaping: next.shaping, delivery: running.delivery }));
        shards.rulesChanged();
        log.info({ rules_file: next.shaping.rules_file ?? null, default_rules: next.shaping.default_rules }, 'reload: MX rules re-read');
        // Only the live keys: shaping.state_dir stays as it was, and says so at the next reload too.
        const { rules_file, default_rules, defaults } = next.shaping;
        running = { ...running, shaping: { ...running.shaping, rules_file, default_rules, defaults } };
      }
      const { webhook, webhooks } = next.feedback;
      if (changedKeys(running.feedback, next.feedback).some((k) => k === 'webhook' || k === 'webhooks' || k.startsWith('webhook.'))) {
        // Senders stop and start again over the same outboxes: nothing recorded is lost meanwhile.
        shards.setWebhooks({ ...running.feedback, webhook, webhooks }).then(
          () => log.info({ urls: [...(webhook ? [webhook.url] : []), ...webhooks.map((w) => w.url)] }, 'reload: webhook endpoints in force'),
          (err: unknown) => log.error({ err }, 'reload: the webhook endpoints could not all be changed'),
        );
        running = { ...running, feedback: { ...running.feedback, webhook, webhooks } };
      }
      admin.reconfigure({ token: next.admin.token, readiness: next.admin.readiness });
      running = { ...running, admin: { ...running.admin, token: next.admin.token, readiness: next.admin.readiness } };
      const failed = new Set([...(keys.problems.length > 0 ? ['dkim.keys'] : []), ...(rules.ok ? [] : ['shaping'])]);
      const applied = live.filter((k) => ![...failed].some((f) => k === f || k.startsWith(`${f}.`)));
      // Said at the level in force when the signal came, before a new one silences it.
      if (applied.length > 0) log.info({ keys: applied }, 'reload: applied');
      if (next.log.level !== running.log.level) {
        deps.setLogLevel?.(next.log.level);
        shards.setLogLevel(next.log.level);
        running = { ...running, log: { ...running.log, level: next.log.level } };
      }
      return { ok: problems.length === 0, problems, applied, restart };
    },
    smtpAddresses: () => shards.smtpAddresses(),
    adminAddress: () => admin.address(),
    returnsAddresses: () => returns?.addresses() ?? [],
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

/** The bounce listener (ingress) and what it hands returned mail to (returns), when bounce.domain is set. */
function openReturns(config: Config, deps: Omit<ReturnHandlerDeps, 'secret' | 'dir' | 'keepMs'>) {
  const domain = config.bounce.domain;
  if (!domain) return undefined;
  const handler = createReturnHandler({ ...deps, secret: config.bounce.secret, dir: returnsDir(config), keepMs: config.bounce.keep });
  const listener = createReturnsIngress({ listen: config.bounce.listen, hostname: config.hostname, domain, maxSize: MAX_RETURN_SIZE, ...(config.smtp.tls ? { tls: config.smtp.tls } : {}) }, handler, deps.log);
  return {
    async start() {
      handler.start();
      await listener.start();
    },
    async stop() {
      handler.stop();
      await listener.stop();
    },
    addresses: () => listener.addresses(),
  };
}
