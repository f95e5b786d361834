/**
 * Tern's SMTP listener protocol (RFC 5321 with PIPELINING, 8BITMIME, SMTPUTF8, SIZE, DSN,
 * ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN/LOGIN): the part of SMTP a submission relay
 * speaks, and nothing else (ADR 0008). Policy (who may relay, which addresses are good, what
 * happens to the message) lives in the hooks; `smtp/` owns the wire:
 *
 * - listener.ts: the listening socket and admission (max_clients, per-address limits, anvil.ts)
 * - connection.ts: one session's state machine and per-session limits
 * - data-feed.ts: DATA unstuffing, the terminator, size/NUL/line-length judgement
 * - parse.ts, sasl.ts: paths and parameters; AUTH PLAIN/LOGIN
 * - limits.ts, replies.ts: every limit and every reply, each in one catalogue
 *
 * This file is the public surface.
 */
export { SmtpServer } from './smtp/listener.ts';
export { DataStream } from './smtp/data-feed.ts';
export { DEFAULT_LIMITS, type SmtpLimits } from './smtp/limits.ts';
export { parsePath, type SessionEnvelope, type SmtpAddress } from './smtp/parse.ts';
export { REPLIES, render, sanitise, type ReplyEntry, type SmtpRefusal } from './smtp/replies.ts';
export type { SmtpHooks, SmtpServerOptions, SmtpSession } from './smtp/session.ts';
import { REPLIES, render, type ReplyEntry, type SmtpRefusal } from './smtp/replies.ts';

export const LOCAL_ERROR: SmtpRefusal = render(REPLIES.localError);

/** A refusal from the catalogue (kept for the hooks' convenience). */
export const refusal = (entry: ReplyEntry, vars?: Readonly<Record<string, string | number>>): SmtpRefusal => render(entry, vars);
