import type { AttemptOutcome } from '../model/outcome.ts';
import { isSuccess, isTransient, localReply, type SmtpReply } from '../model/reply.ts';
import { nextAttempt, type RetryPolicy } from './retry.ts';

/** What happens to one recipient after one attempt. */
export type Verdict =
  | { readonly kind: 'delivered'; readonly reply: SmtpReply }
  | { readonly kind: 'retry'; readonly at: number; readonly reply: SmtpReply; readonly counts: boolean }
  | { readonly kind: 'failed'; readonly cause: 'bounce' | 'expired' | 'admin'; readonly reply: SmtpReply };

/**
 * RFC 5321 §4.5.3.1.10: "552 too many recipients" at RCPT is really transient, and so is 452
 * 4.5.3. When other recipients of the same transaction got through, the rest go again at once
 * in a new transaction instead of waiting a whole retry period.
 */
export function isTooManyRecipients(reply: SmtpReply): boolean {
  if (reply.command !== 'RCPT') return false;
  return reply.enhanced === '4.5.3' || reply.enhanced === '5.5.3' || ((reply.code === 452 || reply.code === 552) && /too many recipients/i.test(reply.text));
}

export interface DecideInput {
  readonly reply: SmtpReply;
  /** Attempts made so far, including this one. */
  readonly attempt: number;
  readonly now: number;
  readonly expiresAt: number;
  readonly random: number;
  /** Another recipient of the same transaction was accepted. */
  readonly siblingAccepted: boolean;
}

export function decide(policy: RetryPolicy, input: DecideInput): Verdict {
  const { reply } = input;
  if (isSuccess(reply)) return { kind: 'delivered', reply };
  const tooMany = isTooManyRecipients(reply);
  if (tooMany && input.siblingAccepted) return { kind: 'retry', at: input.now, reply, counts: false };
  if (!isTransient(reply) && !tooMany) return { kind: 'failed', cause: 'bounce', reply };
  const next = nextAttempt(policy, { attempt: input.attempt, now: input.now, expiresAt: input.expiresAt, random: input.random });
  if (next.kind === 'expire') return { kind: 'failed', cause: 'expired', reply: expiredReply(reply) };
  return { kind: 'retry', at: next.at, reply, counts: true };
}

export function expiredReply(last: SmtpReply | undefined): SmtpReply {
  const detail = last ? `; last reply: ${[last.code, last.enhanced, last.text].filter(Boolean).join(' ')}` : '';
  return localReply(554, '4.4.7', `validity period expired${detail}`, 'QUEUE');
}

/** Per-recipient replies of an outcome, in job order. */
export function outcomeReplies(outcome: AttemptOutcome, count: number): readonly SmtpReply[] {
  return outcome.kind === 'transaction' ? outcome.replies : Array.from({ length: count }, () => outcome.reply);
}
