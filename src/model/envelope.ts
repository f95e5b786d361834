import type { QueueId } from './ids.ts';
import type { SmtpReply } from './reply.ts';

export interface EnvelopeRecipient {
  readonly address: string;
  /** DSN ORCPT as given by the client ("rfc822;user@example.com"). */
  readonly orcpt?: string;
  readonly notify?: readonly string[];
}

/** Everything Tern knows about an accepted message except its body; stored with it. */
export interface Envelope {
  readonly id: QueueId;
  readonly sender: string;
  readonly recipients: readonly EnvelopeRecipient[];
  readonly messageId: string;
  readonly meta: Readonly<Record<string, unknown>>;
  readonly envid?: string;
  readonly ret?: string;
  readonly receivedAt: number;
  readonly expiresAt: number;
  readonly smtputf8: boolean;
  readonly eightBit: boolean;
  readonly client: { readonly ip: string; readonly helo: string; readonly user?: string };
  readonly bodySize: number;
  /** Header lines (DKIM-Signature) made at acceptance, sent before the stored bytes. */
  readonly prepend?: string;
}

/** Per-recipient progress; absent means "never tried". */
export interface RecipientState {
  attempts: number;
  nextAt: number;
  lastReply?: SmtpReply;
  /** The delivery path of the last attempt (shaping's key), when there was one. */
  path?: string;
  final?: 'delivered' | 'failed';
}

/** The lower-case domain of an address ("" for the null sender). */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
