import type { SiteName } from '../model/ids.ts';
import type { RuleSet, Provider } from './rules.ts';
import type { Layer } from './settings.ts';

/**
 * Which path a domain's mail takes and which static rules apply to it. A path is (source, site);
 * a domain with rules of its own is carved out of its site into (source, site, domain), so its
 * limits do not bind the site's other domains (nor theirs it). The source is "default" — the
 * kernel's choice of address — until egress pools name sources.
 */
export const DEFAULT_SOURCE = 'default';

export interface PathIdentity {
  readonly key: string;
  readonly source: string;
  readonly site: SiteName;
  readonly domain: string | undefined;
  readonly provider: string | undefined;
}

export function pathKey(source: string, site: string, domain?: string): string {
  return domain ? `${source}|${site}|${domain}` : `${source}|${site}`;
}

export function parsePathKey(key: string): { source: string; site: SiteName; domain: string | undefined } | undefined {
  const [source, site, domain, extra] = key.split('|');
  if (!source || !site || extra !== undefined) return undefined;
  return { source, site: site as SiteName, domain: domain || undefined };
}

/** A provider matches a site when every MX host ends with one of its suffixes (as KumoMTA's MXSuffix). */
export function providerOf(providers: readonly Provider[], mxHosts: readonly string[]): Provider | undefined {
  if (mxHosts.length === 0) return undefined;
  return providers.find((p) => mxHosts.every((host) => p.mx.some((suffix) => host === suffix || host.endsWith(`.${suffix}`))));
}

export function identify(rules: RuleSet, source: string, site: SiteName, mxHosts: readonly string[], domain: string): PathIdentity {
  const carved = rules.domains.has(domain) ? domain : undefined;
  return { key: pathKey(source, site, carved), source, site, domain: carved, provider: providerOf(rules.providers, mxHosts)?.name };
}

/** The static layers of a path, most general first: provider, site, domain. */
export function layersOf(rules: RuleSet, id: Pick<PathIdentity, 'site' | 'domain' | 'provider'>): Layer[] {
  const layers: Layer[] = [];
  const provider = id.provider ? rules.providers.find((p) => p.name === id.provider) : undefined;
  if (provider) layers.push({ name: `provider:${provider.name}`, settings: provider.settings });
  const site = rules.sites.get(id.site);
  if (site) layers.push({ name: `site:${id.site}`, settings: site });
  const domain = id.domain ? rules.domains.get(id.domain) : undefined;
  if (domain) layers.push({ name: `domain:${id.domain}`, settings: domain });
  return layers;
}
