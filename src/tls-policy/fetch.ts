/**
 * The MTA-STS policy fetch (RFC 8461 §3.3), strict: HTTPS to `mta-sts.<domain>` with its
 * certificate verified for that name, status 200 only (no redirect is followed), text/plain,
 * at most STS_LIMITS.maxPolicyBytes, within a deadline for the whole exchange. The name is
 * resolved by Tern's own resolver, as the MX hosts are, and the address connected to directly.
 */
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Clock } from '../lib/clock.ts';
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

function get(host: string, address: string, deps: FetchDeps): Promise<Parsed<string>> {
  return new Promise((resolve) => {
    const req = request({
      host: address, port: deps.port, servername: host, path: '/.well-known/mta-sts.txt', method: 'GET',
      headers: { host, accept: 'text/plain', 'user-agent': 'Tern MTA-STS' },
      rejectUnauthorized: true, agent: false,
      ...(deps.trust ? { secureContext: deps.trust } : {}),
    });
    // A deadline for the whole exchange: a server dribbling a byte a second ends all the same.
    const deadline = deps.clock.at(deps.clock.now() + deps.timeoutMs, () => done({ ok: false, error: `https://${host}: no policy within ${deps.timeoutMs} ms` }));
    function done(result: Parsed<string>): void {
      deadline.cancel();
      req.destroy();
      resolve(result);
    }
    req.once('error', (err) => done({ ok: false, error: `https://${host}: ${err.message}` }));
    req.once('response', (res) => {
      const type = String(res.headers['content-type'] ?? '');
      if (res.statusCode !== 200) return done({ ok: false, error: `https://${host}: HTTP ${res.statusCode}${res.statusCode && res.statusCode >= 300 && res.statusCode < 400 ? ' (redirects are not followed)' : ''}` });
      if (!/^text\/plain\b/i.test(type)) return done({ ok: false, error: `https://${host}: content-type "${type.slice(0, 60)}" is not text/plain` });
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > STS_LIMITS.maxPolicyBytes) return done({ ok: false, error: `https://${host}: policy over ${STS_LIMITS.maxPolicyBytes} bytes` });
        chunks.push(chunk);
      });
      res.once('end', () => done({ ok: true, value: Buffer.concat(chunks).toString('utf8') }));
      res.once('error', (err) => done({ ok: false, error: `https://${host}: ${err.message}` }));
    });
    req.end();
  });
}
