/**
 * The classification vocabulary: sisimai's reasons (the labelled corpus speaks it), Momentum's
 * bounce classes (what Adobe Campaign and SparkPost users know), and the campaign-side type.
 */
import type { CampaignFailure } from '../model/bounce.ts';

export const REASONS = [
  'userunknown', 'hostunknown', 'hasmoved', 'notaccept', 'suspend', 'mailboxfull', 'mesgtoobig', 'exceedlimit',
  'expired', 'networkerror', 'systemerror', 'systemfull', 'mailererror', 'toomanyconn', 'speeding', 'blocked',
  'rejected', 'norelaying', 'spamdetected', 'badreputation', 'requireptr', 'authfailure', 'securityerror',
  'policyviolation', 'contenterror', 'virusdetected', 'notcompliantrfc', 'filtered', 'failedstarttls',
  'syntaxerror', 'vacation', 'onhold', 'undefined',
] as const;
export type Reason = (typeof REASONS)[number];

export type Category = 'undetermined' | 'hard' | 'soft' | 'block' | 'admin';
/** hard: the address is bad (quarantine it); ignored: about the sender or the message, not the address. */
export type FailureType = 'hard' | 'soft' | 'ignored';

export const CLASSES: Readonly<Record<number, { readonly name: string; readonly category: Category }>> = {
  1: { name: 'Undetermined', category: 'undetermined' },
  10: { name: 'Invalid Recipient', category: 'hard' },
  20: { name: 'Soft Bounce', category: 'soft' },
  21: { name: 'DNS Failure', category: 'soft' },
  22: { name: 'Mailbox Full', category: 'soft' },
  23: { name: 'Too Large', category: 'soft' },
  24: { name: 'Timeout', category: 'soft' },
  25: { name: 'Admin Failure', category: 'admin' },
  30: { name: 'Generic Bounce: No RCPT', category: 'hard' },
  40: { name: 'Generic Bounce', category: 'soft' },
  50: { name: 'Mail Block', category: 'block' },
  51: { name: 'Spam Block', category: 'block' },
  52: { name: 'Spam Content', category: 'block' },
  53: { name: 'Prohibited Attachment', category: 'block' },
  54: { name: 'Relaying Denied', category: 'block' },
  60: { name: 'Auto-Reply', category: 'soft' },
  70: { name: 'Transient Failure', category: 'soft' },
  80: { name: 'Subscribe', category: 'admin' },
  90: { name: 'Unsubscribe', category: 'hard' },
  100: { name: 'Challenge-Response', category: 'soft' },
};

/** Each reason's Momentum class and campaign-side type (docs/bounces.md has the table). */
export const REASON_TABLE: Readonly<Record<Reason, { readonly class: number; readonly type: FailureType }>> = {
  userunknown: { class: 10, type: 'hard' },
  hostunknown: { class: 10, type: 'hard' },
  hasmoved: { class: 10, type: 'hard' },
  notaccept: { class: 10, type: 'hard' },
  suspend: { class: 20, type: 'soft' },
  mailboxfull: { class: 22, type: 'soft' },
  mesgtoobig: { class: 23, type: 'ignored' },
  exceedlimit: { class: 23, type: 'ignored' },
  expired: { class: 24, type: 'soft' },
  networkerror: { class: 21, type: 'soft' },
  systemerror: { class: 20, type: 'soft' },
  systemfull: { class: 20, type: 'soft' },
  mailererror: { class: 20, type: 'soft' },
  filtered: { class: 20, type: 'soft' },
  toomanyconn: { class: 70, type: 'ignored' },
  speeding: { class: 70, type: 'ignored' },
  blocked: { class: 50, type: 'ignored' },
  rejected: { class: 50, type: 'ignored' },
  requireptr: { class: 50, type: 'ignored' },
  authfailure: { class: 50, type: 'ignored' },
  securityerror: { class: 50, type: 'ignored' },
  policyviolation: { class: 50, type: 'ignored' },
  failedstarttls: { class: 50, type: 'ignored' },
  badreputation: { class: 51, type: 'ignored' },
  spamdetected: { class: 52, type: 'ignored' },
  contenterror: { class: 52, type: 'ignored' },
  notcompliantrfc: { class: 52, type: 'ignored' },
  virusdetected: { class: 53, type: 'ignored' },
  norelaying: { class: 54, type: 'ignored' },
  syntaxerror: { class: 40, type: 'ignored' },
  vacation: { class: 60, type: 'ignored' },
  onhold: { class: 1, type: 'soft' },
  undefined: { class: 1, type: 'soft' },
};

export const isReason = (value: string): value is Reason => (REASONS as readonly string[]).includes(value);

/**
 * Each reason as the campaign tool files it (docs/bounces.md, "Campaign failure reasons"): the
 * address is wrong (User unknown, Invalid domain), its mailbox cannot take mail now (Mailbox
 * full) or any more (Account disabled), the receiver refused the sender or the message (Refused),
 * it could not be reached (Unreachable), the message was too big (Text too long), or the reply
 * says nothing about the address (Ignored).
 */
export const CAMPAIGN_FAILURE: Readonly<Record<Reason | 'admin', CampaignFailure>> = {
  userunknown: 'User unknown', hasmoved: 'User unknown', hostunknown: 'Invalid domain', notaccept: 'Invalid domain',
  mailboxfull: 'Mailbox full', suspend: 'Account disabled',
  mesgtoobig: 'Text too long', exceedlimit: 'Text too long',
  expired: 'Unreachable', networkerror: 'Unreachable', systemerror: 'Unreachable', systemfull: 'Unreachable', mailererror: 'Unreachable',
  toomanyconn: 'Unreachable', speeding: 'Unreachable',
  blocked: 'Refused', rejected: 'Refused', norelaying: 'Refused', spamdetected: 'Refused', badreputation: 'Refused', requireptr: 'Refused',
  authfailure: 'Refused', securityerror: 'Refused', policyviolation: 'Refused', contenterror: 'Refused', virusdetected: 'Refused',
  notcompliantrfc: 'Refused', filtered: 'Refused', failedstarttls: 'Refused',
  syntaxerror: 'Ignored', vacation: 'Ignored', onhold: 'Ignored', undefined: 'Ignored', admin: 'Ignored',
};
