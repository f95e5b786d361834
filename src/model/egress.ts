/**
 * Egress (docs/egress.md): the addresses Tern sends from. A source is one local address with the
 * name it greets with; a pool is a weighted set of sources that mail picks from by its
 * X-Tern-Meta `pool`. Shared here so the config, ingress and delivery agree without importing
 * each other.
 */
export interface EgressSource {
  readonly name: string;
  /** The local address connections bind to; undefined: the kernel chooses (no egress configured). */
  readonly address: string | undefined;
  /** The name given in EHLO from this address (its PTR should say the same). */
  readonly ehlo: string;
}

export interface EgressPlan {
  /** Every pool's name; mail naming another pool is refused at DATA. */
  readonly pools: readonly string[];
  readonly defaultPool: string;
  readonly sources: ReadonlyMap<string, EgressSource>;
  /** Some source is warming up: delivery asks about caps before it sends (docs/egress.md). */
  readonly warming: boolean;
  /** A source of `pool` (the default pool when undefined), drawn by weight among those `usable` allows. */
  pick(pool: string | undefined, usable?: (source: string) => boolean): EgressSource | undefined;
  /** The names of a pool's sources. */
  members(pool: string): readonly string[];
}

/** The source of a Tern with no egress configured: the kernel's choice of address. */
export const DEFAULT_SOURCE_NAME = 'default';
export const DEFAULT_POOL_NAME = 'default';

/**
 * Warm-up caps as the coordinator tells shards (docs/egress.md): `source|provider` → until,
 * `source|*` when a source has reached its cap for everything. Undefined: the source may send.
 */
export type CappedSources = Readonly<Record<string, number>>;

export function cappedIn(capped: CappedSources, source: string, provider: string, now: number): number | undefined {
  const until = capped[`${source}|*`] ?? capped[`${source}|${provider}`];
  return until !== undefined && until > now ? until : undefined;
}

/**
 * What delivery asks of warm-up (the coordinator's, or a shard's view of it): `take` counts an
 * attempt's recipients against a source's caps before it is sent, or says no; `giveBack` returns
 * them when the attempt reached no receiver.
 */
export interface WarmupPort {
  take(source: string, provider: string, recipients: number): boolean;
  giveBack(source: string, provider: string, recipients: number): void;
  cappedUntil(source: string, provider: string): number | undefined;
}
