/**
 * ESMTP parameters on MAIL and RCPT, each only where the server advertised its extension: a
 * parameter it does not know would be a 555 for the whole message.
 */
import type { Envelope, RecipientDsn } from './types.ts';

export interface Extensions {
  readonly pipelining: boolean;
  readonly eightBitMime: boolean;
  readonly size: boolean;
  readonly dsn: boolean;
  readonly smtputf8: boolean;
  readonly starttls: boolean;
}

const NON_ASCII = /[^\x00-\x7f]/;
/** RFC 3461 §4.1: NOTIFY is NEVER, or any of SUCCESS, FAILURE, DELAY. */
const NOTIFY_KEYWORD = /^(NEVER|SUCCESS|FAILURE|DELAY)$/;

export function mailParams(ext: Extensions, envelope: Envelope): string {
  let params = '';
  if (ext.size) params += ` SIZE=${envelope.size}`;
  if (envelope.eightBit && ext.eightBitMime) params += ' BODY=8BITMIME';
  if (ext.smtputf8 && [envelope.sender, ...envelope.recipients].some((a) => NON_ASCII.test(a))) params += ' SMTPUTF8';
  if (ext.dsn && envelope.ret) params += ` RET=${envelope.ret}`;
  if (ext.dsn && envelope.envid) params += ` ENVID=${xtext(envelope.envid)}`;
  return params;
}

/** NOTIFY and ORCPT (RFC 3461 §4.1, §4.2) as the upstream client asked for them. */
export function rcptParams(ext: Extensions, dsn: RecipientDsn | undefined): string {
  if (!ext.dsn || !dsn) return '';
  let params = '';
  const notify = (dsn.notify ?? []).map((k) => k.toUpperCase()).filter((k) => NOTIFY_KEYWORD.test(k));
  if (notify.length > 0) params += ` NOTIFY=${notify.join(',')}`;
  if (dsn.orcpt) params += ` ORCPT=${orcpt(dsn.orcpt)}`;
  return params;
}

/** Stored decoded as "type;address"; the address goes back out as xtext. No type: rfc822. */
function orcpt(stored: string): string {
  const semi = stored.indexOf(';');
  const type = semi > 0 ? stored.slice(0, semi) : 'rfc822';
  const address = semi > 0 ? stored.slice(semi + 1) : stored;
  return `${type};${xtext(address)}`;
}

/** RFC 3461 xtext: "+" and "=" and anything outside printable ASCII as +HH (UTF-8 bytes). */
export function xtext(value: string): string {
  const out: string[] = [];
  for (const byte of Buffer.from(value, 'utf8')) {
    const printable = byte >= 0x21 && byte <= 0x7e && byte !== 0x2b && byte !== 0x3d;
    out.push(printable ? String.fromCharCode(byte) : `+${byte.toString(16).toUpperCase().padStart(2, '0')}`);
  }
  return out.join('');
}
