import type { Classifier } from '../classify.ts';
import { CAMPAIGN_FAILURE, REASON_TABLE } from '../reasons.ts';
import type { QualifiedRecipient } from '../../model/bounce.ts';
import { readBounceMessage, type FoundRecipient } from './read.ts';

export type { QualifiedRecipient };


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
  // A report of success (a DSN asked for with NOTIFY=SUCCESS, an SES Delivery) is no bounce.
  if (found.action === 'delivered' || found.status?.startsWith('2.')) return { ...base, reason: 'delivered', class: null, type: 'ignored', failure: 'Ignored' };
  if (found.kind === 'unknown') return { ...base, reason: 'undefined', class: REASON_TABLE.undefined.class, type: REASON_TABLE.undefined.type, failure: CAMPAIGN_FAILURE.undefined };
  // A DSN's Status is the reporting MTA's verdict: permanent (5.x.x) or not, whatever the reply quoted.
  const code = found.replyCode ?? (found.status ? Number(found.status[0]) * 100 + 50 : undefined);
  const c = classify({ ...(code ? { code } : {}), ...(found.status ? { enhanced: found.status } : {}), ...(found.stage ? { stage: found.stage } : {}), text: found.text });
  return { ...base, reason: c.reason, class: c.class, type: c.type, failure: c.failure, category: c.category, ...(found.text ? { diagnostic: found.text.slice(0, 300) } : {}) };
}
