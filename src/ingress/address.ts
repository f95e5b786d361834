/**
 * Mailbox syntax check for envelope addresses: dot-atom or quoted local part, a DNS domain.
 * UTF-8 is allowed (SMTPUTF8). Address literals ([192.0.2.1]) are refused: Tern routes by MX.
 */
const LOCAL_DOT_ATOM = /^[^\s".(),:;<>@[\\\]]+(?:\.[^\s".(),:;<>@[\\\]]+)*$/u;
const LOCAL_QUOTED = /^"(?:[^"\\\r\n]|\\.)*"$/u;
const DOMAIN = /^(?=.{1,253}$)(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+[\p{L}\p{N}][\p{L}\p{N}-]{0,61}[\p{L}\p{N}]$/u;

export type AddressCheck = { ok: true } | { ok: false; problem: string };

export function checkMailbox(address: string): AddressCheck {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return { ok: false, problem: 'must be local-part@domain' };
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (Buffer.byteLength(local) > 64) return { ok: false, problem: 'local part longer than 64 octets' };
  if (!LOCAL_DOT_ATOM.test(local) && !LOCAL_QUOTED.test(local)) return { ok: false, problem: 'invalid local part' };
  if (domain.startsWith('[')) return { ok: false, problem: 'address literals are not accepted' };
  if (!DOMAIN.test(domain)) return { ok: false, problem: `invalid domain "${domain}"` };
  return { ok: true };
}
