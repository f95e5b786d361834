/**
 * What a SIGHUP may change in a running daemon (docs/operations.md, "Signals and shutdown"). The rest of the
 * config shapes what was built at start (listeners, the spool, the outboxes, the shards, the
 * pools' deadlines): a change there is logged as needing a restart and the running value stays.
 */
export const LIVE_KEYS = [
  'log.level',
  'dkim.keys',
  'shaping.rules_file',
  'shaping.default_rules',
  'shaping.defaults',
  'admin.token',
  'admin.readiness',
  'feedback.webhook',
  'feedback.webhooks',
] as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Key paths whose values differ, down to the leaves; a list is one value. */
export function changedKeys(before: unknown, after: unknown, prefix = ''): string[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => changedKeys(before[k], after[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
}

/** Changed keys split into those a reload applies and those that wait for a restart. */
export function sortChanges(keys: readonly string[]): { live: string[]; restart: string[] } {
  const live = (k: string): boolean => LIVE_KEYS.some((l) => k === l || k.startsWith(`${l}.`));
  return { live: keys.filter(live), restart: keys.filter((k) => !live(k)) };
}
