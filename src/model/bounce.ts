/**
 * How a failed attempt is qualified (src/bounce makes these; docs/bounces.md). Lives in model so
 * the queue can carry it to logs, metrics and events without knowing the classifier.
 */
/**
 * The failure reasons a campaign tool files bounces under (Adobe Campaign's delivery failure
 * reasons; docs/bounces.md has the mapping from each reason). "Not connected" belongs to mobile
 * channels: no email failure maps to it.
 */
export const CAMPAIGN_FAILURES = ['User unknown', 'Invalid domain', 'Mailbox full', 'Inactive mailbox', 'Account disabled', 'Not connected', 'Refused', 'Unreachable', 'Text too long', 'Ignored'] as const;
export type CampaignFailure = (typeof CAMPAIGN_FAILURES)[number];

export interface BounceClassification {
  /** sisimai vocabulary: userunknown, mailboxfull, blocked, expired, ... */
  readonly reason: string;
  /** Momentum bounce class: 10 Invalid Recipient, 22 Mailbox Full, 50 Mail Block, ... */
  readonly class: number;
  readonly category: 'undetermined' | 'hard' | 'soft' | 'block' | 'admin';
  /** Campaign side: hard quarantines the address; ignored is about the sender or the message. */
  readonly type: 'hard' | 'soft' | 'ignored';
  /** The campaign side's failure reason: User unknown, Mailbox full, Refused, ... */
  readonly failure: CampaignFailure;
  readonly retry: boolean;
  /** What decided: a rule id, `enhanced:X.Y.Z` or `code:NNN`. */
  readonly rule: string;
  readonly mismatch?: string;
}

/** How a returned message was read (src/bounce/message): a DSN, prose from an MTA, a complaint, an auto-reply, or none of these. */
export type MessageKind = 'dsn' | 'nonstandard' | 'arf' | 'autoreply' | 'unknown';

/**
 * One recipient of a bounce, complaint or auto-reply, qualified (BRIEF §3, `tern classify
 * --message`); in model because the returns stage turns these into events.
 */
export interface QualifiedRecipient {
  readonly kind: MessageKind;
  readonly recipient: string;
  readonly status: string | null;
  readonly reply_code: number | null;
  readonly reason: string;
  readonly class: number | null;
  readonly type: string;
  /** The campaign side's failure reason (User unknown, Mailbox full, Refused, ...). */
  readonly failure: string;
  readonly category?: string;
  /** A DSN's Action (failed, delayed, delivered, relayed, expanded). */
  readonly action?: string;
  /** The receiver's words the reason was read from (at most 300 characters). */
  readonly diagnostic?: string;
  readonly feedback_type?: string;
}
