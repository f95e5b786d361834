import type { BounceClassification } from './bounce.ts';
import type { Envelope } from './envelope.ts';
import type { Route } from './outcome.ts';
import type { SmtpReply } from './reply.ts';
import type { AppliedTlsPolicy } from './tls-policy.ts';

/** complaint: the recipient reported the message (a feedback loop's ARF report; docs/bounces.md). */
export type EventType = 'relayed' | 'delivered' | 'soft_bounce' | 'failed' | 'complaint';
/** Why a recipient failed: the receiver said so, its validity ran out, an operator, or an adaptive rule failing its path's mail. */
export type FailureCause = 'bounce' | 'expired' | 'admin' | 'adaptive';
export type DeliveryStatus = 'taken_into_account' | 'sent' | 'failed';

/**
 * One step of a recipient's life cycle (BRIEF §2–3), as the webhook receives it. Ids are
 * deterministic — `<queue id>.<recipient index>.<r|f|sN>` — so an event re-sent after a crash
 * carries the id the receiver already saw and can be dropped.
 */
export interface FeedbackEvent {
  readonly id: string;
  readonly type: EventType;
  readonly status: DeliveryStatus;
  readonly time: string;
  readonly queue_id: string;
  readonly message_id: string;
  readonly sender: string;
  readonly recipient: string;
  readonly meta: Readonly<Record<string, unknown>>;
  readonly envid?: string;
  readonly orcpt?: string;
  readonly attempt?: number;
  readonly mx?: string;
  readonly remote_ip?: string;
  readonly source_ip?: string;
  /** The egress pool the attempt was sent from (docs/egress.md). */
  readonly pool?: string;
  /** The TLS session the attempt went over; absent when it went in plaintext. */
  readonly tls?: { readonly version: string; readonly cipher: string; readonly verified: boolean };
  /** The receiver's TLS policy applied (mta-sts, dane), or the path's TLS level where it has none; with the result (docs/tls.md). */
  readonly tls_policy?: AppliedTlsPolicy;
  readonly response?: { readonly code: number; readonly enhanced?: string; readonly text: string };
  readonly bounce?: { readonly class: number; readonly reason: string; readonly category: string; readonly type: string; readonly failure: string };
  readonly cause?: FailureCause;
  /** A `failed` that came back after the receiver said 250 (a DSN): the recipient's `delivered` stands corrected. */
  readonly async?: true;
  /** A complaint's ARF Feedback-Type: abuse, fraud, virus, opt-out, not-spam, auth-failure, other. */
  readonly feedback_type?: string;
  /** In a fleet (cluster.redis), the node that recorded the event (cluster.node). */
  readonly node?: string;
}

/** The decision about one recipient that an event reports. */
export type RecipientFate =
  | { readonly kind: 'delivered'; readonly reply: SmtpReply }
  | { readonly kind: 'retry'; readonly reply: SmtpReply; readonly bounce: BounceClassification }
  | { readonly kind: 'failed'; readonly cause: FailureCause; readonly reply: SmtpReply; readonly bounce: BounceClassification };

function base(envelope: Envelope, index: number, time: number): Omit<FeedbackEvent, 'id' | 'type' | 'status'> {
  const recipient = envelope.recipients[index];
  return {
    time: new Date(time).toISOString(),
    queue_id: envelope.id,
    message_id: envelope.messageId,
    sender: envelope.sender,
    recipient: recipient?.address ?? '',
    meta: envelope.meta,
    ...(envelope.envid ? { envid: envelope.envid } : {}),
    ...(recipient?.orcpt ? { orcpt: recipient.orcpt } : {}),
  };
}

export function relayedEvents(envelope: Envelope, time: number): FeedbackEvent[] {
  return envelope.recipients.map((_, index) => ({ id: `${envelope.id}.${index}.r`, type: 'relayed', status: 'taken_into_account', ...base(envelope, index, time) }));
}

export function fateEvent(envelope: Envelope, index: number, attempt: number, fate: RecipientFate, route: Route, time: number): FeedbackEvent {
  const response = { code: fate.reply.code, ...(fate.reply.enhanced ? { enhanced: fate.reply.enhanced } : {}), text: fate.reply.text };
  const where = {
    attempt,
    ...(route.mx ? { mx: route.mx } : {}),
    ...(route.remoteIp ? { remote_ip: route.remoteIp } : {}),
    ...(route.sourceIp ? { source_ip: route.sourceIp } : {}),
    ...(route.pool ? { pool: route.pool } : {}),
    ...(route.tls ? { tls: { version: route.tls.version, cipher: route.tls.cipher, verified: route.tls.verified } } : {}),
    ...(route.tlsPolicy ? { tls_policy: route.tlsPolicy } : {}),
    response,
  };
  if (fate.kind === 'delivered') return { id: `${envelope.id}.${index}.f`, type: 'delivered', status: 'sent', ...base(envelope, index, time), ...where };
  const { reason, class: klass, category, type, failure } = fate.bounce;
  const bounce = { class: klass, reason, category, type, failure };
  if (fate.kind === 'retry') {
    return { id: `${envelope.id}.${index}.s${attempt}`, type: 'soft_bounce', status: 'taken_into_account', ...base(envelope, index, time), ...where, bounce };
  }
  return { id: `${envelope.id}.${index}.f`, type: 'failed', status: 'failed', ...base(envelope, index, time), ...where, bounce, cause: fate.cause };
}

/** The recipient's index in its message, from an event's id (`<queue id>.<index>.<kind>`). */
export const recipientIndexOf = (e: Pick<FeedbackEvent, 'id'>): number => Number(e.id.split('.')[1]);

/** Final events end a recipient: exactly one per accepted recipient. */
export const isFinal = (e: Pick<FeedbackEvent, 'type'>): boolean => e.type === 'delivered' || e.type === 'failed';
