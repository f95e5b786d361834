import type { PathHold, PathLevels, PathObservation, PathSettings } from '../model/path.ts';
import { enhancedCodeMatches, formatReply, replyCodeMatches, type SmtpReply } from '../model/reply.ts';
import { RateMeter } from '../lib/rate-meter.ts';
import { HourCounts, type HourSummary } from './meters.ts';
import type { AdaptiveRule } from './rules.ts';
import { LIMIT_KEYS, RATE_KEYS, limitValue, type LimitKey } from './settings.ts';

/**
 * Adaptive delivery: what receivers said, per path, and what Tern does about it. Every enabled
 * rule that matches an observation counts it; a rule whose trigger is met fires its action for
 * the rule's duration:
 * - lower: each named limit drops to an absolute value, or a percentage below the level in use
 *   (connections open, messages sent on the connection, messages accepted over the last minute),
 *   never above where it was and never under one (rates: one a minute);
 * - pause / fail: the path takes no mail; it waits in the queue, or fails.
 * A repeated trigger extends the effect. Within the settle time of a change it does nothing else
 * (those replies answer what was sent before it); after that it lowers again from the levels then
 * in use, so a receiver that still complains is followed down, but one burst never compounds.
 * A lowered rate that keeps being refused with nothing accepted is probed (one message every five
 * seconds) until something gets through: the receiver's window is still full from before. Every
 * `recover.every` with successes and no trigger, lowered limits rise by `recover.step`, the step
 * doubling each time (additive increase that speeds up while the receiver stays content); a limit
 * back at its static value is dropped, and so is the effect once nothing is left, or at expiry.
 * Pure apart from the clock values it is given: no timers, no I/O (shaper.ts drives it).
 */

const FLOOR_COUNT = 1;
const FLOOR_RATE = 1 / 60;
/** Replies this soon after a change were already in flight when it was made. */
const SETTLE_MS = 10_000;
/**
 * Rates are measured over a minute (RateMeter's window), and receivers count over one: a minute
 * after a rate was lowered, complaints may still answer the traffic from before it.
 */
const RATE_SETTLE_MS = 60_000;
/** A lowered limit that was unlimited is lifted once recovery passes this multiple of the level it was cut from. */
const UNLIMITED_CEILING = 2;
/**
 * A rate just lowered whose receiver has refused this many times since, and accepted nothing, is
 * still full (a window of a minute or an hour, filled before the change): until one message gets
 * through, send one every five seconds instead of knocking at the lowered rate.
 */
const PROBE_AFTER = 3;
const PROBE_RATE = 0.2;
/** Limits the limiter can tell were reached (a grant refused); the others rise on any success. */
const PRESSABLE: ReadonlySet<LimitKey> = new Set(['max_connections', 'max_message_rate', 'max_connection_rate']);

export interface PathContext {
  readonly key: string;
  readonly provider: string | undefined;
  /** Settings from the static rules, before any adaptive effect (asked only when a rule fires). */
  readonly base: () => PathSettings;
  /**
   * In a fleet, the path's use by every node per this node's own (its connections and rates are
   * the fleet's, shared in Redis): relative cuts are taken from the fleet's level. 1 alone.
   */
  readonly scale?: () => number;
}

/** adopted: an effect another node of a fleet made, taken here (docs/scaling.md). */
export type ChangeKind = 'lower' | 'relower' | 'extend' | 'pause' | 'fail' | 'raise' | 'recovered' | 'expired' | 'adopted';

/** Changes that tighten a path: what a fleet's nodes tell each other. */
export const TIGHTENING: ReadonlySet<ChangeKind> = new Set(['lower', 'relower', 'extend', 'pause', 'fail']);

/** An effect as another node of a fleet takes it: what it does and until when. */
export interface SharedEffect {
  readonly rule: string;
  readonly kind: 'lower' | 'pause' | 'fail';
  readonly values: Readonly<Record<string, number>>;
  readonly until: number;
  readonly reply: SmtpReply;
}

