import type { SmtpReply } from './reply.ts';

/** Where an attempt went, for logs and events. */
export interface Route {
  readonly mx?: string;
  readonly remoteIp?: string;
  readonly sourceIp?: string;
  readonly tls?: boolean;
}

/**
 * What delivery reports: a value with a scope, never an exception. The queue decides what to do.
 * - transaction: the server answered each recipient (replies align with the job's recipients);
 * - message-refused: MAIL FROM or DATA failed, so one reply covers every recipient;
 * - site-unreachable: DNS, connect, greeting or TLS trouble before any transaction.
 */
export type AttemptOutcome =
  | { readonly kind: 'transaction'; readonly route: Route; readonly replies: readonly SmtpReply[] }
  | { readonly kind: 'message-refused'; readonly route: Route; readonly reply: SmtpReply }
  | { readonly kind: 'site-unreachable'; readonly route: Route; readonly reply: SmtpReply };
