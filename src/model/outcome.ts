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

export function repliesOf(outcome: AttemptOutcome, count: number): readonly SmtpReply[] {
  switch (outcome.kind) {
    case 'transaction':
      return outcome.replies;
    case 'message-refused':
    case 'site-unreachable':
      return Array.from({ length: count }, () => outcome.reply);
    default:
      return assertNever(outcome);
  }
}

export function assertNever(x: never): never {
  throw new Error(`unhandled: ${JSON.stringify(x)}`);
}

/** Closed set of reasons a recipient waits; doubles as a bounded metric label. */
export const DELAY_REASONS = [
  'transient-failure',
  'site-unreachable',
  'dns-temporary',
  'too-many-recipients',
  'restart-recovery',
  'watchdog',
] as const;
export type DelayReason = (typeof DELAY_REASONS)[number];
