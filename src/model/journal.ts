import type { SmtpReply } from './reply.ts';

/**
 * One decision about one recipient, as the spool journals it. Only "final" ends a recipient:
 * anything without a final record is still owed delivery.
 */
export type JournalRecord =
  /** `p`: the delivery path the recipient waits for, so a restart knows it before the next attempt. */
  | { readonly t: 'retry'; readonly r: number; readonly n: number; readonly next: number; readonly reply?: SmtpReply; readonly p?: string }
  | { readonly t: 'final'; readonly r: number; readonly n: number; readonly v: 'delivered' | 'failed'; readonly reply?: SmtpReply; readonly cause?: string };
