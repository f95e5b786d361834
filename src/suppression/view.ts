import type { SuppressionEntry } from '../model/suppression.ts';

/** An entry as the admin API shows it: times as RFC 3339. */
export function suppressionView(e: SuppressionEntry): Record<string, unknown> {
  return { domain: e.domain, address: e.address, reason: e.reason, detail: e.detail, since: new Date(e.since).toISOString(), until: new Date(e.until).toISOString() };
}
