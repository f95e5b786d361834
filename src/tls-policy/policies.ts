/**
 * Which TLS policy a recipient domain asks for (docs/tls.md), and from where: MTA-STS policies
 * discovered by TXT, fetched by HTTPS, kept on disk by id until their max_age (RFC 8461 §5).
 *
 * - A cached policy whose id the TXT record still names is used as it is.
 * - A new id (or none cached) means a fetch; while it runs, and if it fails, the cached policy (if
 *   any, and not expired) applies. A failed fetch never blocks delivery unless an enforced policy
 *   is cached: "no policy" is always the answer when nothing valid is known.
 * - No TXT record (or a DNS failure) keeps a cached policy until it expires (§5.1): an attacker
 *   stripping the record does not strip the policy.
 * - A policy older than a day is fetched again in the background (§5.1's proactive refresh).
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock } from '../lib/clock.ts';
import { saveSoon } from '../lib/save-soon.ts';
import type { TlsPolicyDecision } from '../model/tls-policy.ts';
import { parseStsRecord, type Parsed, type StsPolicy } from './mta-sts.ts';

export interface TlsPolicies {
  /** The policy for a domain now: from memory at once where known, else after DNS (and a fetch). */
  forDomain(domain: string): Promise<TlsPolicyDecision>;
  /** Read the cache from disk. */
  start(): Promise<void>;
  /** Write the cache. */
  stop(): Promise<void>;
}

export const POLICY_LIMITS = {
  /** A cached policy is fetched again in the background after this long, whatever its id. */
  refreshMs: 86_400_000,
  /** After a failed fetch, the domain is not asked again for this long (its mail goes meanwhile). */
  failureBackoffMs: 300_000,
  /** Domains whose policies are kept; the least recently used go first. */
  maxDomains: 100_000,
  /** The cache is written this long after a change. */
  saveDelayMs: 2_000,
} as const;

interface Cached {
  readonly id: string;
  readonly policy: StsPolicy;
  readonly fetchedAt: number;
  readonly expiresAt: number;
}

export interface PoliciesDeps {
  /** TXT records of a name, each joined; undefined: none, or DNS did not answer. */
  readonly txt: (name: string) => Promise<readonly string[] | undefined>;
  readonly fetch: (domain: string) => Promise<Parsed<StsPolicy>>;
  readonly stateDir: string;
  /** The cache's file in stateDir (one per shard). */
  readonly file?: string;
  readonly clock: Clock;
  readonly log: Logger;
}

export function createTlsPolicies(deps: PoliciesDeps): TlsPolicies {
  const { clock, log } = deps;
  const FILE = deps.file ?? 'mta-sts.json';
  const cache = new Map<string, Cached>();
  const fetching = new Map<string, Promise<Cached | undefined>>();
  const failedUntil = new Map<string, number>();
  // A cache not written is fetched again after a restart: worth a warning, never a failure.
  const saver = saveSoon(clock, POLICY_LIMITS.saveDelayMs, () => replaceFile(deps.stateDir, FILE, JSON.stringify(Object.fromEntries(cache)))
    .catch((err: unknown) => log.warn({ err }, 'MTA-STS: cached policies not written')));

  const live = (domain: string): Cached | undefined => {
    const c = cache.get(domain);
    if (c && c.expiresAt <= clock.now()) {
      cache.delete(domain);
      saver.soon();
      return undefined;
    }
    return c;
  };

  const decision = (c: Cached | undefined): TlsPolicyDecision =>
    !c || c.policy.mode === 'none' ? { kind: 'none' } : { kind: 'mta-sts', mode: c.policy.mode, id: c.id, mx: c.policy.mx, maxAgeSeconds: c.policy.maxAgeSeconds };

  /** One fetch per domain at a time; its result cached (or the failure remembered). */
  function refresh(domain: string, id: string): Promise<Cached | undefined> {
    const running = fetching.get(domain);
    if (running) return running;
    const promise = deps.fetch(domain).then((fetched) => {
      if (!fetched.ok) {
        failedUntil.set(domain, clock.now() + POLICY_LIMITS.failureBackoffMs);
        log.warn({ domain, id, error: fetched.error }, `MTA-STS: policy of ${domain} not fetched: ${fetched.error}${cache.has(domain) ? '; the cached one applies' : ''}`);
        return live(domain);
      }
      failedUntil.delete(domain);
      const now = clock.now();
      const entry: Cached = { id, policy: fetched.value, fetchedAt: now, expiresAt: now + fetched.value.maxAgeSeconds * 1000 };
      const before = cache.get(domain);
      cache.delete(domain);
      cache.set(domain, entry);
      if (cache.size > POLICY_LIMITS.maxDomains) cache.delete(cache.keys().next().value as string);
      saver.soon();
      if (before?.id !== id) log.info({ domain, id, mode: entry.policy.mode, mx: entry.policy.mx }, `MTA-STS: ${domain} policy ${id} (${entry.policy.mode})`);
      return entry;
    }).finally(() => fetching.delete(domain));
    fetching.set(domain, promise);
    return promise;
  }

  async function forDomain(name: string): Promise<TlsPolicyDecision> {
    const domain = name.toLowerCase().replace(/\.$/, '');
    const cached = live(domain);
    const records = await deps.txt(`_mta-sts.${domain}`);
    const record = records ? parseStsRecord(records) : undefined;
    // No usable record: a cached policy holds until it expires (RFC 8461 §5.1).
    if (!record?.ok) return decision(cached);
    const id = record.value.id;
    const backingOff = (failedUntil.get(domain) ?? 0) > clock.now();
    if (cached && cached.id === id) {
      if (clock.now() - cached.fetchedAt >= POLICY_LIMITS.refreshMs && !backingOff) void refresh(domain, id);
      return decision(cached);
    }
    if (backingOff) return decision(cached);
    return decision(await refresh(domain, id));
  }

  return {
    forDomain,
    async start() {
      try {
        const saved = JSON.parse(await readFile(`${deps.stateDir}/${FILE}`, 'utf8')) as Record<string, Cached>;
        for (const [domain, entry] of Object.entries(saved)) if (entry && typeof entry.id === 'string' && entry.expiresAt > clock.now()) cache.set(domain, entry);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err }, 'MTA-STS: cached policies not read; they are fetched again');
      }
    },
    stop: () => saver.now(),
  };
}
