/**
 * A recipient domain's own TLS policy (docs/tls.md), applied to one delivery: which MX hosts the
 * mail may go to, at which TLS level, and what each attempt reports of it.
 * - DANE, per MX host DNSSEC vouches for: its TLSA records decide (src/model/dane.ts), first.
 * - MTA-STS enforce: only the MX hosts the policy names, at level verify (a certificate that
 *   chains to a trusted CA and names the MX host); none of them, or a session that fails: a
 *   deferral (4.7.5), never plaintext, never another host, retried until the policy or the mail
 *   expires.
 * - MTA-STS testing: delivered as without a policy; each attempt reports whether it met it.
 */
import type { AttemptOutcome } from '../model/outcome.ts';
import type { PathHandle, PathSettings, TlsLevel } from '../model/path.ts';
import { localReply } from '../model/reply.ts';
import { mxMatches, type AppliedTlsPolicy, type TlsPolicyDecision } from '../model/tls-policy.ts';
import type { DeliveryHost, DeliveryJob } from './pool.ts';
import type { TlsaLookup } from '../model/dane.ts';

export type PolicyPlan =
  | { readonly kind: 'send'; readonly hosts: readonly DeliveryHost[]; readonly level?: TlsLevel }
  | { readonly kind: 'refuse'; readonly outcome: AttemptOutcome };

/**
 * DANE first (RFC 8461 §2: it takes precedence over MTA-STS): each host DNSSEC vouches for is
 * given its TLSA records; a host whose lookup failed is dropped, and a job left with none is a
 * deferral. Hosts DNS does not vouch for are left as they are.
 */
export async function withDane(hosts: readonly DeliveryHost[], tlsa: (host: string) => Promise<TlsaLookup>): Promise<{ hosts: readonly DeliveryHost[] } | { refused: AttemptOutcome }> {
  const looked = await Promise.all(hosts.map(async (h) => ({ h, found: h.secure ? await tlsa(h.name) : ({ kind: 'none' } as const) })));
  const kept = looked.filter((l) => l.found.kind !== 'failed').map(({ h, found }) => (found.kind === 'dane' ? { ...h, dane: found.records } : h));
  if (kept.length > 0) return { hosts: kept };
  const failed = looked.map((l) => (l.found.kind === 'failed' ? `${l.h.name}: ${l.found.detail}` : '')).join('; ');
  return {
    refused: {
      kind: 'site-unreachable',
      route: { tlsPolicy: { type: 'dane', result: 'failure', failure: 'dnssec-invalid' } },
      reply: localReply(451, '4.7.5', `TLS policy failure: DANE: no MX host's TLSA records could be looked up (${failed})`, 'DNS'),
    },
  };
}

export function planFor(job: DeliveryJob, decision: TlsPolicyDecision): PolicyPlan {
  if (decision.kind === 'none' || decision.mode === 'testing') return { kind: 'send', hosts: job.hosts };
  // DANE hosts are DANE's whatever the MTA-STS policy lists; the others must be on its list.
  const hosts = job.hosts.filter((h) => h.dane || mxMatches(decision.mx, h.name));
  if (hosts.length > 0) return { kind: 'send', hosts, level: 'verify' };
  const names = job.hosts.map((h) => h.name).join(', ');
  return {
    kind: 'refuse',
    outcome: {
      kind: 'site-unreachable',
      route: { tlsPolicy: { type: 'mta-sts', mode: 'enforce', id: decision.id, result: 'failure', failure: 'validation-failure' } },
      reply: localReply(451, '4.7.5', `TLS policy failure: the MTA-STS policy of ${job.domain} (id ${decision.id}, enforce) names none of its MX hosts (${names})`, 'CONNECT'),
    },
  };
}

/** The attempt's route says what the policy asked and whether the session met it; an enforced failure says so in its reply. */
export function reported(outcome: AttemptOutcome, decision: TlsPolicyDecision, domain: string): AttemptOutcome {
  if (decision.kind === 'none' || outcome.kind === 'held' || outcome.kind === 'path-failed') return outcome;
  // A DANE host's attempt reports DANE (it took precedence).
  if (outcome.route.tlsPolicy?.type === 'dane') return outcome;
  const route = outcome.route;
  if (!route.mx && !route.tlsFailure) return outcome;
  const failure = !mxMatches(decision.mx, route.mx ?? '') ? 'validation-failure' : route.tlsFailure ?? (route.tls ? route.tls.failure : 'starttls-not-supported');
  const met = route.tls?.verified === true && mxMatches(decision.mx, route.mx ?? '');
  const applied: AppliedTlsPolicy = { type: 'mta-sts', mode: decision.mode, id: decision.id, result: met ? 'success' : 'failure', ...(met || !failure ? {} : { failure }) };
  const tagged = { ...outcome, route: { ...route, tlsPolicy: applied } } as AttemptOutcome;
  // An enforced policy's certificate failure is a security matter (securityerror), not a receiver without STARTTLS.
  if (decision.mode === 'enforce' && tagged.kind === 'site-unreachable' && route.tlsFailure && route.tlsFailure !== 'starttls-not-supported') {
    return { ...tagged, reply: { ...tagged.reply, text: `TLS policy failure: MTA-STS policy of ${domain} (id ${decision.id}, enforce): ${tagged.reply.text.replace(/^TLS failure: /, '')}` } };
  }
  return tagged;
}

/**
 * The path as a policy's pool sees it: the same key (its limits are the path's), the level the
 * policy needs. One wrapper per handle, and one settings object per the path's settings, so the
 * pool's per-settings state (its message credit) is kept.
 */
export function requiring(level: TlsLevel, wrappers: WeakMap<PathHandle, PathHandle>): (path: PathHandle) => PathHandle {
  return (path) => {
    const known = wrappers.get(path);
    if (known) return known;
    let from: PathSettings | undefined;
    let derived: PathSettings | undefined;
    const wrapper: PathHandle = {
      key: path.key, site: path.site, source: path.source, domain: path.domain, provider: path.provider,
      settings() {
        const s = path.settings();
        if (s !== from) {
          from = s;
          derived = { ...s, tls: level };
        }
        return derived as PathSettings;
      },
      hold: () => path.hold(),
      ...(path.sessions ? { sessions: () => path.sessions?.() } : {}),
    };
    wrappers.set(path, wrapper);
    return wrapper;
  };
}
