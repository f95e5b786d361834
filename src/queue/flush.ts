import type { Envelope, RecipientState } from '../model/envelope.ts';
import type { QueueId } from '../model/ids.ts';

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
