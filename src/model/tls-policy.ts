/**
 * Receivers' TLS policies (docs/tls.md): what delivery is told to apply to a domain's mail, and
 * what it reports of each attempt. Shared here so delivery need not import the part that finds
 * the policies (src/tls-policy).
 */

/** The policy a recipient domain publishes, as found now. */
export type TlsPolicyDecision =
  | { readonly kind: 'none' }
  | { readonly kind: 'mta-sts'; readonly mode: 'enforce' | 'testing'; readonly id: string; readonly mx: readonly string[]; readonly maxAgeSeconds?: number };

/**
 * Why a TLS session did not meet a policy: RFC 8460 §4.3's result types, as TLS-RPT reports them
 * and events show them.
 */
export const TLS_FAILURES = [
  'starttls-not-supported', 'certificate-host-mismatch', 'certificate-expired', 'certificate-not-trusted', 'validation-failure',
  'tlsa-invalid', 'dnssec-invalid', 'dane-required', 'sts-policy-fetch-error', 'sts-policy-invalid', 'sts-webpki-invalid',
] as const;
export type TlsFailureType = (typeof TLS_FAILURES)[number];

/** What an attempt did about the domain's policy: `type` is the receiver's policy, or the path's TLS level where it has none. */
export interface AppliedTlsPolicy {
  readonly type: 'mta-sts' | 'dane' | 'none' | 'may' | 'encrypt' | 'verify';
  readonly mode?: 'enforce' | 'testing';
  /** The MTA-STS policy id. */
  readonly id?: string;
  /** Whether the session met the policy (absent for a plain TLS level). */
  readonly result?: 'success' | 'failure';
  readonly failure?: TlsFailureType;
}

/**
 * Whether an MX host is one a policy names (RFC 8461 §4.1): equal, or a `*.` pattern whose
 * wildcard stands for exactly one leftmost label. Case and a trailing dot do not matter.
 */
export function mxMatches(patterns: readonly string[], host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((pattern) => {
    if (!pattern.startsWith('*.')) return pattern === name;
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
  });
}

/** Node's and OpenSSL's certificate error codes, as RFC 8460 result types. */
export function tlsFailureOf(code: string | undefined): TlsFailureType {
  if (!code) return 'validation-failure';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /HOSTNAME|ALTNAME/.test(code)) return 'certificate-host-mismatch';
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'certificate-expired';
  if (/SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|CERT_UNTRUSTED|CERT_CHAIN_TOO_LONG|INVALID_CA/.test(code)) return 'certificate-not-trusted';
  return 'validation-failure';
}
