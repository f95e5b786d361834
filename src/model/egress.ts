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
  /** A source of `pool` (the default pool when undefined), drawn by weight among those `usable` allows. */
  pick(pool: string | undefined, usable?: (source: string) => boolean): EgressSource | undefined;
}

/** The source of a Tern with no egress configured: the kernel's choice of address. */
export const DEFAULT_SOURCE_NAME = 'default';
export const DEFAULT_POOL_NAME = 'default';
