/**
 * The MTA-STS policy fetch (RFC 8461 §3.3), strict (src/lib/strict-https.ts): HTTPS to
 * `mta-sts.<domain>` with its certificate verified for that name, status 200 only (no redirect
 * is followed), text/plain, at most STS_LIMITS.maxPolicyBytes, within a deadline for the whole
 * exchange. The name is resolved by Tern's own resolver, as the MX hosts are.
 */
import { isIP } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Clock } from '../lib/clock.ts';
import { strictHttps } from '../lib/strict-https.ts';
import { parseStsPolicy, STS_LIMITS, type Parsed, type StsPolicy } from './mta-sts.ts';

export interface FetchDeps {
  /** The addresses of a host name (Tern's resolver). */
  readonly addresses: (host: string) => Promise<readonly string[]>;
  /** 443; another port only where policy hosts are served on one (tests). */
  readonly port: number;
  readonly timeoutMs: number;
  /** delivery.tls_ca_file when set: the CAs a policy host's certificate must chain to. */
  readonly trust?: SecureContext | undefined;
  readonly clock: Clock;
}

export async function fetchStsPolicy(domain: string, deps: FetchDeps): Promise<Parsed<StsPolicy>> {
  const host = `mta-sts.${domain}`;
  let addresses: readonly string[];
  try {
    addresses = await deps.addresses(host);
  } catch (err) {
    return { ok: false, error: `${host}: ${(err as Error).message}` };
  }
  const address = addresses.find((a) => isIP(a) !== 0);
  if (address === undefined) return { ok: false, error: `${host} has no address` };
  const fetched = await get(host, address, deps);
  return fetched.ok ? parseStsPolicy(fetched.value) : fetched;
}

async function get(host: string, address: string, deps: FetchDeps): Promise<Parsed<string>> {
  const answer = await strictHttps({
    host, address, port: deps.port, path: '/.well-known/mta-sts.txt', method: 'GET', headers: { accept: 'text/plain', 'user-agent': 'Tern MTA-STS' },
    trust: deps.trust, timeoutMs: deps.timeoutMs, maxBytes: STS_LIMITS.maxPolicyBytes, what: 'policy', clock: deps.clock,
  });
  if (!answer.ok) return { ok: false, error: `https://${host}: ${answer.error}` };
  const { status, contentType } = answer;
  if (status !== 200) return { ok: false, error: `https://${host}: HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}` };
  if (!/^text\/plain\b/i.test(contentType)) return { ok: false, error: `https://${host}: content-type "${contentType.slice(0, 60)}" is not text/plain` };
  return { ok: true, value: answer.body.toString('utf8') };
}
