/** tls-policy: the TLS policies recipient domains publish (MTA-STS), found and kept (docs/tls.md). */
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { fetchStsPolicy } from './fetch.ts';
import { createTlsPolicies, type TlsPolicies } from './policies.ts';

export { fetchStsPolicy, type FetchDeps } from './fetch.ts';
export { mxMatches, parseStsPolicy, parseStsRecord, STS_LIMITS, type StsPolicy } from './mta-sts.ts';
export { createTlsPolicies, POLICY_LIMITS, type TlsPolicies } from './policies.ts';

export interface MtaStsOptions { readonly port: number; readonly timeout: number; readonly state_dir: string }

/** What finding policies needs of DNS: a name's TXT records and addresses (undefined, []: none or no answer). */
export interface PolicyDns {
  txt(name: string): Promise<readonly string[] | undefined>;
  addresses(host: string): Promise<readonly string[]>;
}

/** delivery.mta_sts wired: TXT discovery and strict HTTPS fetches, cached in `file` under its state_dir. */
export function openMtaSts(options: MtaStsOptions, deps: { dns: PolicyDns; trust: SecureContext | undefined; file: string; clock: Clock; log: Logger }): TlsPolicies {
  const { dns, clock } = deps;
  return createTlsPolicies({
    txt: (name) => dns.txt(name),
    fetch: (domain) => fetchStsPolicy(domain, { addresses: (host) => dns.addresses(host), port: options.port, timeoutMs: options.timeout, trust: deps.trust, clock }),
    stateDir: options.state_dir, file: deps.file, clock, log: deps.log,
  });
}
export { openTlsReports, REPORT_TIMING, type ReportSender, type TlsReports } from './reports.ts';
export { buildReport, parseTlsRptRecord, sessionOf, type PolicySessionFacts } from './tlsrpt.ts';
