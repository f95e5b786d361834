import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../lib/clock.ts';
import { parseHostPort } from '../lib/net.ts';
import { siteNameOf } from '../model/ids.ts';
import { parseTlsa, type TlsaRecord } from '../model/dane.ts';
import type { MxHost, RouteAnswer } from '../model/route.ts';
import { query, RCODE, TYPE, type DnsResponse, type NameServer } from './transport.ts';

export type MxAnswer =
  | { readonly kind: 'mx'; readonly hosts: readonly { exchange: string; priority: number }[]; readonly implicit: boolean; readonly authenticated: boolean }
  | { readonly kind: 'null-mx' }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'temporary'; readonly detail: string };

export type AddressAnswer =
  | { readonly kind: 'addresses'; readonly addresses: readonly string[]; readonly authenticated?: boolean }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'temporary'; readonly detail: string };

export interface Resolver {
  resolveMx(domain: string): Promise<MxAnswer>;
  resolveAddresses(host: string): Promise<AddressAnswer>;
  route(domain: string): Promise<RouteAnswer>;
  /** TXT records of a name, each record's strings joined (DKIM keys, later SPF/DMARC). */
  resolveTxt(name: string): Promise<TxtAnswer>;
  /** An MX host's TLSA records for SMTP (`_25._tcp.<host>`, RFC 7672), and whether DNSSEC vouches for them. */
  resolveTlsa(host: string): Promise<TlsaAnswer>;
}

export type TlsaAnswer =
  | { readonly kind: 'tlsa'; readonly records: readonly TlsaRecord[]; readonly authenticated: boolean }
  | { readonly kind: 'nxdomain'; readonly authenticated: boolean }
  | { readonly kind: 'temporary'; readonly detail: string };

export type TxtAnswer =
  | { readonly kind: 'txt'; readonly records: readonly string[] }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'temporary'; readonly detail: string };

export interface ResolverOptions {
  readonly servers: readonly string[];
  readonly timeout: number;
  readonly attempts: number;
  readonly negative_ttl: number;
  readonly cache_size: number;
}

interface Answer { readonly kind: 'answer'; readonly rcode: number; readonly response: DnsResponse }
type Lookup = Answer | { readonly kind: 'temporary'; readonly detail: string };
interface Cached { readonly value: Lookup }
type Used = [key: string, entry: Cached][];
interface BuiltRoute { readonly answer: RouteAnswer; readonly from: Used }

// Temporary failures are cached briefly so a dead resolver is not hammered by every queued message.
const TEMPORARY_TTL_MS = 5_000;
const MIN_TTL_MS = 1_000;

/** What one query sent to the servers came to (cache hits are not queries): for metrics. */
export type LookupResult = 'answer' | 'nxdomain' | 'temporary';
const TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(TYPE).map(([name, n]) => [n, name]));

