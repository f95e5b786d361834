import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { SiteName } from '../model/ids.ts';
import type { Grant, GrantRequest, LimiterPort, PathHandle, PathHold, PathLevels, PathObservation, PathSettings } from '../model/path.ts';
import { formatReply, type SmtpReply } from '../model/reply.ts';
import { AdaptiveState, type Change, type EffectView, type SharedEffect } from './adaptive.ts';
import { Limiter } from './limiter.ts';
import type { HourSummary } from './meters.ts';
import { DEFAULT_SOURCE, identify, layersOf, parsePathKey, pathKey, providerOf, type PathIdentity } from './paths.ts';
import type { RuleSet } from './rules.ts';
import { SETTING_KEYS, resolveLayers, showSetting, withLimit, limitValue, type LimitKey, type Resolved, type SettingKey } from './settings.ts';
import { loadState, saveState } from './store.ts';

export interface ShaperOptions {
  /** The bottom layer: shaping.defaults over delivery's timeouts and TLS. */
  readonly base: PathSettings;
  readonly rules: RuleSet;
  /** Where adaptive state is kept across restarts. */
  readonly stateDir: string;
}

export interface ShaperDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** The bounce classifier, for rules that match on a reply's reason. */
  readonly classify: (reply: SmtpReply) => { readonly reason: string };
  /** Every change an adaptive rule makes, after it is made (metrics; failing queued mail). */
  readonly onChange?: (change: Change, path: PathIdentity) => void;
  /** Every observation delivery reports, after the rules saw it (egress counts a source's sends and refusals). */
  readonly onObserved?: (path: Pick<PathIdentity, 'source' | 'provider' | 'site'>, observation: PathObservation) => void;
  /** The grants' owner; a fleet passes one that shares them through Redis. Default: this process's own. */
  readonly limiter?: LimiterPort;
}

/** A path as the admin API shows it. */
export interface PathView {
  readonly path: string;
  readonly site: string;
  readonly source: string;
  readonly domain: string | null;
  readonly provider: string | null;
  readonly limits: Readonly<Record<SettingKey, { readonly value: number | string; readonly rule: string }>>;
  readonly adaptive: readonly (EffectView & { readonly remaining_s: number })[];
  readonly paused: { readonly rule: string; readonly until: string; readonly remaining_s: number; readonly reply: string } | null;
  readonly failing: { readonly rule: string; readonly until: string; readonly remaining_s: number; readonly reply: string } | null;
  readonly connections: number;
  readonly last_hour: HourSummary;
}

export interface Shaper {
  /** The path a domain's mail takes to a site; the same object while it is in use. */
  /** `source`: the egress source's name (docs/egress.md); "default" when none is configured. */
  path(site: SiteName, mxHosts: readonly string[], domain: string, source?: string): PathHandle;
  acquire(requests: readonly GrantRequest[]): Grant[];
  release(path: string, connections: number): void;
  /** Message grants a delivery shard took and did not use (src/shaping/remote.ts). */
  refund(path: string, messages: number): void;
  observe(path: PathHandle, observation: PathObservation, levels: PathLevels): void;
  /** An effect in force on a path, as a fleet's other nodes take it (docs/scaling.md). */
  shared(path: string, rule: string): SharedEffect | undefined;
  /** An effect another node of the fleet made: taken here, reported as an "adopted" change. */
  adopt(path: string, effect: SharedEffect): void;
  /** New rules (SIGHUP), and new path defaults if given: paths pick up their new settings at their next question; effects stay. */
  setRules(rules: RuleSet, base?: PathSettings): void;
  views(): PathView[];
  /** Paths with a pause or failure in force, by provider label ("other" for none). */
  holds(): Map<string, number>;
  /** A path key's configured provider (if any) and egress source: metrics' bounded labels. */
  labelsOf(path: string): { readonly provider: string | undefined; readonly source: string };
  start(): Promise<void>;
  stop(): Promise<void>;
}

const SAVE_SOON_MS = 1_000;
const SAVE_EVERY_MS = 60_000;
const SWEEP_EVERY_MS = 600_000;
/** A path nobody has asked about for this long is forgotten (unless adaptive state keeps it). */
const IDLE_PATH_MS = 600_000;

interface Cached { rules: number; adaptive: number; resolved: Resolved; hold: PathHold | undefined }

/** Which limit cut a grant short: a rate says when to ask again; the connection count does not. */
function pressedLimit(kind: 'connection' | 'message', grant: Grant): LimitKey {
  if (kind === 'message') return 'max_message_rate';
  return grant.retryAt === undefined ? 'max_connections' : 'max_connection_rate';
}

