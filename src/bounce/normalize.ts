/** SMTP stage a reply answered; `dns` and `queue` are Tern's own (lookup failure, expiry). */
export const STAGES = ['connect', 'ehlo', 'starttls', 'mail', 'rcpt', 'data', 'dns', 'queue'] as const;
export type Stage = (typeof STAGES)[number];

export interface ReplyInput {
  readonly code?: number;
  readonly enhanced?: string;
  readonly text: string;
  readonly stage?: Stage;
}

/** What rules match against: the text lower-cased, unwrapped and stripped of status prefixes. */
export interface NormalisedReply {
  readonly code: number;
  readonly enhanced?: string;
  readonly text: string;
  readonly stage?: Stage;
}

const ENHANCED_ANYWHERE = /(?:^|[\s[(#:-])([245])\.(\d{1,3})\.(\d{1,3})(?=$|[\s\]),.;:])/;
const LEADING_CODE = /^([245]\d\d)(?:[\s-]+|$)/;

/**
 * Reporting MTAs wrap the remote reply in their own words and say which command it answered;
 * those words must neither match rules ("host ... said") nor be lost (the stage).
 */
const STAGE_HINTS: readonly [RegExp, Stage][] = [
  [/\(in reply to (?:end of )?data command\)|after end of data|after data\b|for text command|in reply to end of data/i, 'data'],
  [/\(in reply to rcpt to command\)|after (?:pipelined )?rcpt to|did not like our rcpt to|does not like recipient|smtp:rcpt\b|error following rcpt command|\[rcpt_to\]|following recipients? (?:was|were) rejected|for rcpt to response/i, 'rcpt'],
  [/\(in reply to mail from command\)|after mail from|did not like our mail from/i, 'mail'],
  [/\(in reply to (?:helo|ehlo) command\)|after (?:helo|ehlo)\b/i, 'ehlo'],
  [/refused to talk to me|after initial connection|\(in reply to initial greeting\)/i, 'connect'],
];

const WRAPPERS: readonly RegExp[] = [
  /\(in reply to [a-z ]+ command\)/gi,
  /\bhost \S+(?: ?\[[0-9a-f.:]+\])? said:\s*/gi,
  /\bhost \S+(?: ?\[[0-9a-f.:]+\])? refused to talk to me:\s*/gi,
  /\bsmtp error from remote (?:mail )?server (?:after|for) [^:]*(?::[^:]*>)?[^:]*:\s*(?:host [^:]*:\s*)?/gi,
  /\S+ \[[0-9a-f.:]+\] did not like our (?:rcpt to|mail from|data):\s*/gi,
  /\bremote host said:\s*/gi,
];

/** The command a reporting MTA says a reply answered, if its words say. */
export function stageIn(text: string): Stage | undefined {
  const flat = text.replace(/\s+/g, ' ');
  return STAGE_HINTS.find(([pattern]) => pattern.test(flat))?.[1];
}

export function normaliseReply(input: ReplyInput): NormalisedReply {
  let text = input.text.replace(/\s+/g, ' ').trim();
  const stage = input.stage ?? stageIn(text);
  for (const wrapper of WRAPPERS) text = text.replace(wrapper, ' ');
  text = text.replace(/\s+/g, ' ').trim();

  const leading = LEADING_CODE.exec(text);
  const code = input.code || (leading ? Number(leading[1]) : 0);
  const found = ENHANCED_ANYWHERE.exec(text);
  const enhanced = input.enhanced || (found ? `${found[1]}.${found[2]}.${found[3]}` : undefined);
  text = stripStatusPrefixes(text, code, enhanced).toLowerCase();
  return { code, ...(enhanced ? { enhanced } : {}), text, ...(stage ? { stage } : {}) };
}

/**
 * "550-5.1.1 The email account ... 550-5.1.1 double-checking ... 550 5.1.1 https://..." → the
 * words alone: multi-line replies repeat the code (and enhanced code) on every line.
 */
function stripStatusPrefixes(text: string, code: number, enhanced: string | undefined): string {
  let out = text;
  if (enhanced) out = out.replace(new RegExp(`(^|\\s)(?:${code || '[245]\\d\\d'}[\\s-]+)?#?${enhanced.replace(/\./g, '\\.')}(?=$|[\\s,.;:])`, 'g'), '$1');
  if (code) out = out.replace(new RegExp(`^${code}[\\s-]+`), '').replace(new RegExp(`\\s${code}-`, 'g'), ' ');
  return out.replace(/\s+/g, ' ').trim();
}
