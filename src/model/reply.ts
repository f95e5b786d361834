/**
 * An SMTP reply that remembers what it answered and who made it. Local replies (DNS failure,
 * refused connection, timeout, expiry) are built by Tern and must never feed adaptive rules.
 */
export type SmtpCommand = 'CONNECT' | 'EHLO' | 'STARTTLS' | 'MAIL' | 'RCPT' | 'DATA' | 'DNS' | 'QUEUE';

export interface SmtpReply {
  readonly code: number;
  /** RFC 3463 enhanced status code such as "5.1.1", when the reply carried one. */
  readonly enhanced?: string;
  /** One line: continuation lines joined with a space, repeated code prefixes removed. */
  readonly text: string;
  readonly command?: SmtpCommand;
  readonly origin: 'remote' | 'local';
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/;

/** Parse a raw (possibly multi-line) reply like "550-5.1.1 foo\r\n550 5.1.1 bar". */
export function parseReply(raw: string, context: { command?: SmtpCommand; origin?: 'remote' | 'local' } = {}): SmtpReply {
  const lines = raw.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  let code = 0;
  let enhanced: string | undefined;
  const texts: string[] = [];
  for (const line of lines) {
    const match = /^(\d{3})(?:[ -]|$)(.*)$/.exec(line);
    let rest = line;
    if (match) {
      code = code || Number(match[1]);
      rest = match[2] ?? '';
    }
    const enh = ENHANCED.exec(rest);
    if (enh) {
      enhanced ??= `${enh[1]}.${enh[2]}.${enh[3]}`;
      rest = rest.slice(enh[0].length);
    }
    if (rest !== '') texts.push(rest);
  }
  return {
    code,
    ...(enhanced === undefined ? {} : { enhanced }),
    text: texts.join(' '),
    ...(context.command === undefined ? {} : { command: context.command }),
    origin: context.origin ?? 'remote',
  };
}

export function localReply(code: number, enhanced: string, text: string, command?: SmtpCommand): SmtpReply {
  return { code, enhanced, text, origin: 'local', ...(command === undefined ? {} : { command }) };
}

export const isSuccess = (r: SmtpReply): boolean => r.code >= 200 && r.code < 300;
export const isTransient = (r: SmtpReply): boolean => r.code >= 400 && r.code < 500;

export function formatReply(r: SmtpReply): string {
  return [r.code, r.enhanced, r.text].filter((p) => p !== undefined && p !== '').join(' ');
}

/** A reply-code pattern from a rules file ("421", "45x", "4xx") against a code. */
export function replyCodeMatches(pattern: string, code: number): boolean {
  const actual = String(code);
  return pattern.length === 3 && [...pattern].every((ch, i) => ch === 'x' || ch === actual[i]);
}

/** An enhanced-code pattern from a rules file ("4.7.0", "5.7.*") against a reply's code. */
export function enhancedCodeMatches(pattern: string, enhanced: string | undefined): boolean {
  if (!enhanced) return false;
  const want = pattern.split('.');
  const got = enhanced.split('.');
  return want.every((part, i) => part === '*' || Number(part) === Number(got[i]));
}