export function createShaper(options: ShaperOptions, deps: ShaperDeps): Shaper {
  const { clock, log } = deps;
  let rules = options.rules;
  let base = options.base;
  let rulesVersion = 0;
  const adaptive = new AdaptiveState(rules.adaptive, deps.classify);
  const limiter: LimiterPort = deps.limiter ?? new Limiter(() => clock.now());
  const handles = new Map<string, { handle: PathHandle; usedAt: number }>();
  const providers = new Map<string, string | undefined>();
  let wake: Timer | undefined;
  let wakeAt = Infinity;
  let saveTimer: Timer | undefined;
  let saving: Promise<void> = Promise.resolve();
  let dirty = false;
  let housekeeping: Timer | undefined;
  let periodic: Timer | undefined;
  let running = false;

  function makeHandle(id: PathIdentity): PathHandle {
    let cached: Cached | undefined;
    const current = (): Cached => {
      if (cached && cached.rules === rulesVersion && cached.adaptive === adaptive.version(id.key)) return cached;
      cached = resolve(id);
      limiter.configure(id.key, cached.resolved.settings);
      return cached;
    };
    return {
      ...id,
      settings: () => current().resolved.settings,
      hold: () => {
        const hold = current().hold;
        return hold && hold.until > clock.now() ? hold : undefined;
      },
    };
  }

  function resolve(id: PathIdentity): Cached {
    const stat = resolveLayers(base, layersOf(rules, id));
    const over = adaptive.overrides(id.key);
    let settings = stat.settings;
    const from: Record<string, string> = { ...stat.from };
    for (const [key, { value, rule }] of over?.values ?? []) {
      if (value >= limitValue(settings, key)) continue;
      settings = withLimit(settings, key, value);
      from[key] = `adaptive:${rule}`;
    }
    return { rules: rulesVersion, adaptive: adaptive.version(id.key), resolved: { settings, from: from as Resolved['from'] }, hold: over?.hold };
  }

  function handleFor(id: PathIdentity): PathHandle {
    const known = handles.get(id.key);
    if (known) {
      known.usedAt = clock.now();
      return known.handle;
    }
    const handle = makeHandle(id);
    handles.set(id.key, { handle, usedAt: clock.now() });
    return handle;
  }

  function staticOf(handle: Pick<PathIdentity, 'site' | 'domain' | 'provider'>): PathSettings {
    return resolveLayers(base, layersOf(rules, handle)).settings;
  }

  function report(changes: readonly Change[]): void {
    if (changes.length === 0) return;
    for (const change of changes) {
      const id = identityOf(change.path);
      log.info({ event: 'shaping', ...change, site: id.site, provider: id.provider ?? 'other', ...(change.until ? { until: new Date(change.until).toISOString() } : {}) },
        `shaping: ${change.change} ${change.path} (rule ${change.rule})`);
      deps.onChange?.(change, id);
    }
    dirty = true;
    scheduleSave(SAVE_SOON_MS);
    arm();
  }

  function identityOf(key: string): PathIdentity {
    const known = handles.get(key)?.handle;
    if (known) return known;
    const parsed = parsePathKey(key) ?? { source: DEFAULT_SOURCE, site: key as SiteName, domain: undefined };
    if (!providers.has(parsed.site)) providers.set(parsed.site, providerOf(rules.providers, parsed.site.split(','))?.name);
    return { key, ...parsed, provider: providers.get(parsed.site) };
  }

  function arm(): void {
    const next = adaptive.nextWake();
    if (!running || next === undefined || next >= wakeAt) return;
    wake?.cancel();
    wakeAt = next;
    wake = clock.at(next, () => {
      wakeAt = Infinity;
      wake = undefined;
      report(adaptive.tick(clock.now()));
      arm();
    });
  }

  function scheduleSave(delay: number): void {
    if (saveTimer || !running) return;
    saveTimer = clock.at(clock.now() + delay, () => {
      saveTimer = undefined;
      void save();
    });
  }

  function save(): Promise<void> {
    if (!dirty) return saving;
    dirty = false;
    const state = adaptive.serialize();
    saving = saving.then(() => saveState(options.stateDir, state, clock.now())).catch((err: unknown) => {
      dirty = true;
      log.error({ err, dir: options.stateDir }, 'shaping: adaptive state not saved; will try again');
    });
    return saving;
  }

  /** Counts change with every delivery: they are saved once a minute, not on each. */
  function savePeriodically(): void {
    scheduleSave(0);
    if (running) periodic = clock.at(clock.now() + SAVE_EVERY_MS, savePeriodically);
  }

  function housekeep(): void {
    const now = clock.now();
    adaptive.sweep(now);
    for (const [key, entry] of handles) {
      if (now - entry.usedAt < IDLE_PATH_MS || limiter.leases(key) > 0) continue;
      handles.delete(key);
      limiter.forget(key);
    }
    void save();
    if (running) housekeeping = clock.at(now + SWEEP_EVERY_MS, housekeep);
  }

  function view(key: string, now: number): PathView {
    const id = identityOf(key);
    // Resolved afresh, not through a handle: a path only looked at gets no limiter slot.
    const resolved = resolve(id);
    const { settings, from } = resolved.resolved;
    const hold = resolved.hold && resolved.hold.until > now ? resolved.hold : undefined;
    const holdView = hold ? { rule: hold.rule, until: new Date(hold.until).toISOString(), remaining_s: Math.ceil((hold.until - now) / 1000), reply: formatReply(hold.reply) } : null;
    return {
      path: key,
      site: id.site,
      source: id.source,
      domain: id.domain ?? null,
      provider: id.provider ?? null,
      limits: Object.fromEntries(SETTING_KEYS.map((k) => [k, { value: showSetting(settings, k), rule: from[k] }])) as PathView['limits'],
      adaptive: adaptive.effects(key).map((e) => ({ ...e, remaining_s: Math.max(0, Math.ceil((e.until - now) / 1000)) })),
      paused: hold?.kind === 'pause' ? holdView : null,
      failing: hold?.kind === 'fail' ? holdView : null,
      connections: limiter.leases(key),
      last_hour: adaptive.hour(key, now),
    };
  }

  return {
    path(site, mxHosts, domain, source = DEFAULT_SOURCE) {
      // Asked for every message: a known path is a map lookup; only a new one is matched to rules.
      const known = handles.get(pathKey(source, site, rules.domains.has(domain) ? domain : undefined));
      if (known) {
        known.usedAt = clock.now();
        return known.handle;
      }
      return handleFor(identify(rules, source, site, mxHosts, domain));
    },
    acquire(requests) {
      // The limiter holds each path to its settings as of now (an adaptive change, a reload).
      for (const r of requests) handles.get(r.path)?.handle.settings();
      const grants = limiter.acquire(requests);
      const now = clock.now();
      requests.forEach((r, i) => {
        const grant = grants[i] ?? { granted: 0 };
        if (r.kind === 'connection' && grant.granted > 0) adaptive.opened(r.path, now);
        if (grant.granted < r.count) adaptive.pressed(r.path, pressedLimit(r.kind, grant));
      });
      return grants;
    },
    release: (path, connections) => limiter.release(path, connections),
    refund: (path, messages) => limiter.refund(path, messages),
    observe(path, observation, levels) {
      dirty = true;
      // The common case, a delivery, costs two counters: no rule is tried, nothing is allocated.
      if (observation.kind === 'delivered') adaptive.delivered(path.key, observation.recipients, clock.now());
      else report(adaptive.observe({ key: path.key, provider: path.provider, base: () => staticOf(path), scale: () => limiter.scale?.(path.key) ?? 1 }, observation, levels, clock.now()));
      deps.onObserved?.(path, observation);
    },
    shared: (path, rule) => adaptive.shared(path, rule),
    adopt(path, effect) {
      const id = identityOf(path);
      const change = adaptive.adopt(path, effect, () => staticOf(id), clock.now());
      if (change) report([change]);
    },
    setRules(next, nextBase) {
      rules = next;
      if (nextBase) base = nextBase;
      rulesVersion++;
      providers.clear();
      adaptive.setRules(next.adaptive);
      // A path's identity (its provider, a domain carved out) may change with the rules: ask afresh.
      handles.clear();
      log.info({ providers: next.providers.length, sites: next.sites.size, domains: next.domains.size, adaptive: next.adaptive.length }, 'shaping: rules loaded');
    },
    views() {
      const now = clock.now();
      const keys = new Set([...handles.keys(), ...adaptive.keys()]);
      return [...keys].sort().map((k) => view(k, now));
    },
    labelsOf(path) {
      const id = identityOf(path);
      return { provider: id.provider, source: id.source };
    },
    holds() {
      const counts = new Map<string, number>();
      const now = clock.now();
      for (const key of adaptive.keys()) {
        const hold = adaptive.overrides(key)?.hold;
        if (!hold || hold.until <= now) continue;
        const label = identityOf(key).provider ?? 'other';
        counts.set(label, (counts.get(label) ?? 0) + 1);
      }
      return counts;
    },
    async start() {
      const loaded = await loadState(options.stateDir);
      if (loaded.kind === 'unreadable') log.warn({ dir: options.stateDir, problem: loaded.problem }, 'shaping: saved adaptive state unreadable; starting without it');
      if (loaded.kind === 'loaded') {
        const restored = adaptive.restore(loaded.state, clock.now());
        if (restored > 0) log.info({ effects: restored }, 'shaping: adaptive effects restored from the last run');
      }
      running = true;
      arm();
      housekeeping = clock.at(clock.now() + SWEEP_EVERY_MS, housekeep);
      periodic = clock.at(clock.now() + SAVE_EVERY_MS, savePeriodically);
    },
    async stop() {
      running = false;
      wake?.cancel();
      saveTimer?.cancel();
      housekeeping?.cancel();
      periodic?.cancel();
      dirty = true;
      await save();
    },
  };
}
