import type { EgressConfig } from '../config/index.ts';
import { DEFAULT_POOL_NAME, DEFAULT_SOURCE_NAME, type EgressPlan, type EgressSource } from '../model/egress.ts';
import { DEFAULT_CURVE, SLOW_CURVE, SLOW_PROVIDERS, type WarmupSource } from './warmup.ts';

interface Member { readonly source: EgressSource; readonly weight: number }

/**
 * The egress section as delivery uses it. With no sources configured there is one source,
 * "default" (no bound address, the host name in EHLO), in one pool, "default": Tern as it was.
 * With sources and no pools, every source is in a pool "default" with weight 1.
 */
export function planEgress(egress: Pick<EgressConfig, 'sources' | 'pools' | 'default_pool'>, hostname: string, random: () => number = Math.random): EgressPlan {
  const sources = new Map<string, EgressSource>(
    egress.sources.length === 0
      ? [[DEFAULT_SOURCE_NAME, { name: DEFAULT_SOURCE_NAME, address: undefined, ehlo: hostname }]]
      : egress.sources.map((s) => [s.name, { name: s.name, address: s.address, ehlo: s.ehlo ?? hostname }]),
  );
  const pools = new Map<string, Member[]>(
    egress.pools.length === 0
      ? [[DEFAULT_POOL_NAME, [...sources.values()].map((source) => ({ source, weight: 1 }))]]
      : egress.pools.map((p) => [p.name, p.sources.map((m) => {
        const name = typeof m === 'string' ? m : m.source;
        return { source: sources.get(name) as EgressSource, weight: typeof m === 'string' ? 1 : m.weight };
      })]),
  );
  const defaultPool = egress.default_pool ?? (egress.pools[0]?.name ?? DEFAULT_POOL_NAME);
  return {
    pools: [...pools.keys()],
    defaultPool,
    warming: egress.sources.some((s) => s.warmup !== undefined),
    sources,
    members: (pool) => (pools.get(pool) ?? []).map((m) => m.source.name),
    pick(pool, usable) {
      const members = (pools.get(pool ?? defaultPool) ?? []).filter((m) => !usable || usable(m.source.name));
      return draw(members, random);
    },
  };
}

/** One member, with a chance proportional to its weight. */
function draw(members: readonly Member[], random: () => number): EgressSource | undefined {
  const total = members.reduce((n, m) => n + m.weight, 0);
  let point = random() * total;
  for (const m of members) {
    point -= m.weight;
    if (point < 0) return m.source;
  }
  return members.at(-1)?.source;
}

/** The warming sources of the egress section, their curves filled in with Tern's defaults. */
export function warmupSources(egress: EgressConfig): WarmupSource[] {
  return egress.sources.flatMap((s) => {
    if (!s.warmup) return [];
    const providers = s.warmup.providers ?? Object.fromEntries(SLOW_PROVIDERS.map((p) => [p, SLOW_CURVE]));
    return [{ name: s.name, start: s.warmup.start, schedule: s.warmup.schedule ?? DEFAULT_CURVE, providers: new Map(Object.entries(providers)) }];
  });
}
