/**
 * GET /api/v1/sites: shaping's view of each path joined with delivery's pools and the queue's
 * waiting recipients, grouped by site (a site has one path per source, and one more per domain
 * with rules of its own).
 */
export interface PathFacts {
  readonly path: string;
  readonly site: string;
  readonly provider: string | null;
}

export interface SitesInput<P extends PathFacts> {
  readonly paths: readonly P[];
  readonly pools: ReadonlyMap<string, { readonly connections: number; readonly waiting: number; readonly tls_policies?: Readonly<Record<string, unknown>> }>;
  readonly queued: ReadonlyMap<string, number>;
}

export interface SiteView<P> {
  readonly site: string;
  readonly provider: string | null;
  readonly connections: number;
  readonly queued_recipients: number;
  readonly paths: readonly (P & { readonly connections: number; readonly ready: number; readonly queued_recipients: number; readonly tls_policies: Readonly<Record<string, unknown>> })[];
}

export function sitesView<P extends PathFacts>(input: SitesInput<P>): SiteView<P>[] {
  const sites = new Map<string, SiteView<P>>();
  for (const p of input.paths) {
    const pool = input.pools.get(p.path);
    const ready = pool?.waiting ?? 0;
    // The receivers' TLS policies (MTA-STS, DANE) last applied on the path, by recipient domain.
    const path = { ...p, connections: pool?.connections ?? 0, ready, queued_recipients: (input.queued.get(p.path) ?? 0) + ready, tls_policies: pool?.tls_policies ?? {} };
    const site = sites.get(p.site) ?? { site: p.site, provider: p.provider, connections: 0, queued_recipients: 0, paths: [] };
    sites.set(p.site, {
      ...site,
      connections: site.connections + path.connections,
      queued_recipients: site.queued_recipients + path.queued_recipients,
      paths: [...site.paths, path],
    });
  }
  return [...sites.values()].sort((a, b) => a.site.localeCompare(b.site));
}
