import type { SmtpReply } from './reply.ts';
import type { AppliedTlsPolicy, TlsFailureType } from './tls-policy.ts';

/** The TLS session a connection negotiated: `verified` when the certificate chained to a trusted CA and named the MX host. */
export interface TlsInfo {
  readonly version: string;
  readonly cipher: string;
  readonly verified: boolean;
  /** Not verified: why (RFC 8460's terms), for a receiver's policy. */
  readonly failure?: TlsFailureType;
}

/** Where an attempt went, for logs and events. */
export interface Route {
  readonly mx?: string;
  readonly remoteIp?: string;
  readonly sourceIp?: string;
  /** Absent: the connection was plaintext (or none was made). */
  readonly tls?: TlsInfo;
  /** A connection that failed for TLS: why, in RFC 8460's terms. */
  readonly tlsFailure?: TlsFailureType;
  /** The receiver's TLS policy (or the path's level) and whether the session met it (docs/tls.md). */
  readonly tlsPolicy?: AppliedTlsPolicy;
  /** The delivery path (source, site[, domain]) and its provider, for the queue's per-path counts and metrics. */
  readonly path?: string;
  readonly provider?: string;
  /** The egress pool the mail asked for (or the default) and the source drawn from it. */
  readonly pool?: string;
  readonly source?: string;
}

/** Why mail waits without an attempt: its path is paused, or already has all the mail it can send soon, or an operator suspended its destination, or every source of its pool has sent its warm-up cap today. */
export type HoldReason = 'paused' | 'ready-queue-full' | 'suspended' | 'warmup';

/**
 * What delivery reports: a value with a scope, never an exception. The queue decides what to do.
 * - transaction: the server answered each recipient (replies align with the job's recipients);
 * - message-refused: MAIL FROM or DATA failed, so one reply covers every recipient;
 * - site-unreachable: DNS, connect, greeting or TLS trouble before any transaction;
 * - held: no attempt was made (the path is paused, or its ready queue is full): wait until `until`,
 *   using up neither an attempt nor the retry back-off;
 * - path-failed: an adaptive rule fails the path's mail (cause "adaptive"), with the reply that made it.
 */
export type AttemptOutcome =
  | { readonly kind: 'transaction'; readonly route: Route; readonly replies: readonly SmtpReply[] }
  | { readonly kind: 'message-refused'; readonly route: Route; readonly reply: SmtpReply }
  | { readonly kind: 'site-unreachable'; readonly route: Route; readonly reply: SmtpReply }
  /** `drainPerSecond`: how fast the path takes mail now, so the queue can put held mail behind what already waits. */
  /** `heldIn`: the queue's held list it waits in, when not its path's (a suspension's). */
  | { readonly kind: 'held'; readonly route: Route; readonly reply: SmtpReply; readonly until: number; readonly reason: HoldReason; readonly drainPerSecond?: number; readonly heldIn?: string }
  | { readonly kind: 'path-failed'; readonly route: Route; readonly reply: SmtpReply; readonly rule: string };
