import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { saveSoon } from '../lib/save-soon.ts';
import { createCalendar, daysBetween } from './calendar.ts';

/**
 * IP warm-up (docs/egress.md): a new source sends at most a day's cap, from a schedule that
 * climbs one step for each day of sending, per source and (for the big receivers, which ramp
 * slower) per provider. Days are the operator's (`egress.timezone`). The ramp holds while an
 * operator pauses it or while the source's replies say it is being throttled or blocked. What
 * was sent today and where each ramp stands are kept on disk, so a restart changes nothing.
 */

/** Daily caps for a source's first days (a common ESP ramp); past the last day the source is warm. */
export const DEFAULT_CURVE: readonly number[] = [50, 100, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 25_000, 40_000, 60_000, 90_000, 130_000, 180_000, 250_000, 350_000, 500_000];
/** The big mailbox providers judge new IPs hardest: a slower, longer ramp for the mail to each. */
export const SLOW_CURVE: readonly number[] = [20, 40, 80, 150, 300, 600, 1_000, 2_000, 4_000, 7_000, 12_000, 20_000, 30_000, 45_000, 65_000, 90_000, 125_000, 170_000, 230_000, 300_000];
/** Providers (names in Tern's MX rules) that get SLOW_CURVE unless a source says otherwise. */
export const SLOW_PROVIDERS: readonly string[] = ['gmail', 'outlook', 'office365', 'yahoo', 'apple'];
/** A day whose throttle and block replies exceed this share of what was sent holds the ramp. */
export const DEFAULT_BAD_SHARE = 0.05;
/** Fewer replies than this in a day say nothing either way. */
const MIN_JUDGED = 20;
const SAVE_SOON_MS = 1_000;
const STATE_FILE = 'warmup.json';

export interface WarmupSource {
  readonly name: string;
  /** The first day of the ramp (YYYY-MM-DD in the operator's time zone); none sent before it. */
  readonly start: string;
  /** Daily caps on everything this source sends. */
  readonly schedule: readonly number[];
  /** Daily caps on what it sends to each of these providers. */
  readonly providers: ReadonlyMap<string, readonly number[]>;
}

interface SourceState {
  /** The step of the schedule in force. */
  day: number;
  /** The day these counts are of. */
  date: string;
  paused: boolean;
  /** Why the ramp did not climb at the last day's end (bad replies), if it did not. */
  held: string | undefined;
  sent: number;
  byProvider: Record<string, number>;
  /** Throttle and block replies today. */
  bad: number;
  /** Replies judged today (delivered and refused). */
  judged: number;
  /** In a fleet: the other nodes' counts of the same day (docs/scaling.md). */
  others?: FleetCounts | undefined;
}

/** One day's counts of a source: sent, bad, judged, and `p:<provider>` sent to each provider. */
export type WarmupCounts = Readonly<Record<string, number>>;

interface FleetCounts { readonly date: string; readonly counts: WarmupCounts }

/** Where a source's ramp stands, as an operator's action on one node of a fleet leaves it. */
export interface Ramp { readonly date: string; readonly day: number; readonly paused: boolean }

export interface WarmupView {
  readonly source: string;
  readonly day: number;
  readonly date: string;
  readonly warm: boolean;
  readonly paused: boolean;
  readonly held: string | null;
  readonly cap: number | null;
  readonly sent: number;
  readonly remaining: number | null;
  readonly providers: Readonly<Record<string, { readonly cap: number | null; readonly sent: number; readonly remaining: number | null }>>;
}

export interface WarmupOptions {
  readonly sources: readonly WarmupSource[];
  readonly timezone: string;
  readonly stateDir: string;
  readonly badShare?: number;
}

export interface Warmup {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Count an attempt's recipients from a source to a provider ("other" for none) before it is
   * made; false, counting nothing, when the source has reached its cap. A source not warming
   * always may.
   */
  take(source: string, provider: string, recipients: number): boolean;
  /** An attempt counted by `take` reached no receiver (no connection): its recipients come off. */
  giveBack(source: string, provider: string, recipients: number): void;
  /**
   * A receiver's refusal on a source's connection, for `recipients` (0: a refused connection or
   * session); `bad` when it was a throttle or a block. The refused recipients were counted as sent.
   */
  replied(source: string, bad: boolean, recipients: number): void;
  /** When a capped source may send to a provider again (the next local midnight); undefined: it may now. */
  cappedUntil(source: string, provider: string): number | undefined;
  pause(source: string): boolean;
  resume(source: string): boolean;
  /** Move a ramp `days` steps on (or back, negative). */
  skip(source: string, days: number): boolean;
  views(): WarmupView[];
  /** What is capped now, `source|provider` (`source|*`: everything) → until: what shards are told. */
  capped(): Record<string, number>;
  /** A fleet: this node's counts of today, per warming source. */
  counts(): { readonly source: string; readonly date: string; readonly counts: WarmupCounts }[];
  /** A fleet: the other nodes' counts of a source's day; caps count them from now on. */
  setOthers(source: string, date: string, counts: WarmupCounts): void;
  /** A source's ramp as it stands (undefined: not warming). */
  ramp(source: string): Ramp | undefined;
  /** A fleet: another node's operator moved or paused the ramp; taken if it is of the same day. */
  setRamp(source: string, ramp: Ramp): boolean;
}

