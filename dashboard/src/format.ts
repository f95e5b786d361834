/** How numbers read on the dashboard: plain counts, rates and ages a person takes in at a glance. */

export function count(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)} M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)} k`;
  return String(Math.round(n));
}

/** An age in seconds: "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function age(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return '–';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5_400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3_600)} h ${Math.round((seconds % 3_600) / 60)} min`;
  return `${Math.floor(seconds / 86_400)} d ${Math.round((seconds % 86_400) / 3_600)} h`;
}

export interface MinuteRow { minute: number; received: number; delivered: number; deferred: number; failed: number }

export const SERIES = ['received', 'delivered', 'deferred', 'failed'] as const;

/**
 * History rows as uPlot wants them: x in seconds, one array per series, a minute with no row
 * shown as zero (nothing happened), so gaps in traffic read as gaps.
 */
export function chartData<R extends { minute: number }>(rows: readonly R[], nowMs: number, minutes: number, keys: readonly (keyof R & string)[] = SERIES as unknown as (keyof R & string)[]): number[][] {
  const last = Math.floor(nowMs / 60_000) * 60_000;
  const first = last - (minutes - 1) * 60_000;
  const byMinute = new Map(rows.map((r) => [r.minute, r]));
  const xs: number[] = [];
  const ys: number[][] = keys.map(() => []);
  for (let m = first; m <= last; m += 60_000) {
    xs.push(m / 1000);
    const row = byMinute.get(m);
    keys.forEach((k, i) => (ys[i] as number[]).push(row ? Number(row[k]) : 0));
  }
  return [xs, ...ys];
}

/** The history with a new sample's minute merged in (the stream sends the current minute again and again). */
export function mergeMinute(rows: readonly MinuteRow[], row: MinuteRow | undefined, keep: number): MinuteRow[] {
  if (!row) return [...rows];
  const out = rows.filter((r) => r.minute !== row.minute);
  out.push(row);
  out.sort((a, b) => a.minute - b.minute);
  return out.slice(-keep);
}