/** One change to a path, as logged and counted. */
export interface Change {
  readonly path: string;
  readonly rule: string;
  readonly change: ChangeKind;
  readonly action: 'lower' | 'pause' | 'fail';
  readonly limits?: Readonly<Record<string, number>>;
  readonly until?: number;
  readonly reply?: string;
}

interface Effect {
  readonly rule: string;
  readonly kind: 'lower' | 'pause' | 'fail';
  readonly values: Map<LimitKey, number>;
  readonly ceilings: Map<LimitKey, number>;
  readonly reply: SmtpReply;
  readonly recover: { readonly every: number; readonly step: number };
  /** Lowered limits that held something back since the last recovery tick: only those may rise. */
  readonly pressed: Set<LimitKey>;
  /** Since the last lowering: the rule's matches, and whether anything was accepted. */
  refusedSince: number;
  acceptedSince: boolean;
  since: number;
  expiresAt: number;
  settleUntil: number;
  nextRecoverAt: number;
  step: number;
  succeeded: boolean;
}

interface PathState {
  readonly effects: Map<string, Effect>;
  readonly matches: Map<string, number[]>;
  readonly accepted: RateMeter;
  readonly opened: RateMeter;
  hour: HourCounts;
  /** Bumped on every change of effects, so cached settings know they are stale. */
  version: number;
}

/** What an effect does now, for views: values per limit, time left. */
export interface EffectView {
  readonly rule: string;
  readonly action: 'lower' | 'pause' | 'fail';
  readonly limits: Readonly<Record<string, number>>;
  readonly since: number;
  readonly until: number;
  readonly reply: string;
}

export interface Overrides {
  readonly values: ReadonlyMap<LimitKey, { readonly value: number; readonly rule: string }>;
  readonly hold: PathHold | undefined;
}

export class AdaptiveState {
  #rules: readonly AdaptiveRule[];
  readonly #classify: (reply: SmtpReply) => { readonly reason: string };
  readonly #paths = new Map<string, PathState>();

  constructor(rules: readonly AdaptiveRule[], classify: (reply: SmtpReply) => { readonly reason: string }) {
    this.#rules = rules;
    this.#classify = classify;
  }

  setRules(rules: readonly AdaptiveRule[]): void {
    this.#rules = rules;
  }

  version(key: string): number {
    return this.#paths.get(key)?.version ?? 0;
  }

  /** A connection was granted on the path (its connection rate level). */
  opened(key: string, now: number): void {
    this.#state(key).opened.add(now);
  }

