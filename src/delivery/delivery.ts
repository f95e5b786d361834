import type { EgressPlan, EgressSource, WarmupPort } from '../model/egress.ts';
import type { SiteName } from '../model/ids.ts';
import type { AttemptOutcome } from '../model/outcome.ts';
import { localReply } from '../model/reply.ts';
import type { PathHandle, TlsLevel } from '../model/path.ts';
import type { AppliedTlsPolicy, TlsPolicyDecision } from '../model/tls-policy.ts';
import { PathPool, type DeliveryJob, type PathPorts, type PoolDeps, type PoolSettings } from './pool.ts';
import { planFor, reported, requiring, withDane } from './receiver-policy.ts';
import type { TlsaLookup, TlsaRecord } from '../model/dane.ts';

export interface DeliveryPorts extends PathPorts {
  /**
   * The path a domain's mail takes to a site (shaping decides; the same handle while in use).
   * A promise when shaping is in another thread and has not seen the path yet (ADR 0010).
   */
  path(site: SiteName, mxHosts: readonly string[], domain: string, source: string): PathHandle | Promise<PathHandle>;
  /** Warm-up caps (docs/egress.md): asked before an attempt from a warming source, when some source warms. */
  readonly warmup?: WarmupPort;
}

/** The pools' settings, and the egress sources mail is sent from (docs/egress.md). */
export interface DeliverySettings extends PoolSettings {
  readonly egress: EgressPlan;
}

export interface DeliveryDeps extends PoolDeps {
  /** A recipient domain's own TLS policy (docs/tls.md); absent: none is looked for. */
  readonly tlsPolicy?: (domain: string) => Promise<TlsPolicyDecision>;
  /** DANE (docs/tls.md): an MX host's TLSA records, asked for hosts DNSSEC vouches for; absent: no DANE. */
  readonly tlsa?: (host: string) => Promise<TlsaLookup>;
  /** Each attempt under a receiver's policy, as it went: for metrics and TLS-RPT reports. */
  readonly onTlsPolicy?: (applied: AppliedTlsPolicy, session: PolicySession) => void;
}

/** What a TLS-RPT report says of a session: where it went, how, and the terms of the policy that applied (one of sts, tlsa). */
export interface PolicySession {
  readonly domain: string;
  readonly route: AttemptOutcome['route'];
  readonly result?: 'success' | 'failure';
  readonly failure?: string;
  /** MTA-STS applied: its policy. */
  readonly sts?: Extract<TlsPolicyDecision, { kind: 'mta-sts' }>;
  /** DANE applied: the MX host's TLSA records. */
  readonly tlsa?: readonly TlsaRecord[];
}

/** A pool for mail whose domain's policy needs a level of its own: that level, for that domain. */
interface Variant { readonly level: TlsLevel; readonly domain: string }

/** One path's pool as the admin API shows it; `tls_policies`: the receivers' policies last applied on it, by domain. */
export interface PoolView {
  readonly connections: number;
  readonly waiting: number;
  readonly tls_policies?: Readonly<Record<string, AppliedTlsPolicy & { readonly at: string }>>;
}

/** Domains whose last policy a path's view keeps (the most recent). */
const POLICIES_SHOWN = 50;

export interface Delivery {
  /** Send one message to one domain's recipients; always resolves with an outcome, never throws. */
  deliver(job: DeliveryJob): Promise<AttemptOutcome>;
  /** Stop opening connections and quit idle ones. */
  stop(): void;
  /** Close every connection at once (shutdown deadline). */
  abort(): void;
  snapshot(): { sites: number; connections: number; waiting: number };
  /** Open connections and waiting jobs per path key. */
  pools(): Map<string, PoolView>;
}

// Pools of paths with no traffic are dropped after this long, so a million domains do not pin memory.
const POOL_SWEEP_MS = 60_000;

