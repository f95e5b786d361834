/**
 * DANE for SMTP (RFC 7672, RFC 6698): TLSA records of an MX host, as DNSSEC-validated DNS gives
 * them, and the check of a server's certificate chain against them. Shared here: DNS reads the
 * records, delivery checks each TLS session against them.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { TlsFailureType } from './tls-policy.ts';

/** One TLSA record: certificate usage, selector, matching type, association data. */
export interface TlsaRecord {
  readonly usage: number;
  readonly selector: number;
  readonly matchingType: number;
  readonly data: Buffer;
}

/**
 * What an MX host's TLSA lookup means for delivery (RFC 7672 §2.2): `dane`, validated records
 * (the usable ones; none usable: TLS is still required, unchecked); `none`, no DANE for the host
 * (no records, or DNS does not vouch for them); `failed`, DNSSEC vouched for the host but its
 * TLSA lookup failed: the host must not be used.
 */
export type TlsaLookup =
  | { readonly kind: 'dane'; readonly records: readonly TlsaRecord[] }
  | { readonly kind: 'none' }
  | { readonly kind: 'failed'; readonly detail: string };

/** RFC 7672 §3.1: SMTP uses DANE-TA(2) and DANE-EE(3) only; PKIX-TA(0) and PKIX-EE(1) are unusable. */
export const DANE_TA = 2;
export const DANE_EE = 3;

/** The rdata of a TLSA record; undefined when it is too short to be one. */
export function parseTlsa(rdata: Buffer): TlsaRecord | undefined {
  if (rdata.length < 4) return undefined;
  return { usage: rdata[0] as number, selector: rdata[1] as number, matchingType: rdata[2] as number, data: Buffer.from(rdata.subarray(3)) };
}

/** Records a client can use: usage 2 or 3, selector 0 (certificate) or 1 (public key), matching 0, 1 (SHA-256) or 2 (SHA-512) with a digest of the right size. */
export function usable(records: readonly TlsaRecord[]): TlsaRecord[] {
  const sizes: Record<number, number | undefined> = { 1: 32, 2: 64 };
  return records.filter((r) => (r.usage === DANE_TA || r.usage === DANE_EE) && (r.selector === 0 || r.selector === 1)
    && (r.matchingType === 0 ? r.data.length > 0 : sizes[r.matchingType] === r.data.length));
}

function selected(cert: X509Certificate, selector: number): Buffer {
  return selector === 0 ? cert.raw : (cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer);
}

function matches(record: TlsaRecord, cert: X509Certificate): boolean {
  const content = selected(cert, record.selector);
  const digest = record.matchingType === 0 ? content : createHash(record.matchingType === 1 ? 'sha256' : 'sha512').update(content).digest();
  return digest.equals(record.data);
}

export type DaneResult = { readonly ok: true; readonly usage: number } | { readonly ok: false; readonly failure: TlsFailureType; readonly why: string };

/**
 * A server's chain (leaf first, as it sent it) against the host's usable TLSA records:
 * - DANE-EE: the leaf matches; no name, no dates, no CA (RFC 7672 §3.1.1);
 * - DANE-TA: a certificate of the chain matches and signs its way down to the leaf, which is in
 *   its validity period and names the MX host (§3.1.2, §3.2).
 */
export function checkDane(records: readonly TlsaRecord[], chain: readonly X509Certificate[], mxHost: string, now: number): DaneResult {
  const leaf = chain[0];
  if (!leaf) return { ok: false, failure: 'validation-failure', why: 'the server sent no certificate' };
  if (records.some((r) => r.usage === DANE_EE && matches(r, leaf))) return { ok: true, usage: DANE_EE };
  const anchors = records.filter((r) => r.usage === DANE_TA);
  for (let i = 0; i < chain.length && anchors.length > 0; i++) {
    const ta = chain[i] as X509Certificate;
    if (!anchors.some((r) => matches(r, ta))) continue;
    for (let j = i; j > 0; j--) {
      if (!(chain[j - 1] as X509Certificate).verify((chain[j] as X509Certificate).publicKey)) return { ok: false, failure: 'validation-failure', why: `certificate ${j - 1} of the chain is not signed by the next` };
    }
    if (now < Date.parse(leaf.validFrom) || now > Date.parse(leaf.validTo)) return { ok: false, failure: 'certificate-expired', why: `the certificate is valid ${leaf.validFrom} to ${leaf.validTo}` };
    if (leaf.checkHost(mxHost, { subject: 'never' }) === undefined) return { ok: false, failure: 'certificate-host-mismatch', why: `the certificate does not name ${mxHost}` };
    return { ok: true, usage: DANE_TA };
  }
  return { ok: false, failure: 'tlsa-invalid', why: 'no TLSA record matches the certificate chain' };
}
