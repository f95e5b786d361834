/**
 * THE catalogue of every reply Tern's SMTP listener sends, the policy's (server.ts) included:
 * code, enhanced status code (RFC 3463; none for replies that do not take one), text and when.
 * docs/replies.md lists the same entries, and a unit test keeps the two in step.
 *
 * `{name}` in a text is filled in by `render`, which makes whatever it fills in safe to send:
 * control characters replaced, length capped (client text is never echoed raw).
 */
import { MAX_ECHO } from './limits.ts';

export interface ReplyEntry {
  readonly code: number;
  /** '' for replies RFC 3463 gives none (greeting, 354, 334, the EHLO greeting). */
  readonly enhanced: string;
  readonly text: string;
  readonly when: string;
  /** A 4xx the server's state causes (spool, shutdown): not counted against the client. */
  readonly serverFault?: true;
}

/** A reply as sent: `text` starts with its enhanced status code ("5.1.3 Bad recipient ..."). */
export interface SmtpRefusal {
  readonly code: number;
  readonly text: string;
  readonly serverFault?: boolean;
}

const entry = (code: number, enhanced: string, text: string, when: string, serverFault = false): ReplyEntry =>
  serverFault ? { code, enhanced, text, when, serverFault } : { code, enhanced, text, when };

export const REPLIES = {
  // Session
  greeting: entry(220, '', '{name} ESMTP {banner}', 'on connect'),
  ehlo: entry(250, '', '{name} Nice to meet you, {client}', 'EHLO/HELO (EHLO adds its extensions as more lines)'),
  heloSyntax: entry(501, '5.5.4', 'Syntax: {verb} hostname', 'EHLO/HELO without a name, or with spaces or control characters in it'),
  flushed: entry(250, '2.0.0', 'Flushed', 'RSET'),
  noop: entry(250, '2.0.0', 'OK', 'NOOP'),
  vrfy: entry(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery', 'VRFY'),
  help: entry(214, '2.0.0', 'See https://www.rfc-editor.org/rfc/rfc5321', 'HELP'),
  bye: entry(221, '2.0.0', 'Bye', 'QUIT'),
  unknownCommand: entry(500, '5.5.2', 'Error: command not recognized', 'a command Tern does not implement'),
  lineTooLong: entry(500, '5.5.2', 'Error: line too long', 'a command line over 4096 octets (its tail is dropped up to its LF)'),
  needHelo: entry(503, '5.5.1', 'Error: send HELO/EHLO first', 'MAIL or AUTH before EHLO/HELO'),
  // Envelope
  nestedMail: entry(503, '5.5.1', 'Error: nested MAIL command', 'MAIL inside a transaction'),
  mailSyntax: entry(501, '5.5.4', 'Syntax: MAIL FROM:<address>', 'MAIL without "FROM:" and a path'),
  rcptSyntax: entry(501, '5.5.4', 'Syntax: RCPT TO:<address>', 'RCPT without "TO:" and a non-empty path'),
  badAddress: entry(553, '5.1.3', 'Error: malformed address: {problem}', 'a MAIL/RCPT path with control characters, unbalanced or misplaced <>, or over 256 octets'),
  mailOk: entry(250, '2.1.0', 'Accepted', 'MAIL accepted'),
  needMail: entry(503, '5.5.1', 'Error: need MAIL command', 'RCPT or DATA outside a transaction'),
  tooManyRecipients: entry(452, '4.5.3', 'Error: too many recipients', 'RCPT past smtp.max_recipients (past smtp.limits.recipient_overshoot_limit more, each also counts as an error)'),
  rcptOk: entry(250, '2.1.5', 'Accepted', 'RCPT accepted'),
  invalidNotify: entry(501, '5.5.4', 'Error: invalid NOTIFY parameter', 'RCPT NOTIFY= not NEVER or a list of SUCCESS, FAILURE, DELAY'),
  unsupportedParameter: entry(555, '5.5.4', 'Error: unsupported parameter {parameter}', 'a MAIL/RCPT parameter Tern does not know (the name echoed sanitised)'),
  invalidSize: entry(501, '5.5.4', 'Error: invalid SIZE parameter', 'SIZE= not a number'),
  declaredTooBig: entry(552, '5.3.4', 'Error: message exceeds fixed maximum message size {limit}', 'SIZE= over smtp.max_message_size'),
  invalidBody: entry(501, '5.5.4', 'Error: BODY must be 7BIT or 8BITMIME', 'another BODY='),
  smtputf8Value: entry(501, '5.5.4', 'Error: SMTPUTF8 takes no value', 'SMTPUTF8=x'),
  invalidRet: entry(501, '5.5.4', 'Error: RET must be FULL or HDRS', 'another RET='),
  invalidEnvid: entry(501, '5.5.4', 'Error: invalid ENVID parameter', 'ENVID without a value'),
  // DATA
  needRcpt: entry(503, '5.5.1', 'Error: need RCPT command', 'DATA before an accepted RCPT'),
  startData: entry(354, '', 'End data with <CR><LF>.<CR><LF>', 'DATA accepted'),
  queued: entry(250, '2.0.0', 'Ok: queued as {id}', 'the message is on disk (fsynced)'),
  messageTooBig: entry(552, '5.3.4', 'Message size exceeds the fixed maximum of {limit} bytes', 'a message over smtp.max_message_size (read to its end, not kept)'),
  longLine: entry(550, '5.6.0', 'Message has a line longer than {limit} octets', 'a DATA line over smtp.limits.line_length (read to its end, not kept)'),
  nulInMessage: entry(550, '5.6.0', 'Message contains a NUL octet', 'a NUL byte anywhere in DATA (read to its end, not kept)'),
  messageRefused: entry(554, '5.6.0', 'Message refused: {problem}', 'a header block over smtp.limits.header_size'),
  badMeta: entry(554, '5.6.0', '{problem}', 'X-Tern-Meta is not a JSON object, appears twice, has a bad validity, or names a pool not in egress.pools'),
  storageFull: entry(452, '4.3.1', 'Insufficient system storage, try again later', 'MAIL or DATA while the spool is short of space or failing, or the event outbox is', true),
  localError: entry(451, '4.3.0', 'Local error in processing, try again later', 'an internal error (a hook that threw); a client that left mid-DATA', true),
  signingFailed: entry(451, '4.3.0', 'Local error in processing (signing), try again later', 'DKIM signing failed', true),
  // Policy (server.ts)
  authRequired: entry(530, '5.7.0', 'Authentication required', 'MAIL/RCPT from outside smtp.allow_networks without AUTH'),
  badSender: entry(553, '5.1.7', 'Bad sender address <{address}>: {problem}', 'a MAIL address that is not local-part@domain'),
  badRecipient: entry(553, '5.1.3', 'Bad recipient address <{address}>: {problem}', 'a RCPT address that is not local-part@domain, or an address literal'),
  returnUnknown: entry(550, '5.1.1', 'No such return address <{address}>', 'the bounce listener (bounce.listen): RCPT to an address that is not a return path Tern signed (forged, or another domain)'),
  returnReceived: entry(250, '2.0.0', 'Ok: returned message received', 'the bounce listener: a DSN, complaint or reply taken for processing'),
  suppressedBounce: entry(550, '5.1.1', 'Recipient <{address}> is suppressed for {domain} until {until}: it hard-bounced ({detail})', 'RCPT of an address on the suppression list after a hard bounce (suppression.enabled)'),
  suppressedComplaint: entry(550, '5.7.1', 'Recipient <{address}> is suppressed for {domain} until {until}: {detail}', 'RCPT of an address on the suppression list after a complaint, or added by an operator'),
  // STARTTLS
  tlsReady: entry(220, '2.0.0', 'Ready to start TLS', 'STARTTLS'),
  tlsUnavailable: entry(502, '5.5.1', 'Error: command not implemented', 'STARTTLS without smtp.tls'),
  tlsActive: entry(503, '5.5.1', 'Error: TLS already active', 'STARTTLS twice'),
  tlsSyntax: entry(501, '5.5.4', 'Syntax: STARTTLS', 'STARTTLS with an argument'),
  // AUTH
  alreadyAuthenticated: entry(503, '5.5.1', 'Error: already authenticated', 'a second AUTH'),
  authNotEnabled: entry(503, '5.5.1', 'Error: authentication not enabled', 'AUTH when not offered (no users, or before STARTTLS)'),
  authInTransaction: entry(503, '5.5.1', 'Error: not allowed during a mail transaction', 'AUTH after MAIL'),
  authMechanism: entry(504, '5.5.4', 'Error: unrecognized authentication type', 'AUTH other than PLAIN or LOGIN'),
  authPlainChallenge: entry(334, '', '', 'AUTH PLAIN without initial response'),
  authUsername: entry(334, '', 'VXNlcm5hbWU6', 'AUTH LOGIN ("Username:")'),
  authPassword: entry(334, '', 'UGFzc3dvcmQ6', 'AUTH LOGIN, after the user name ("Password:")'),
  authAborted: entry(501, '5.7.0', 'Authentication aborted', 'the client answered "*"'),
  authBadBase64: entry(501, '5.5.2', 'Error: invalid base64', 'an AUTH response that is not base64 (counts as a failed AUTH)'),
  authBadUserdata: entry(501, '5.5.2', 'Error: invalid userdata', 'AUTH PLAIN not authzid NUL authcid NUL password'),
  authInvalid: entry(535, '5.7.8', 'Authentication credentials invalid', 'wrong user name or password'),
  authOk: entry(235, '2.7.0', 'Authentication successful', 'AUTH succeeded'),
  // Closing
  tooManyClients: entry(421, '4.3.2', '{name} Too many connected clients, try again in a moment', 'a connection past smtp.max_clients (then cut off after 5 s)', true),
  tooManyFromAddress: entry(421, '4.7.0', '{name} Too many connections from your address', 'a connection past smtp.limits.client_connection_limit from one address'),
  connectionRate: entry(421, '4.7.0', '{name} Too many connections from your address, try again later', 'a connection past smtp.limits.client_connection_rate per minute from one address'),
  authLockedOut: entry(421, '4.7.0', '{name} Too many failed authentications from your address, try again later', 'AUTH from an address past smtp.limits.auth_failure_limit failures within auth_failure_window; the session is closed'),
  tooManyErrors: entry(421, '4.7.0', '{name} Too many errors, closing connection', 'smtp.limits.error_limit errors, or 3 failed AUTHs, in one session'),
  timeout: entry(421, '4.4.2', '{name} Error: timeout exceeded', 'smtp.timeout of silence (also mid-DATA or mid-handshake)'),
  sessionDeadline: entry(421, '4.4.2', '{name} Error: session time limit exceeded', 'a session older than smtp.limits.session_deadline (a transaction being answered is answered first)'),
  dataDeadline: entry(421, '4.4.2', '{name} Error: DATA time limit exceeded', 'DATA still unfinished after smtp.limits.data_deadline (nothing is kept)'),
  shutdown: entry(421, '4.3.2', '{name} Server shutting down', 'shutdown (a transaction being answered is answered first)', true),
} as const satisfies Record<string, ReplyEntry>;

export type ReplyKey = keyof typeof REPLIES;

/** Client text made safe to quote: no control characters (no CRLF injection), bounded length. */
export function sanitise(text: string, max = MAX_ECHO): string {
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/** The entry with its `{name}`s filled in (sanitised), its enhanced code in front. */
export function render(entry: ReplyEntry, vars: Readonly<Record<string, string | number>> = {}): SmtpRefusal {
  const text = entry.text.replace(/\{(\w+)\}/g, (_, name: string) => sanitise(String(vars[name] ?? '')));
  const full = (entry.enhanced === '' ? text : `${entry.enhanced} ${text}`).trimEnd();
  return entry.serverFault ? { code: entry.code, text: full, serverFault: true } : { code: entry.code, text: full };
}

/** A refusal the client is to blame for: counts towards smtp.limits.error_limit. */
export function provokedByClient(reply: SmtpRefusal): boolean {
  return reply.code >= 400 && reply.serverFault !== true;
}
