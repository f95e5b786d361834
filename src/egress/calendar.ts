/**
 * The operator's days (egress.timezone, an IANA name): warm-up counts and ramps turn over at local
 * midnight. Node's Intl knows every zone and its daylight-saving rules.
 */
export interface Calendar {
  /** YYYY-MM-DD of an instant. */
  date(ms: number): string;
  /** The first instant of the next local day (days of 23 or 25 hours at daylight-saving changes included). */
  nextMidnight(ms: number): number;
}

export function createCalendar(timezone: string): Calendar {
  const intl = new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const parts = (ms: number): Record<string, number> =>
    Object.fromEntries(intl.formatToParts(ms).filter((p) => p.type !== 'literal').map((p) => [p.type, Number(p.value)]));
  const format = (ms: number): string => {
    const p = parts(ms);
    return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`;
  };
  // Asked for every delivery (warm-up, reputation): the day last asked about answers without
  // Intl until its midnight.
  let known = { date: '', from: Infinity, until: -Infinity };
  const date = (ms: number): string => {
    if (ms >= known.from && ms < known.until) return known.date;
    const today = format(ms);
    known = { date: today, from: ms, until: midnightAfter(ms) };
    return today;
  };
  const nextMidnight = (ms: number): number => (ms >= known.from && ms < known.until ? known.until : midnightAfter(ms));
  function midnightAfter(ms: number): number {
    const p = parts(ms);
    const today = format(ms);
    const sinceMidnight = ((p.hour as number) * 3600 + (p.minute as number) * 60 + (p.second as number)) * 1000 + (ms % 1000);
    let at = ms - sinceMidnight + 86_400_000;
    // Across a daylight-saving change the wall clock skips or repeats an hour: step onto midnight.
    for (let i = 0; i < 3 && format(at) === today; i++) at += 3_600_000;
    for (let i = 0; i < 3 && format(at - 3_600_000) !== today; i++) at -= 3_600_000;
    return at;
  }
  return { date, nextMidnight };
}

/** Whole days from one YYYY-MM-DD to another (negative when `to` is earlier). */
export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
}