  /**
   * A limit held delivery back (a grant refused or cut short). A lowered limit rises only after
   * it did: a limit nobody reached proves nothing about the receiver.
   */
  pressed(key: string, limit: LimitKey): void {
    for (const e of this.#paths.get(key)?.effects.values() ?? []) if (e.values.has(limit)) e.pressed.add(limit);
  }

  /** A transaction in which the receiver accepted `recipients`: the path's success. */
  delivered(key: string, recipients: number, now: number): void {
    const state = this.#state(key);
    state.accepted.add(now);
    state.hour.add(now, 'delivered', recipients);
    for (const effect of state.effects.values()) {
      if (probing(effect)) state.version++;
      effect.succeeded = true;
      effect.acceptedSince = true;
    }
  }

  observe(ctx: PathContext, obs: PathObservation, levels: PathLevels, now: number): Change[] {
    if (obs.kind === 'delivered') {
      this.delivered(ctx.key, obs.recipients, now);
      return [];
    }
    const state = this.#state(ctx.key);
    if (obs.kind === 'reply') {
      // Tern's own replies say nothing about the receiver (and a local reply must never feed a rule).
      if (obs.reply.origin !== 'remote') return [];
      // A reply before any transaction (greeting, EHLO) refused a connection, not recipients.
      if (obs.recipients === 0) state.hour.add(now, 'connection_failures');
      else state.hour.add(now, obs.reply.code >= 500 ? 'failed' : 'deferred', obs.recipients);
    } else {
      state.hour.add(now, 'connection_failures');
    }
    const changes: Change[] = [];
    let throttled = false;
    for (const rule of this.#rules) {
      if (!this.#matches(rule, ctx.provider, obs)) continue;
      throttled = true;
      if (this.#counted(state, rule, now)) changes.push(this.#fire(ctx, state, rule, obs, levels, now));
    }
    if (throttled) state.hour.add(now, 'throttled', obs.kind === 'reply' ? Math.max(1, obs.recipients) : 1);
    return changes;
  }

  /** Expiry and recovery, due by `now`. */
  tick(now: number): Change[] {
    const changes: Change[] = [];
    for (const [key, state] of this.#paths) {
      for (const effect of [...state.effects.values()]) {
        const change = now >= effect.expiresAt ? this.#expire(key, state, effect) : effect.kind === 'lower' && now >= effect.nextRecoverAt ? this.#recover(key, state, effect, now) : undefined;
        if (change) changes.push(change);
      }
    }
    return changes;
  }

  /** When tick next has something to do. */
  nextWake(): number | undefined {
    let next = Infinity;
    for (const state of this.#paths.values()) {
      for (const e of state.effects.values()) next = Math.min(next, e.expiresAt, e.kind === 'lower' ? e.nextRecoverAt : Infinity);
    }
    return Number.isFinite(next) ? next : undefined;
  }

  /** The lowest value each effect sets per limit, and a pause or failure if one is on. */
  overrides(key: string): Overrides | undefined {
    const state = this.#paths.get(key);
    if (!state || state.effects.size === 0) return undefined;
    const values = new Map<LimitKey, { value: number; rule: string }>();
    let hold: PathHold | undefined;
    for (const e of state.effects.values()) {
      for (const [k, lowered] of e.values) {
        const v = k === 'max_message_rate' && probing(e) ? Math.min(lowered, PROBE_RATE) : lowered;
        const prior = values.get(k);
        if (!prior || v < prior.value) values.set(k, { value: v, rule: e.rule });
      }
      if (e.kind !== 'lower' && (!hold || (e.kind === 'fail' && hold.kind === 'pause'))) hold = { kind: e.kind, until: e.expiresAt, rule: e.rule, reply: e.reply };
    }
    return { values, hold };
  }

  /** An effect in force, as a fleet's other nodes take it. */
  shared(key: string, rule: string): SharedEffect | undefined {
    const e = this.#paths.get(key)?.effects.get(rule);
    return e ? { rule: e.rule, kind: e.kind, values: Object.fromEntries(e.values), until: e.expiresAt, reply: e.reply } : undefined;
  }

  /**
   * An effect another node made on the same path, taken as if it fired here: each lowered limit
   * at the lower of the two, the later end. It then recovers here on this node's own successes.
   * A rule this node does not have (the nodes' rules differ) is not taken. Undefined: nothing changed.
   */
  adopt(key: string, shared: SharedEffect, base: () => PathSettings, now: number): Change | undefined {
    const rule = this.#rules.find((r) => r.id === shared.rule && r.action.kind === shared.kind);
    if (!rule || shared.until <= now) return undefined;
    const state = this.#state(key);
    const effect = state.effects.get(rule.id) ?? this.#newEffect(rule, shared.reply, now, shared.until);
    let changed = !state.effects.has(rule.id) || shared.until > effect.expiresAt;
    effect.expiresAt = Math.max(effect.expiresAt, shared.until);
    let lowered = false;
    for (const [k, v] of Object.entries(shared.values)) {
      if (!(LIMIT_KEYS as readonly string[]).includes(k) || !(v > 0)) continue;
      const limit = k as LimitKey;
      if (v >= (effect.values.get(limit) ?? Infinity)) continue;
      effect.values.set(limit, v);
      if (!effect.ceilings.has(limit)) {
        const ceiling = limitValue(base(), limit);
        effect.ceilings.set(limit, Number.isFinite(ceiling) ? ceiling : v * UNLIMITED_CEILING);
      }
      lowered = true;
    }
    if (lowered) {
      // As after a lowering made here: the replies in flight answer what was sent before it.
      effect.settleUntil = now + ([...effect.values.keys()].some((k) => RATE_KEYS.has(k)) ? RATE_SETTLE_MS : Math.min(SETTLE_MS, effect.recover.every));
      effect.nextRecoverAt = now + effect.recover.every;
      effect.succeeded = false;
      changed = true;
    }
    if (!changed) return undefined;
    state.effects.set(rule.id, effect);
    state.version++;
    return { path: key, rule: rule.id, action: rule.action.kind, change: 'adopted', ...(effect.kind === 'lower' ? { limits: Object.fromEntries(effect.values) } : {}), until: effect.expiresAt, reply: formatReply(effect.reply) };
  }

  effects(key: string): EffectView[] {
    return [...(this.#paths.get(key)?.effects.values() ?? [])].map((e) => ({
      rule: e.rule, action: e.kind, limits: Object.fromEntries(e.values), since: e.since, until: e.expiresAt, reply: formatReply(e.reply),
    }));
  }

  hour(key: string, now: number): HourSummary {
    return (this.#paths.get(key)?.hour ?? new HourCounts()).summary(now);
  }

  /** Paths with state worth showing or keeping. */
  keys(): string[] {
    return [...this.#paths.keys()];
  }

  /** Drop paths with no effect, no pending trigger and nothing in the last hour. */
  sweep(now: number): void {
    for (const [key, state] of this.#paths) {
      for (const [rule, times] of state.matches) if (times.every((t) => t < now - 86_400_000)) state.matches.delete(rule);
      if (state.effects.size === 0 && state.matches.size === 0 && state.hour.idle(now)) this.#paths.delete(key);
    }
  }

  serialize(): SavedState {
    const paths: SavedState['paths'] = {};
    for (const [key, s] of this.#paths) {
      paths[key] = {
        effects: [...s.effects.values()].map((e) => ({
          rule: e.rule, kind: e.kind, values: Object.fromEntries(e.values), ceilings: Object.fromEntries(e.ceilings), reply: e.reply, recover: e.recover,
          since: e.since, expiresAt: e.expiresAt, settleUntil: e.settleUntil, nextRecoverAt: e.nextRecoverAt, step: e.step,
        })),
        matches: Object.fromEntries(s.matches),
        hour: s.hour.toJSON(),
      };
    }
    return { version: 1, paths };
  }

  /** State saved by an earlier run; expired effects are dropped, malformed entries skipped. */
  restore(saved: SavedState, now: number): number {
    let restored = 0;
    for (const [key, p] of Object.entries(saved.paths ?? {})) {
      const state = this.#state(key);
      for (const e of Array.isArray(p.effects) ? p.effects : []) {
        const effect = effectFrom(e, now);
        if (!effect) continue;
        state.effects.set(effect.rule, effect);
        restored++;
      }
      for (const [rule, times] of Object.entries(p.matches ?? {})) if (Array.isArray(times)) state.matches.set(rule, times.filter((t) => typeof t === 'number'));
      state.hour = HourCounts.from(p.hour, now);
      state.version++;
    }
    return restored;
  }

  #state(key: string): PathState {
    let state = this.#paths.get(key);
    if (!state) {
      state = { effects: new Map(), matches: new Map(), accepted: new RateMeter(), opened: new RateMeter(), hour: new HourCounts(), version: 0 };
      this.#paths.set(key, state);
    }
    return state;
  }

  #matches(rule: AdaptiveRule, provider: string | undefined, obs: PathObservation): boolean {
    if (rule.providers && (!provider || !rule.providers.includes(provider))) return false;
    if (obs.kind === 'event') return rule.events?.includes(obs.event) ?? false;
    if (obs.kind !== 'reply' || rule.events) return false;
    const r = obs.reply;
    if (rule.codes && !rule.codes.some((c) => replyCodeMatches(c, r.code))) return false;
    if (rule.enhanced && !rule.enhanced.some((e) => enhancedCodeMatches(e, r.enhanced))) return false;
    if (rule.match && !rule.match.test(formatReply(r).replace(/\s+/g, ' '))) return false;
    return !rule.reasons || rule.reasons.includes(this.#classify(r).reason);
  }

  /** Count a match in the rule's window; true when the trigger is met (the window starts over). */
  #counted(state: PathState, rule: AdaptiveRule, now: number): boolean {
    if (rule.trigger.count <= 1) return true;
    const times = (state.matches.get(rule.id) ?? []).filter((t) => t > now - rule.trigger.within);
    times.push(now);
    if (times.length >= rule.trigger.count) {
      state.matches.delete(rule.id);
      return true;
    }
    state.matches.set(rule.id, times);
    return false;
  }

  #fire(ctx: PathContext, state: PathState, rule: AdaptiveRule, obs: PathObservation, levels: PathLevels, now: number): Change {
    const existing = state.effects.get(rule.id);
    const until = now + rule.duration;
    const reply = replyOf(obs);
    const base = { path: ctx.key, rule: rule.id, action: rule.action.kind, reply: formatReply(reply) };
    if (existing && (existing.kind !== 'lower' || now < existing.settleUntil)) {
      existing.expiresAt = Math.max(existing.expiresAt, until);
      existing.refusedSince++;
      if (probing(existing) && existing.refusedSince === PROBE_AFTER) state.version++;
      return { ...base, change: 'extend', until: existing.expiresAt };
    }
    state.version++;
    const effect = existing ?? this.#newEffect(rule, reply, now, until);
    effect.expiresAt = Math.max(effect.expiresAt, until);
    if (rule.action.kind !== 'lower') {
      state.effects.set(rule.id, effect);
      return { ...base, change: rule.action.kind, until: effect.expiresAt };
    }
    const stat = ctx.base();
    const scale = Math.max(1, ctx.scale?.() ?? 1);
    const current = this.#effective(stat, state);
    for (const [key, change] of rule.action.changes) {
      const now_ = current(key);
      const level = Math.min(now_, this.#level(key, state, levels, now_, now) * (key === 'max_messages_per_connection' || key === 'max_recipients_per_message' ? 1 : scale));
      const target = change.kind === 'absolute' ? change.value : level * (1 - change.cut);
      const value = RATE_KEYS.has(key) ? Math.max(FLOOR_RATE, Math.min(target, now_)) : Math.max(FLOOR_COUNT, Math.floor(Math.min(target, now_)));
      effect.values.set(key, value);
      if (!effect.ceilings.has(key)) {
        const ceiling = limitValue(stat, key);
        effect.ceilings.set(key, Number.isFinite(ceiling) ? ceiling : Math.max(level, value) * UNLIMITED_CEILING);
      }
    }
    const settle = [...rule.action.changes.keys()].some((k) => RATE_KEYS.has(k)) ? RATE_SETTLE_MS : Math.min(SETTLE_MS, effect.recover.every);
    effect.settleUntil = now + settle;
    effect.nextRecoverAt = now + effect.recover.every;
    effect.step = effect.recover.step;
    effect.succeeded = false;
    effect.refusedSince = 0;
    effect.acceptedSince = false;
    state.effects.set(rule.id, effect);
    return { ...base, change: existing ? 'relower' : 'lower', limits: Object.fromEntries(effect.values), until: effect.expiresAt };
  }

  #newEffect(rule: AdaptiveRule, reply: SmtpReply, now: number, until: number): Effect {
    return {
      rule: rule.id, kind: rule.action.kind, values: new Map(), ceilings: new Map(), reply, recover: rule.recover, pressed: new Set(),
      refusedSince: 0, acceptedSince: false, since: now, expiresAt: until, settleUntil: now, nextRecoverAt: now + rule.recover.every, step: rule.recover.step, succeeded: false,
    };
  }

  /** A limit as it stands with every effect applied. */
  #effective(base: PathSettings, state: PathState): (key: LimitKey) => number {
    return (key) => {
      let value = limitValue(base, key);
      for (const e of state.effects.values()) value = Math.min(value, e.values.get(key) ?? Infinity);
      return value;
    };
  }

