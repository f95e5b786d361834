import type { QualifiedRecipient } from '../model/bounce.ts';
import type { FeedbackEvent } from '../model/event.ts';
import type { QueueId } from '../model/ids.ts';
import { domainOf } from '../model/envelope.ts';
import type { SentRecipient } from './ledger.ts';

/** One recipient a returned message reports on, as src/bounce qualifies it. */
export type ReturnedRecipient = QualifiedRecipient;

/** What became of one recipient of a returned message: counted in tern_returns_total. */
export type ReturnResult = 'failed' | 'complaint' | 'autoreply' | 'not-failure' | 'unmatched';

export interface Returned {
  readonly events: FeedbackEvent[];
  readonly results: ReturnResult[];
  /** Complainers, for the suppression list: (sender domain, address). */
  readonly complainers: { readonly domain: string; readonly address: string }[];
}

/** DSN Actions that report success or progress, not a failure (RFC 3464 §2.3.3). */
const NOT_FAILURES = new Set(['delayed', 'delivered', 'relayed', 'expanded']);

/**
 * A message sent back to a return path (its queue id and recipient index checked already),
 * turned into events: a `failed` with `async: true` for each recipient it says failed, a
 * `complaint` for each feedback report. Each is about a recipient Tern delivered (the sent
 * ledger); one it cannot place is counted unmatched and dropped.
 */
export function eventsOfReturn(target: { queueId: QueueId; index: number }, sent: readonly SentRecipient[], found: readonly ReturnedRecipient[], now: number): Returned {
  const out: Returned = { events: [], results: [], complainers: [] };
  const byAddress = new Map(sent.map((s) => [s.recipient.toLowerCase(), s]));
  // A report that names nobody Tern knows is about the recipient the return path was made for.
  const placed = (address: string): SentRecipient | undefined => byAddress.get(address.toLowerCase()) ?? sent.find((s) => s.index === target.index);
  for (const f of found) {
    if (f.kind === 'autoreply') {
      out.results.push('autoreply');
      continue;
    }
    const to = f.kind === 'unknown' ? undefined : placed(f.recipient);
    if (!to) {
      out.results.push('unmatched');
      continue;
    }
    if (f.kind === 'arf') {
      out.events.push(complaintEvent(to, f, now));
      out.complainers.push({ domain: domainOf(to.sender), address: to.recipient });
      out.results.push('complaint');
      continue;
    }
    if (f.action && NOT_FAILURES.has(f.action)) {
      out.results.push('not-failure');
      continue;
    }
    out.events.push(failedEvent(to, f, now));
    out.results.push('failed');
  }
  return out;
}

function base(to: SentRecipient, now: number) {
  return { queue_id: to.queue_id, message_id: to.message_id, sender: to.sender, recipient: to.recipient, meta: to.meta, time: new Date(now).toISOString() };
}

function failedEvent(to: SentRecipient, f: ReturnedRecipient, now: number): FeedbackEvent {
  const text = f.diagnostic ?? (f.status ? `${f.status} ${f.reason}` : f.reason);
  return {
    id: `${to.queue_id}.${to.index}.a`, type: 'failed', status: 'failed', ...base(to, now), async: true, cause: 'bounce',
    response: { code: f.reply_code ?? (f.status?.startsWith('4') ? 450 : 550), ...(f.status ? { enhanced: f.status } : {}), text: `returned after delivery: ${text}` },
    bounce: { class: f.class ?? 1, reason: f.reason, category: f.category ?? 'undetermined', type: f.type, failure: f.failure },
  };
}

function complaintEvent(to: SentRecipient, f: ReturnedRecipient, now: number): FeedbackEvent {
  return { id: `${to.queue_id}.${to.index}.c`, type: 'complaint', status: 'sent', ...base(to, now), ...(f.feedback_type ? { feedback_type: f.feedback_type } : {}) };
}