export function createResolver(options: ResolverOptions, clock: Clock, onLookup?: (type: string, result: LookupResult) => void): Resolver {
  const servers = resolveServers(options.servers);
  // ttlResolution 0: read the injected clock every time (lru-cache otherwise memoises "now").
  const cache = new LRUCache<string, Cached>({ max: options.cache_size, ttlResolution: 0, perf: { now: () => clock.now() } });
  const inflight = new Map<string, Promise<Cached>>();
  // Every queued message asks for its domain's route. A built route is kept while each record
  // it was built from is still the one in the cache, so it expires with the first of them.
  const routes = new LRUCache<string, BuiltRoute>({ max: options.cache_size });

  /** `used` collects what was looked up, for a route built from it. */
  async function lookup(name: string, type: number, used?: Used): Promise<Lookup> {
    const key = `${type}:${name}`;
    const entry = cache.get(key) ?? (await askOnce(key, name, type));
    used?.push([key, entry]);
    return entry.value;
  }

  /** One query for concurrent askers of one name; its answer cached for its TTL. */
  function askOnce(key: string, name: string, type: number): Promise<Cached> {
    const pending = inflight.get(key);
    if (pending) return pending;
    const promise = askServers(name, type)
      .then((value) => {
        onLookup?.(TYPE_NAMES[type] ?? String(type), value.kind === 'temporary' ? 'temporary' : value.rcode === RCODE.NXDOMAIN ? 'nxdomain' : 'answer');
        const entry = { value };
        cache.set(key, entry, { ttl: ttlOf(value) });
        return entry;
      })
      .finally(() => inflight.delete(key));
    inflight.set(key, promise);
    return promise;
  }

  function ttlOf(value: Lookup): number {
    if (value.kind === 'temporary') return TEMPORARY_TTL_MS;
    const { rcode, response } = value;
    if (rcode !== RCODE.NOERROR || response.answers.length === 0) return options.negative_ttl;
    const minTtl = Math.min(...response.answers.map((a) => a.ttl));
    return Math.max(MIN_TTL_MS, minTtl * 1000);
  }

  async function askServers(name: string, type: number): Promise<Lookup> {
    const problems: string[] = [];
    for (let attempt = 0; attempt < options.attempts; attempt++) {
      for (const server of servers) {
        try {
          const response = await query(server, name, type, options.timeout);
          if (response.rcode === RCODE.NOERROR || response.rcode === RCODE.NXDOMAIN) {
            return { kind: 'answer', rcode: response.rcode, response };
          }
          problems.push(`${server.host}:${server.port} rcode ${response.rcode}`);
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
    }
    return { kind: 'temporary', detail: problems.slice(-3).join('; ') };
  }

  async function resolveMx(domain: string, used?: Used): Promise<MxAnswer> {
    const result = await lookup(domain, TYPE.MX, used);
    if (result.kind === 'temporary') return result;
    if (result.rcode === RCODE.NXDOMAIN) return { kind: 'nxdomain' };
    const records = result.response.answers.filter((a) => a.type === TYPE.MX);
    const authenticated = result.response.authenticated;
    if (records.length === 0) return { kind: 'mx', hosts: [{ exchange: domain, priority: 0 }], implicit: true, authenticated };
    // RFC 7505: a single "0 ." record says the domain accepts no mail.
    if (records.length === 1 && normaliseName(records[0]?.exchange ?? '') === '') return { kind: 'null-mx' };
    const hosts = records
      .map((r) => ({ exchange: normaliseName(r.exchange ?? ''), priority: r.priority ?? 0 }))
      .filter((h) => h.exchange !== '');
    return { kind: 'mx', hosts, implicit: false, authenticated };
  }

  async function resolveAddresses(host: string, used?: Used): Promise<AddressAnswer> {
    if (isIP(host)) return { kind: 'addresses', addresses: [host] };
    const [v4, v6] = await Promise.all([lookup(host, TYPE.A, used), lookup(host, TYPE.AAAA, used)]);
    const addresses = [...addressesOf(v4, TYPE.A), ...addressesOf(v6, TYPE.AAAA)];
    // Vouched for when every answer that gave an address was validated.
    const authenticated = [v4, v6].every((r) => r.kind !== 'answer' || r.response.answers.length === 0 || r.response.authenticated);
    if (addresses.length > 0) return { kind: 'addresses', addresses, authenticated };
    if (v4.kind === 'temporary') return v4;
    if (v4.rcode === RCODE.NXDOMAIN) return { kind: 'nxdomain' };
    return { kind: 'addresses', addresses: [] };
  }

  async function route(domain: string): Promise<RouteAnswer> {
    const built = routes.get(domain);
    if (built && built.from.every(([key, entry]) => cache.peek(key) === entry)) return reshuffled(built.answer);
    const used: Used = [];
    const answer = await buildRoute(normaliseName(domain), used);
    routes.set(domain, { answer, from: used });
    return answer;
  }

  async function buildRoute(domain: string, used: Used): Promise<RouteAnswer> {
    const mx = await resolveMx(domain, used);
    if (mx.kind !== 'mx') return mx;
    const answers = await Promise.all(mx.hosts.map(async (h) => ({ host: h, answer: await resolveAddresses(h.exchange, used) })));
    const hosts = orderHosts(
      answers.flatMap(({ host, answer }) =>
        answer.kind === 'addresses' && answer.addresses.length > 0
          ? [{ name: host.exchange, preference: host.priority, addresses: answer.addresses, ...(mx.authenticated && answer.authenticated ? { secure: true } : {}) }]
          : [],
      ),
    );
    if (hosts.length > 0) return { kind: 'route', site: siteNameOf(mx.hosts.map((h) => h.exchange)), hosts, implicit: mx.implicit };
    const temporary = answers.find((a) => a.answer.kind === 'temporary');
    if (temporary && temporary.answer.kind === 'temporary') return { kind: 'temporary', detail: temporary.answer.detail };
    if (mx.implicit) return { kind: 'nxdomain' };
    return { kind: 'no-address', detail: `no address for MX ${mx.hosts.map((h) => h.exchange).join(', ')}` };
  }

  async function resolveTxt(name: string): Promise<TxtAnswer> {
    const result = await lookup(normaliseName(name), TYPE.TXT);
    if (result.kind === 'temporary') return result;
    if (result.rcode === RCODE.NXDOMAIN) return { kind: 'nxdomain' };
    const records = result.response.answers
      .filter((a) => a.type === TYPE.TXT)
      .map((a) => (Array.isArray(a.data) ? a.data.join('') : String(a.data ?? '')));
    return { kind: 'txt', records };
  }

  async function resolveTlsa(host: string): Promise<TlsaAnswer> {
    const result = await lookup(`_25._tcp.${normaliseName(host)}`, TYPE.TLSA);
    if (result.kind === 'temporary') return result;
    const authenticated = result.response.authenticated;
    if (result.rcode === RCODE.NXDOMAIN) return { kind: 'nxdomain', authenticated };
    const records = result.response.answers.flatMap((a) => (a.type === TYPE.TLSA && Buffer.isBuffer(a.data) ? [parseTlsa(a.data)].filter((r): r is TlsaRecord => r !== undefined) : []));
    return { kind: 'tlsa', records, authenticated };
  }

  return { resolveMx: (domain) => resolveMx(domain), resolveAddresses: (host) => resolveAddresses(host), route, resolveTxt, resolveTlsa };
}

/** Hosts of equal preference are shuffled again on every use, as when the route was built. */
function reshuffled(answer: RouteAnswer): RouteAnswer {
  return answer.kind === 'route' && answer.hosts.length > 1 ? { ...answer, hosts: orderHosts(answer.hosts) } : answer;
}

function addressesOf(result: Lookup, type: number): string[] {
  if (result.kind !== 'answer') return [];
  return result.response.answers.flatMap((a) => (a.type === type && a.address ? [a.address] : []));
}

function normaliseName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** Preference order; hosts of equal preference are shuffled so load spreads across them. */
export function orderHosts(hosts: readonly MxHost[], random: () => number = Math.random): MxHost[] {
  const keyed = hosts.map((h) => ({ h, k: random() }));
  keyed.sort((a, b) => a.h.preference - b.h.preference || a.k - b.k);
  return keyed.map((x) => x.h);
}

/** dns.servers entries, or the system's resolvers from /etc/resolv.conf. */
export function resolveServers(configured: readonly string[]): NameServer[] {
  const list = configured.length > 0 ? configured : systemNameServers();
  return list.map((entry) => {
    if (isIP(entry)) return { host: entry, port: 53 };
    const parsed = parseHostPort(entry);
    return parsed ?? { host: entry, port: 53 };
  });
}

function systemNameServers(): string[] {
  try {
    const text = readFileSync('/etc/resolv.conf', 'utf8');
    const servers = [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] as string).filter((s) => isIP(s) !== 0);
    return servers.length > 0 ? servers : ['127.0.0.1'];
  } catch {
    return ['127.0.0.1'];
  }
}
