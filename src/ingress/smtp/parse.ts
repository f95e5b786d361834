/**
 * Parsing what a client sends in the command phase: MAIL/RCPT paths and their parameters
 * (RFC 5321 §4.1.2, DSN RFC 3461, SIZE, BODY, SMTPUTF8), xtext and base64. Pure functions; the
 * connection turns their answers into replies.
 */
import { MAX_PATH } from './limits.ts';
import { REPLIES, render, type SmtpRefusal } from './replies.ts';

export interface SessionEnvelope {
  mailFrom: SmtpAddress | false;
  rcptTo: SmtpAddress[];
  dsn: { ret?: string; envid?: string };
  bodyType: '7bit' | '8bitmime';
  smtpUtf8: boolean;
}

export interface SmtpAddress {
  readonly address: string;
  readonly args: Readonly<Record<string, string | true>>;
  readonly dsn?: { readonly notify?: readonly string[]; readonly orcpt?: string };
}

export type ParsedPath =
  | { readonly ok: true; readonly address: string; readonly args: Record<string, string | true> }
  /** `syntax`: not "FROM:"/"TO:" and a path at all (501); `address`: a path, but a bad one (553). */
  | { readonly ok: false; readonly why: 'syntax' } | { readonly ok: false; readonly why: 'address'; readonly problem: string };

const NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

export function emptyEnvelope(): SessionEnvelope {
  return { mailFrom: false, rcptTo: [], dsn: {}, bodyType: '7bit', smtpUtf8: false };
}

/** "FROM:<a@b> SIZE=10 BODY=8BITMIME" → address and upper-cased parameters. */
export function parsePath(rest: string, keyword: 'FROM' | 'TO'): ParsedPath {
  const head = new RegExp(`^${keyword}:\\s*`, 'i').exec(rest);
  if (!head) return { ok: false, why: 'syntax' };
  const path = splitPath(rest.slice(head[0].length));
  if (!path.ok) return path;
  const problem = addressProblem(path.address);
  if (problem) return { ok: false, why: 'address', problem };
  const args: Record<string, string | true> = {};
  for (const part of path.params.split(/\s+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq === 0 || CONTROL.test(part)) return { ok: false, why: 'syntax' };
    args[(eq === -1 ? part : part.slice(0, eq)).toUpperCase()] = eq === -1 ? true : part.slice(eq + 1);
  }
  return { ok: true, address: path.address, args };
}

/** "<a@b> PARAMS" or "a@b PARAMS": the path must be balanced, and the parameters set apart by space. */
function splitPath(text: string): { ok: true; address: string; params: string } | Extract<ParsedPath, { ok: false }> {
  if (text.trim() === '') return { ok: false, why: 'syntax' };
  if (text.startsWith('<')) {
    const close = text.indexOf('>');
    if (close === -1) return { ok: false, why: 'address', problem: 'unbalanced <' };
    const address = text.slice(1, close);
    const after = text.slice(close + 1);
    if (address.includes('<')) return { ok: false, why: 'address', problem: 'misplaced <' };
    if (after !== '' && !/^\s/.test(after)) return { ok: false, why: 'address', problem: 'text after >' };
    return { ok: true, address: address.trim(), params: after };
  }
  const space = text.search(/\s/);
  const address = space === -1 ? text : text.slice(0, space);
  if (/[<>]/.test(address)) return { ok: false, why: 'address', problem: 'unbalanced >' };
  return { ok: true, address, params: space === -1 ? '' : text.slice(space) };
}

/**
 * What the wire forbids in any path, whatever the policy says: control characters (NUL, CR, ...)
 * would reach logs, headers and the next hop's envelope; RFC 5321 caps a path at 256 octets.
 */
function addressProblem(address: string): string | undefined {
  if (CONTROL.test(address)) return 'control character';
  if (Buffer.byteLength(address) > MAX_PATH) return `longer than ${MAX_PATH} octets`;
  return undefined;
}

/** A MAIL parameter into the envelope, or the refusal it earns. */
export function mailParam(envelope: SessionEnvelope, key: string, value: string | true, limit: number): SmtpRefusal | undefined {
  switch (key) {
    case 'SIZE':
      if (typeof value !== 'string' || !/^\d+$/.test(value)) return render(REPLIES.invalidSize);
      if (Number(value) > limit) return render(REPLIES.declaredTooBig, { limit });
      return undefined;
    case 'BODY': {
      const body = typeof value === 'string' ? value.toLowerCase() : '';
      if (body !== '7bit' && body !== '8bitmime') return render(REPLIES.invalidBody);
      envelope.bodyType = body;
      return undefined;
    }
    case 'SMTPUTF8':
      if (value !== true) return render(REPLIES.smtputf8Value);
      envelope.smtpUtf8 = true;
      return undefined;
    case 'RET': {
      const ret = typeof value === 'string' ? value.toUpperCase() : '';
      if (ret !== 'FULL' && ret !== 'HDRS') return render(REPLIES.invalidRet);
      envelope.dsn.ret = ret;
      return undefined;
    }
    case 'ENVID':
      if (typeof value !== 'string' || value === '') return render(REPLIES.invalidEnvid);
      envelope.dsn.envid = decodeXtext(value);
      return undefined;
    default:
      return render(REPLIES.unsupportedParameter, { parameter: key });
  }
}

/** RCPT's DSN parameters (NOTIFY, ORCPT), or the refusal they earn. */
export function rcptParams(args: Readonly<Record<string, string | true>>): { notify?: string[]; orcpt?: string } | SmtpRefusal {
  const dsn: { notify?: string[]; orcpt?: string } = {};
  for (const [key, value] of Object.entries(args)) {
    if (key === 'NOTIFY' && typeof value === 'string') {
      const notify = value.toUpperCase().split(',');
      if (!notify.every((n) => NOTIFY.has(n)) || (notify.includes('NEVER') && notify.length > 1)) return render(REPLIES.invalidNotify);
      dsn.notify = notify;
    } else if (key === 'ORCPT' && typeof value === 'string' && /^[^;]+;./.test(value)) {
      dsn.orcpt = decodeXtext(value);
    } else {
      return render(REPLIES.unsupportedParameter, { parameter: key });
    }
  }
  return dsn;
}

/** RFC 3461 xtext; control characters that a decoded "+0D+0A" would smuggle are dropped. */
export function decodeXtext(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/\+([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/[\x00-\x1f\x7f]/g, '');
}

/** RFC 4954: "=" is an empty response; anything not base64 is refused, not guessed at. */
export function base64(text: string): string | undefined {
  if (text === '=') return '';
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  return Buffer.from(text, 'base64').toString('utf8');
}

/** A HELO/EHLO name: one word of printable characters (it goes into the Received header). */
export function validHeloName(name: string): boolean {
  return name !== '' && !/\s/.test(name) && !CONTROL.test(name);
}