export function createWarmup(options: WarmupOptions, deps: { clock: Clock; log: Logger; onChange?: () => void }): Warmup {
  const { clock, log } = deps;
  const bySource = new Map(options.sources.map((s) => [s.name, s]));
  const states = new Map<string, SourceState>();
  const badShare = options.badShare ?? DEFAULT_BAD_SHARE;
  let midnight: Timer | undefined;

  const calendar = createCalendar(options.timezone);
  const today = (): string => calendar.date(clock.now());

  function fresh(source: WarmupSource, date: string): SourceState {
    return { day: Math.max(-1, daysBetween(source.start, date)), date, paused: false, held: undefined, sent: 0, byProvider: {}, bad: 0, judged: 0 };
  }

  /** The state of today: a new day moves the ramp one step per day, unless paused or held by bad replies. */
  function stateOf(name: string): SourceState | undefined {
    const source = bySource.get(name);
    if (!source) return undefined;
    const date = today();
    let state = states.get(name);
    if (!state) {
      state = fresh(source, date);
      states.set(name, state);
    }
    if (state.date < date) roll(source, state, date);
    return state;
  }

  function roll(source: WarmupSource, state: SourceState, date: string): void {
    const days = daysBetween(state.date, date);
    const bad = state.bad + other(state, 'bad');
    const judged = state.judged + other(state, 'judged');
    const share = judged >= MIN_JUDGED ? bad / judged : 0;
    const wasStarted = state.day >= 0;
    if (!wasStarted) state.day = Math.max(-1, daysBetween(source.start, date));
    else if (state.paused) state.held = undefined;
    else if (share > badShare) {
      state.held = `${Math.round(share * 100)}% of the replies on ${state.date} were throttles or blocks (over ${Math.round(badShare * 100)}%)`;
      log.warn({ source: source.name, day: state.day, bad, judged }, `warm-up: ${source.name} holds at day ${state.day}: ${state.held}`);
    } else {
      state.held = undefined;
      state.day += days;
    }
    Object.assign(state, { date, sent: 0, byProvider: {}, bad: 0, judged: 0, others: undefined });
    scheduleSave();
  }

  function capOf(curve: readonly number[], day: number): number | undefined {
    if (day < 0) return 0;
    return day < curve.length ? (curve[day] as number) : undefined;
  }

  const saver = saveSoon(clock, SAVE_SOON_MS, async () => {
    const data = { version: 1, sources: Object.fromEntries(states) };
    await replaceFile(options.stateDir, STATE_FILE, `${JSON.stringify(data)}\n`).catch((err: unknown) => log.error({ err }, 'warm-up: cannot save progress; it is kept in memory and saved at the next change'));
  });
  const scheduleSave = (): void => saver.soon();

  /** At each local midnight every ramp rolls, and shards learn the caps of the new day. */
  function armMidnight(): void {
    midnight = clock.at(calendar.nextMidnight(clock.now()), () => {
      for (const name of bySource.keys()) stateOf(name);
      deps.onChange?.();
      armMidnight();
    });
  }

  function add(state: SourceState, provider: string, recipients: number): void {
    state.sent = Math.max(0, state.sent + recipients);
    state.byProvider[provider] = Math.max(0, (state.byProvider[provider] ?? 0) + recipients);
    state.judged = Math.max(0, state.judged + recipients);
    scheduleSave();
  }

  /** Capped for everything (`provider` "*"), or for one provider. */
  function cappedUntil(name: string, provider: string): number | undefined {
    const source = bySource.get(name);
    const state = stateOf(name);
    if (!source || !state) return undefined;
    const cap = capOf(source.schedule, state.day);
    const curve = provider === '*' ? undefined : source.providers.get(provider);
    const pcap = curve ? capOf(curve, state.day) : undefined;
    const over = (cap !== undefined && state.sent + other(state, 'sent') >= cap) || (pcap !== undefined && (state.byProvider[provider] ?? 0) + other(state, `p:${provider}`) >= pcap);
    return over ? calendar.nextMidnight(clock.now()) : undefined;
  }

  function changed(name: string, what: string, fields: Record<string, unknown> = {}): boolean {
    const state = stateOf(name);
    if (!state) return false;
    log.info({ source: name, day: state.day, ...fields }, `warm-up: ${name} ${what}`);
    scheduleSave();
    deps.onChange?.();
    return true;
  }

  function view(source: WarmupSource, state: SourceState): WarmupView {
    const cap = capOf(source.schedule, state.day);
    const providers = Object.fromEntries([...source.providers].map(([p, curve]) => {
      const pcap = capOf(curve, state.day);
      const psent = (state.byProvider[p] ?? 0) + other(state, `p:${p}`);
      return [p, { cap: pcap ?? null, sent: psent, remaining: pcap === undefined ? null : Math.max(0, pcap - psent) }];
    }));
    const warm = cap === undefined && [...source.providers.values()].every((c) => capOf(c, state.day) === undefined);
    const sent = state.sent + other(state, 'sent');
    return { source: source.name, day: state.day, date: state.date, warm, paused: state.paused, held: state.held ?? null, cap: cap ?? null, sent, remaining: cap === undefined ? null : Math.max(0, cap - sent), providers };
  }

  return {
    async start() {
      const text = await readFile(`${options.stateDir}/${STATE_FILE}`, 'utf8').catch(() => undefined);
      if (text) {
        try {
          const data = JSON.parse(text) as { sources?: Record<string, SourceState> };
          for (const [name, state] of Object.entries(data.sources ?? {})) if (bySource.has(name)) states.set(name, state);
        } catch (err) {
          log.error({ err }, 'warm-up: the saved progress is unreadable; ramps start again from their start dates');
        }
      }
      for (const name of bySource.keys()) stateOf(name);
      armMidnight();
    },
    async stop() {
      midnight?.cancel();
      if (bySource.size > 0) await saver.now();
    },
    take(name, provider, recipients) {
      const state = stateOf(name);
      if (!state) return true;
      if (cappedUntil(name, provider) !== undefined) return false;
      add(state, provider, recipients);
      if (cappedUntil(name, provider) !== undefined) {
        log.info({ source: name, provider, day: state.day, sent: state.sent }, `warm-up: ${name} reached today's cap${bySource.get(name)?.providers.has(provider) ? ` for ${provider}` : ''}`);
        deps.onChange?.();
      }
      return true;
    },
    giveBack(name, provider, recipients) {
      const state = stateOf(name);
      if (!state) return;
      const capped = cappedUntil(name, provider) !== undefined;
      add(state, provider, -recipients);
      if (capped && cappedUntil(name, provider) === undefined) deps.onChange?.();
    },
    replied(name, bad, recipients) {
      const state = stateOf(name);
      if (!state) return;
      if (recipients === 0) state.judged += 1;
      if (bad) state.bad += Math.max(1, recipients);
    },
    cappedUntil,
    pause: (name) => {
      const state = stateOf(name);
      if (state) state.paused = true;
      return changed(name, 'ramp paused by an operator');
    },
    resume: (name) => {
      const state = stateOf(name);
      if (state) state.paused = false;
      return changed(name, 'ramp resumed by an operator');
    },
    skip: (name, days) => {
      const state = stateOf(name);
      if (state) state.day = Math.max(0, state.day + days);
      return changed(name, `ramp moved ${days} days by an operator`, { days });
    },
    views() {
      return [...bySource.values()].map((s) => view(s, stateOf(s.name) as SourceState));
    },
    capped,
    counts() {
      return [...bySource.keys()].map((name) => {
        const state = stateOf(name) as SourceState;
        const byProvider = Object.fromEntries(Object.entries(state.byProvider).map(([p, n]) => [`p:${p}`, n]));
        return { source: name, date: state.date, counts: { sent: state.sent, bad: state.bad, judged: state.judged, ...byProvider } };
      });
    },
    setOthers(name, date, counts) {
      const state = stateOf(name);
      if (!state || state.date !== date) return;
      const before = JSON.stringify(capped());
      state.others = { date, counts };
      if (JSON.stringify(capped()) !== before) deps.onChange?.();
    },
    ramp(name) {
      const state = stateOf(name);
      return state ? { date: state.date, day: state.day, paused: state.paused } : undefined;
    },
    setRamp(name, ramp) {
      const state = stateOf(name);
      if (!state || state.date !== ramp.date || (state.day === ramp.day && state.paused === ramp.paused)) return false;
      state.day = ramp.day;
      state.paused = ramp.paused;
      return changed(name, `ramp set by another node (day ${ramp.day}${ramp.paused ? ', paused' : ''})`);
    },
  };

  function capped(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const source of bySource.values()) {
      for (const provider of ['*', ...source.providers.keys()]) {
        const until = cappedUntil(source.name, provider);
        if (until !== undefined) out[`${source.name}|${provider}`] = until;
      }
    }
    return out;
  }
}

/** The other nodes' count of a state's day (0 alone, or before they were heard). */
function other(state: SourceState, name: string): number {
  return state.others?.date === state.date ? (state.others.counts[name] ?? 0) : 0;
}
