/**
 * Fixed-size rings of counters: what a path did over the last minute (per second, for the level
 * an adaptive change starts from) and over the last hour (per minute, for views). Memory is
 * constant per path; an idle path's ring is simply stale and reads as zeros.
 */

/** Events per second over the last `slots` seconds. */
export class RateMeter {
  readonly #counts: Float64Array;
  readonly #stamps: Float64Array;

  constructor(slots = 60) {
    this.#counts = new Float64Array(slots);
    this.#stamps = new Float64Array(slots).fill(-1);
  }

  add(now: number, n = 1): void {
    const second = Math.floor(now / 1000);
    const i = second % this.#counts.length;
    if (this.#stamps[i] !== second) {
      this.#stamps[i] = second;
      this.#counts[i] = 0;
    }
    this.#counts[i] = (this.#counts[i] as number) + n;
  }

  /** The average over the whole window: a path that just started reads low, on purpose (a cautious level). */
  perSecond(now: number): number {
    const second = Math.floor(now / 1000);
    let total = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      const stamp = this.#stamps[i] as number;
      if (stamp > second - this.#counts.length && stamp <= second) total += this.#counts[i] as number;
    }
    return total / this.#counts.length;
  }
}

export const HOUR_FIELDS = ['delivered', 'deferred', 'failed', 'throttled', 'connection_failures'] as const;
export type HourField = (typeof HOUR_FIELDS)[number];
export type HourSummary = Record<HourField, number>;

/** Counts per minute for the last hour; saved with the adaptive state so a restart keeps them. */
export class HourCounts {
  #minutes: { minute: number; counts: HourSummary }[] = [];

  add(now: number, field: HourField, n = 1): void {
    const minute = Math.floor(now / 60_000);
    let last = this.#minutes.at(-1);
    if (!last || last.minute !== minute) {
      last = { minute, counts: { delivered: 0, deferred: 0, failed: 0, throttled: 0, connection_failures: 0 } };
      this.#minutes.push(last);
      this.#prune(minute);
    }
    last.counts[field] += n;
  }

  summary(now: number): HourSummary {
    const minute = Math.floor(now / 60_000);
    const out: HourSummary = { delivered: 0, deferred: 0, failed: 0, throttled: 0, connection_failures: 0 };
    for (const m of this.#minutes) {
      if (m.minute <= minute - 60) continue;
      for (const field of HOUR_FIELDS) out[field] += m.counts[field];
    }
    return out;
  }

  /** True when nothing happened in the last hour. */
  idle(now: number): boolean {
    const last = this.#minutes.at(-1);
    return !last || last.minute <= Math.floor(now / 60_000) - 60;
  }

  toJSON(): [number, ...number[]][] {
    return this.#minutes.map((m) => [m.minute, ...HOUR_FIELDS.map((f) => m.counts[f])]);
  }

  static from(saved: unknown, now: number): HourCounts {
    const counts = new HourCounts();
    if (!Array.isArray(saved)) return counts;
    for (const row of saved) {
      if (!Array.isArray(row) || !row.every((n) => typeof n === 'number')) continue;
      const [minute, ...values] = row as number[];
      counts.#minutes.push({ minute: minute as number, counts: Object.fromEntries(HOUR_FIELDS.map((f, i) => [f, values[i] ?? 0])) as HourSummary });
    }
    counts.#minutes.sort((a, b) => a.minute - b.minute);
    counts.#prune(Math.floor(now / 60_000));
    return counts;
  }

  #prune(minute: number): void {
    while (this.#minutes.length > 0 && (this.#minutes[0] as { minute: number }).minute <= minute - 60) this.#minutes.shift();
  }
}