export function createDelivery(settings: DeliverySettings, ports: DeliveryPorts, deps: DeliveryDeps): Delivery {
  const { egress } = settings;
  const pools = new Map<string, PathPool>();
  const verified = requiring('verify', new WeakMap());
  /** path key → domain → the receiver's policy last applied there, for the sites view. */
  const applied = new Map<string, Map<string, AppliedTlsPolicy & { at: string }>>();
  const remember = (path: string | undefined, domain: string, policy: AppliedTlsPolicy): void => {
    if (!path) return;
    const byDomain = applied.get(path) ?? new Map<string, AppliedTlsPolicy & { at: string }>();
    byDomain.delete(domain);
    byDomain.set(domain, { ...policy, at: new Date(deps.clock.now()).toISOString() });
    if (byDomain.size > POLICIES_SHOWN) byDomain.delete(byDomain.keys().next().value as string);
    applied.set(path, byDomain);
  };
  let sweeper = deps.clock.at(deps.clock.now() + POOL_SWEEP_MS, sweep);
  let stopped = false;

  function sweep(): void {
    for (const [key, pool] of pools) if (!pool.busy) pools.delete(key);
    const live = new Set([...pools.values()].map((p) => p.path.key));
    for (const key of applied.keys()) if (!live.has(key)) applied.delete(key);
    if (!stopped) sweeper = deps.clock.at(deps.clock.now() + POOL_SWEEP_MS, sweep);
  }

  /** The path's pool; a domain whose policy needs verified TLS has a pool of its own on the path (same limits). */
  function poolFor(given: PathHandle, source: EgressSource, variant: Variant | undefined): PathPool {
    const path = variant ? verified(given) : given;
    const key = variant ? `${path.key}\n${variant.level}:${variant.domain}` : path.key;
    let pool = pools.get(key);
    // A reload can give the key a new handle (a provider or domain rule changed): use the new one.
    if (!pool || (pool.path !== path && !pool.busy)) {
      pool = new PathPool(path, { ...settings, localName: source.ehlo, ...(source.address ? { localAddress: source.address } : {}) }, ports, deps);
      pools.set(key, pool);
    }
    return pool;
  }

  /** One attempt through the path's pool (the policy's variant of it, if any), with egress and warm-up. */
  function attempt(job: DeliveryJob, variant: Variant | undefined): Promise<AttemptOutcome> {
    // A pool named by mail spooled before a restart that removed it: the default pool carries it.
    const asked = job.pool !== undefined && egress.pools.includes(job.pool) ? job.pool : egress.defaultPool;
    const mx = job.hosts.map((h) => h.name);
    const send = (p: PathHandle, source: EgressSource): Promise<AttemptOutcome> =>
      poolFor(p, source, variant).submit(job).then((outcome) => ({ ...outcome, route: { ...outcome.route, pool: asked, source: source.name } }));
    const first = egress.pick(asked) as EgressSource;
    const path = ports.path(job.site, mx, job.domain, first.name);
    const warmup = ports.warmup;
    if (!egress.warming || !warmup) return path instanceof Promise ? path.then((p) => send(p, first)) : send(path, first);
    return Promise.resolve(path).then(async (p) => {
      // The provider is the site's, whichever source sends: the first path tells it.
      const provider = p.provider ?? 'other';
      const recipients = job.envelope.recipients.length;
      const counted = (source: EgressSource, q: PathHandle): Promise<AttemptOutcome> => send(q, source).then((outcome) => {
        // Nothing reached a receiver: the cap was not used.
        if (outcome.kind === 'site-unreachable' || outcome.kind === 'held' || outcome.kind === 'path-failed') warmup.giveBack(source.name, provider, recipients);
        return outcome;
      });
      if (warmup.take(first.name, provider, recipients)) return counted(first, p);
      const refused = new Set([first.name]);
      for (;;) {
        const other = egress.pick(asked, (s) => !refused.has(s) && warmup.cappedUntil(s, provider) === undefined);
        if (!other) return warmupHold(asked, provider, egress, (s) => warmup.cappedUntil(s, provider));
        if (warmup.take(other.name, provider, recipients)) return counted(other, await ports.path(job.site, mx, job.domain, other.name));
        refused.add(other.name);
      }
    });
  }

  return {
    deliver(job) {
      if (!deps.tlsPolicy && !deps.tlsa) return attempt(job, undefined);
      const none: TlsPolicyDecision = { kind: 'none' };
      return Promise.all([deps.tlsPolicy?.(job.domain) ?? none, deps.tlsa ? withDane(job.hosts, deps.tlsa) : { hosts: job.hosts }]).then(
        ([decision, dane]) => {
          const counted = (outcome: AttemptOutcome): AttemptOutcome => {
            const applied = outcome.route.tlsPolicy;
            if (!applied || (applied.type !== 'mta-sts' && applied.type !== 'dane')) return outcome;
            remember(outcome.route.path, job.domain, applied);
            const terms = applied.type === 'dane'
              ? { tlsa: ('hosts' in dane ? dane.hosts.find((h) => h.name === outcome.route.mx)?.dane : undefined) ?? [] }
              : decision.kind === 'mta-sts' ? { sts: decision } : {};
            const { result, failure } = applied;
            deps.onTlsPolicy?.(applied, { domain: job.domain, route: outcome.route, ...(result ? { result } : {}), ...(failure ? { failure } : {}), ...terms });
            return outcome;
          };
          if ('refused' in dane) return counted(dane.refused);
          const plan = planFor({ ...job, hosts: dane.hosts }, decision);
          if (plan.kind === 'refuse') return counted(plan.outcome);
          const variant = plan.level ? { level: plan.level, domain: job.domain } : undefined;
          return attempt({ ...job, hosts: plan.hosts }, variant).then((outcome) => counted(reported(outcome, decision, job.domain)));
        },
        // Finding the policy failed (a bug, not a missing policy): the mail goes as without one.
        () => attempt(job, undefined),
      );
    },
    stop() {
      stopped = true;
      sweeper.cancel();
      for (const pool of pools.values()) pool.stop();
    },
    abort() {
      for (const pool of pools.values()) pool.abort();
    },
    snapshot() {
      let connections = 0;
      let waiting = 0;
      for (const pool of pools.values()) {
        connections += pool.connections;
        waiting += pool.depth;
      }
      return { sites: pools.size, connections, waiting };
    },
    pools() {
      // A path's policy pools count with it: one path, one set of limits.
      const view = new Map<string, PoolView>();
      for (const pool of pools.values()) {
        const seen = view.get(pool.path.key) ?? { connections: 0, waiting: 0 };
        const policies = applied.get(pool.path.key);
        view.set(pool.path.key, { connections: seen.connections + pool.connections, waiting: seen.waiting + pool.depth, ...(policies ? { tls_policies: Object.fromEntries(policies) } : {}) });
      }
      return view;
    },
  };
}

/**
 * Every source of the pool has sent its warm-up cap today (for this provider): the mail waits
 * untried until the first cap lifts (the next local midnight), within its validity.
 */
function warmupHold(pool: string, provider: string, egress: EgressPlan, capped: (source: string) => number | undefined): AttemptOutcome {
  // Every member is capped (that is why the mail is held), so each has a time its cap lifts.
  const until = Math.min(...egress.members(pool).map((s) => capped(s) ?? Infinity));
  return {
    kind: 'held', route: { pool }, until, reason: 'warmup',
    reply: localReply(451, '4.7.0', `warm-up: every source of pool ${pool} has sent today's cap${provider === 'other' ? '' : ` for ${provider}`}`, 'QUEUE'),
  };
}
