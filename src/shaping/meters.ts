/**
 * What a path did over the last hour, per minute, for views; saved with the adaptive state.
 * (The last minute, per second, is lib/rate-meter.ts.)
 */

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
