import type { Classifier } from '../classify.ts';
import { CAMPAIGN_FAILURE, REASON_TABLE } from '../reasons.ts';
import { readBounceMessage, type FoundRecipient, type MessageKind } from './read.ts';

/** One recipient of a bounce, complaint or auto-reply, qualified (BRIEF §3, `tern classify --message`). */
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

/**
 * Every recipient a message reports on, through the same classifier as replies at delivery:
 * a DSN's Diagnostic-Code (or its Status alone), the prose about a recipient, and so on.
 * Complaints are `feedback`; automatic replies are `vacation` and never count as bounces.
 */
export function qualifyMessage(raw: Buffer, classify: Classifier): QualifiedRecipient[] {
  return readBounceMessage(raw).map((found) => qualify(found, classify));
}

function qualify(found: FoundRecipient, classify: Classifier): QualifiedRecipient {
  const base = { kind: found.kind, recipient: found.recipient, status: found.status ?? null, reply_code: found.replyCode ?? null, ...(found.action ? { action: found.action } : {}) };
  // A complaint is the recipient saying no: the campaign side files it as Refused.
  if (found.kind === 'arf') return { ...base, reason: 'feedback', class: null, type: 'ignored', failure: 'Refused', ...(found.feedbackType ? { feedback_type: found.feedbackType } : {}) };
  if (found.kind === 'autoreply') return { ...base, reason: 'vacation', class: REASON_TABLE.vacation.class, type: REASON_TABLE.vacation.type, failure: CAMPAIGN_FAILURE.vacation };
  if (found.kind === 'unknown') return { ...base, reason: 'undefined', class: REASON_TABLE.undefined.class, type: REASON_TABLE.undefined.type, failure: CAMPAIGN_FAILURE.undefined };
  // A DSN's Status is the reporting MTA's verdict: permanent (5.x.x) or not, whatever the reply quoted.
  const code = found.replyCode ?? (found.status ? Number(found.status[0]) * 100 + 50 : undefined);
  const c = classify({ ...(code ? { code } : {}), ...(found.status ? { enhanced: found.status } : {}), ...(found.stage ? { stage: found.stage } : {}), text: found.text });
  return { ...base, reason: c.reason, class: c.class, type: c.type, failure: c.failure, category: c.category, ...(found.text ? { diagnostic: found.text.slice(0, 300) } : {}) };
}
