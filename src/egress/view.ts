import type { EgressConfig } from '../config/index.ts';
import type { WarmupView } from './warmup.ts';

/** GET /api/v1/egress: sources with their warm-up (null when warm from the start), and pools with weights. */
export function egressView(egress: EgressConfig, hostname: string, warmups: readonly WarmupView[]): unknown {
  const warming = new Map(warmups.map((w) => [w.source, w]));
  return {
    timezone: egress.timezone,
    default_pool: egress.default_pool ?? egress.pools[0]?.name ?? 'default',
    sources: egress.sources.map((s) => ({ name: s.name, address: s.address, ehlo: s.ehlo ?? hostname, warmup: warming.get(s.name) ?? null })),
    pools: egress.pools.map((p) => ({ name: p.name, sources: p.sources.map((m) => (typeof m === 'string' ? { source: m, weight: 1 } : m)) })),
  };
}
