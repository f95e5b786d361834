import type { BounceClassification } from '../model/bounce.ts';
import type { FailureCause } from '../model/event.ts';
import type { AttemptOutcome, HoldReason } from '../model/outcome.ts';
import { isSuccess, localReply, type SmtpReply } from '../model/reply.ts';
import { nextAttempt, type RetryPolicy } from './retry.ts';

/** What happens to one recipient after one attempt. */
export type Verdict =
  | { readonly kind: 'delivered'; readonly reply: SmtpReply }
  /** counts: false when no attempt was used up (too many recipients, or `held`: the path took no mail). */
  | { readonly kind: 'retry'; readonly at: number; readonly reply: SmtpReply; readonly counts: boolean; readonly bounce: BounceClassification; readonly held?: HoldReason; readonly heldIn?: string }
  | { readonly kind: 'failed'; readonly cause: FailureCause; readonly reply: SmtpReply; readonly bounce: BounceClassification };

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
  /** The bounce classifier: its `retry` decides between trying again and failing now. */
  readonly classify: (reply: SmtpReply) => BounceClassification;
}

export function decide(policy: RetryPolicy, input: DecideInput): Verdict {
  const { reply } = input;
  if (isSuccess(reply)) return { kind: 'delivered', reply };
  const bounce = input.classify(reply);
  if (isTooManyRecipients(reply) && input.siblingAccepted) return { kind: 'retry', at: input.now, reply, counts: false, bounce };
  if (!bounce.retry) return { kind: 'failed', cause: 'bounce', reply, bounce };
  const next = nextAttempt(policy, { attempt: input.attempt, now: input.now, expiresAt: input.expiresAt, random: input.random });
  if (next.kind === 'expire') {
    const expired = expiredReply(reply);
    return { kind: 'failed', cause: 'expired', reply: expired, bounce: input.classify(expired) };
  }
  return { kind: 'retry', at: next.at, reply, counts: true, bounce };
}

export function expiredReply(last: SmtpReply | undefined): SmtpReply {
  const detail = last ? `; last reply: ${[last.code, last.enhanced, last.text].filter(Boolean).join(' ')}` : '';
  return localReply(554, '5.4.7', `validity period expired${detail}`, 'QUEUE');
}

/**
 * An outcome in which no attempt was made: the path was paused or full (wait until then, or
 * until validity ends, whichever is first, attempts untouched), or an adaptive rule fails its
 * mail. Undefined for outcomes that are attempts.
 */
export function verdictWithoutAttempt(outcome: AttemptOutcome, input: Pick<DecideInput, 'expiresAt' | 'classify'> & { readonly notBefore?: number }): Verdict | undefined {
  if (outcome.kind === 'held') {
    const at = Math.min(Math.max(outcome.until, input.notBefore ?? 0), input.expiresAt);
    return { kind: 'retry', at, reply: outcome.reply, counts: false, bounce: input.classify(outcome.reply), held: outcome.reason, ...(outcome.heldIn ? { heldIn: outcome.heldIn } : {}) };
  }
  if (outcome.kind === 'path-failed') return { kind: 'failed', cause: 'adaptive', reply: outcome.reply, bounce: input.classify(outcome.reply) };
  return undefined;
}

/** Per-recipient replies of an outcome, in job order. */
export function outcomeReplies(outcome: AttemptOutcome, count: number): readonly SmtpReply[] {
  return outcome.kind === 'transaction' ? outcome.replies : Array.from({ length: count }, () => outcome.reply);
}