  /** The level a relative change is taken from: what the path was actually using. */
  #level(key: LimitKey, state: PathState, levels: PathLevels, current: number, now: number): number {
    switch (key) {
      case 'max_connections':
        return levels.connections;
      case 'max_messages_per_connection':
        return levels.sentOnConnection > 0 ? levels.sentOnConnection : current;
      case 'max_message_rate':
        return state.accepted.perSecond(now);
      case 'max_connection_rate':
        return state.opened.perSecond(now);
      case 'max_recipients_per_message':
        return current;
    }
  }

  #expire(key: string, state: PathState, effect: Effect): Change {
    state.effects.delete(effect.rule);
    state.version++;
    return { path: key, rule: effect.rule, action: effect.kind, change: 'expired' };
  }

  #recover(key: string, state: PathState, effect: Effect, now: number): Change | undefined {
    effect.nextRecoverAt = now + effect.recover.every;
    if (!effect.succeeded) return undefined;
    effect.succeeded = false;
    const rising = [...effect.values.keys()].filter((k) => !PRESSABLE.has(k) || effect.pressed.has(k));
    effect.pressed.clear();
    if (rising.length === 0) return undefined;
    for (const k of rising) {
      const v = effect.values.get(k) as number;
      const raised = RATE_KEYS.has(k) ? v * (1 + effect.step) : Math.max(v + 1, Math.floor(v * (1 + effect.step)));
      if (raised >= (effect.ceilings.get(k) ?? Infinity)) effect.values.delete(k);
      else effect.values.set(k, raised);
    }
    effect.step = Math.min(1, effect.step * 2);
    state.version++;
    if (effect.values.size > 0) return { path: key, rule: effect.rule, action: 'lower', change: 'raise', limits: Object.fromEntries(effect.values), until: effect.expiresAt };
    state.effects.delete(effect.rule);
    return { path: key, rule: effect.rule, action: 'lower', change: 'recovered' };
  }
}

