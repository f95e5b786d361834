import type { BounceClassification } from '../model/bounce.ts';
import type { Envelope, RecipientState } from '../model/envelope.ts';
import type { QueueId } from '../model/ids.ts';
import { formatReply, localReply } from '../model/reply.ts';
import type { Verdict } from './decide.ts';

/** What an operator's actions need beside the queue's own state: picking, bouncing, showing. */

/** Messages read from the spool at once while a flush looks for the ones it picks. */
const FLUSH_READERS = 16;

/**
 * The waiting messages an operator's selector picks, each with its pending recipients' count.
 * The queue keeps only ids and due times in memory (a million recipients must fit), so the
 * envelopes are read back from the spool; one that cannot be read now is skipped.
 */
export async function pickWaiting(
  ids: readonly QueueId[],
  load: (id: QueueId) => Promise<{ envelope: Envelope; states: RecipientState[] }>,
  match: (envelope: Envelope, pending: readonly number[]) => Promise<boolean>,
): Promise<Map<QueueId, number>> {
  const picked = new Map<QueueId, number>();
  let next = 0;
  const reader = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++] as QueueId;
      const loaded = await load(id).catch(() => undefined);
      if (!loaded) continue;
      const pending = loaded.states.flatMap((s, i) => (s.final ? [] : [i]));
      if (pending.length > 0 && (await match(loaded.envelope, pending))) picked.set(id, pending.length);
    }
  };
  await Promise.all(Array.from({ length: FLUSH_READERS }, reader));
  return picked;
}

/**
 * An operator's bounce: Momentum's class 25, Admin Failure; `ignored` on the campaign side, since
 * it says nothing about the address (docs/bounces.md). Not a receiver's reply, so no rule decides it.
 */
export const ADMIN_BOUNCE: BounceClassification = { reason: 'admin', class: 25, category: 'admin', type: 'ignored', failure: 'Ignored', retry: false, rule: 'admin-bounce' };

export function adminBounce(reason: string): Verdict {
  const why = reason === '' ? '' : `: ${reason}`;
  return { kind: 'failed', cause: 'admin', reply: localReply(550, '5.0.0', `bounced by an operator${why}`, 'QUEUE'), bounce: ADMIN_BOUNCE };
}

export interface MessageView {
  readonly queue_id: string;
  readonly sender: string;
  readonly message_id: string;
  readonly received_at: string;
  readonly expires_at: string;
  readonly meta: Readonly<Record<string, unknown>>;
  /** active: being attempted now; scheduled: waiting for its time; held: waiting untried (a pause, a suspension). */
  readonly state: 'active' | 'scheduled' | 'held';
  readonly recipients: readonly {
    readonly recipient: string;
    readonly state: 'pending' | 'delivered' | 'failed';
    readonly attempts: number;
    readonly last_reply: string | null;
    /** When it is next tried (pending only); an operator's bounce fails it then instead. */
    readonly next_attempt: string | null;
    readonly path: string | null;
  }[];
  readonly bounce?: string;
}

export function messageView(envelope: Envelope, states: readonly RecipientState[], at: { state: MessageView['state']; dueAt: number; now: boolean; bounce?: string }): MessageView {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    queue_id: envelope.id,
    sender: envelope.sender,
    message_id: envelope.messageId,
    received_at: iso(envelope.receivedAt),
    expires_at: iso(envelope.expiresAt),
    meta: envelope.meta,
    state: at.state,
    recipients: envelope.recipients.map((r, i) => {
      const s = states[i] as RecipientState;
      // A recipient is tried when its message is activated and its own time has come (or the
      // activation was an operator's, which takes every pending one).
      const next = s.final ? null : iso(at.now ? at.dueAt : Math.min(envelope.expiresAt, Math.max(s.nextAt, at.dueAt)));
      return { recipient: r.address, state: s.final ?? 'pending', attempts: s.attempts, last_reply: s.lastReply ? formatReply(s.lastReply) : null, next_attempt: next, path: s.path ?? null };
    }),
    ...(at.bounce !== undefined ? { bounce: at.bounce } : {}),
  };
}
