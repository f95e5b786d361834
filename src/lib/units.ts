/**
 * Parsers for the human units of the config file: durations ("90s", "20m", "4h", "3d"),
 * sizes ("25MB") and rates ("100/s", "6000/h"). Each returns undefined for bad input so the
 * config layer can report the key path; none throws.
 */
const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000,
};

/** "1h30m" and "90s" alike; returns milliseconds. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === '' || trimmed === '0') return trimmed === '0' ? 0 : undefined;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(part)) {
    total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
    consumed += match[0].length;
  }
  return consumed === trimmed.length && consumed > 0 ? Math.round(total) : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

/** "25MB" (decimal) or "25MiB" (binary); a bare number is bytes. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 'b').toLowerCase();
  const factor = SIZE_UNITS[unit];
  return factor === undefined ? undefined : Math.round(Number(match[1]) * factor);
}

export interface Rate { readonly count: number; readonly perMs: number }

const RATE_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "100/s", "6000/h", "10/5m". */
export function parseRate(text: string): Rate | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*\/\s*(\d*)\s*(s|m|h|d)$/i.exec(text.trim());
  if (!match) return undefined;
  const count = Number(match[1]);
  const multiple = match[2] === '' ? 1 : Number(match[2]);
  const unit = RATE_UNITS[(match[3] as string).toLowerCase()] as number;
  if (count <= 0 || multiple <= 0) return undefined;
  return { count, perMs: multiple * unit };
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