/** A lowered rate the receiver keeps refusing, with nothing accepted since: probe it, do not knock at it. */
function probing(e: Effect): boolean {
  return e.kind === 'lower' && e.values.has('max_message_rate') && !e.acceptedSince && e.refusedSince >= PROBE_AFTER;
}

/** What a held or failed message records: the receiver's reply, or the connection failure in words. */
function replyOf(obs: PathObservation): SmtpReply {
  if (obs.kind === 'reply') return obs.reply;
  const text = obs.kind === 'event' ? `${obs.event}: ${obs.detail}` : 'delivered';
  return { code: 451, enhanced: '4.4.2', text, origin: 'local' };
}

export interface SavedState {
  readonly version: 1;
  readonly paths: Record<string, { effects: unknown[]; matches: Record<string, number[]>; hour: unknown }>;
}

function effectFrom(raw: unknown, now: number): Effect | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const e = raw as Partial<Record<string, unknown>>;
  const numbers = ['since', 'expiresAt', 'settleUntil', 'nextRecoverAt', 'step'] as const;
  if (typeof e.rule !== 'string' || !['lower', 'pause', 'fail'].includes(e.kind as string) || numbers.some((n) => typeof e[n] !== 'number')) return undefined;
  if ((e.expiresAt as number) <= now) return undefined;
  const recover = e.recover as { every?: unknown; step?: unknown } | undefined;
  const reply = e.reply as SmtpReply | undefined;
  if (typeof recover?.every !== 'number' || typeof recover.step !== 'number' || typeof reply?.code !== 'number' || typeof reply.text !== 'string') return undefined;
  const limits = (o: unknown): Map<LimitKey, number> =>
    new Map(Object.entries((o ?? {}) as Record<string, unknown>).filter((kv): kv is [LimitKey, number] => (LIMIT_KEYS as readonly string[]).includes(kv[0]) && typeof kv[1] === 'number' && kv[1] > 0));
  return {
    rule: e.rule, kind: e.kind as Effect['kind'], values: limits(e.values), ceilings: limits(e.ceilings), reply, recover: { every: recover.every, step: recover.step }, pressed: new Set(),
    refusedSince: 0, acceptedSince: true,
    since: e.since as number, expiresAt: e.expiresAt as number, settleUntil: e.settleUntil as number, nextRecoverAt: Math.max(e.nextRecoverAt as number, now), step: e.step as number, succeeded: false,
  };
}
