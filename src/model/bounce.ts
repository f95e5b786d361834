/**
 * How a failed attempt is qualified (src/bounce makes these; docs/bounces.md). Lives in model so
 * the queue can carry it to logs, metrics and events without knowing the classifier.
 */
export interface BounceClassification {
  /** sisimai vocabulary: userunknown, mailboxfull, blocked, expired, ... */
  readonly reason: string;
  /** Momentum bounce class: 10 Invalid Recipient, 22 Mailbox Full, 50 Mail Block, ... */
  readonly class: number;
  readonly category: 'undetermined' | 'hard' | 'soft' | 'block' | 'admin';
  /** Campaign side: hard quarantines the address; ignored is about the sender or the message. */
  readonly type: 'hard' | 'soft' | 'ignored';
  readonly retry: boolean;
  /** What decided: a rule id, `enhanced:X.Y.Z` or `code:NNN`. */
  readonly rule: string;
  readonly mismatch?: string;
}
