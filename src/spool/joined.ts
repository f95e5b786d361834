import type { QueueId } from '../model/ids.ts';
import type { Spool } from './spool.ts';

/**
 * One spool made of a shard's own partition and those it adopted (src/shards/partitions.ts):
 * new mail goes to its own; a message recovered from an adopted partition stays where it is
 * until it is done, so adopting needs no copy and no rename that a crash could cut in half.
 */
export function joinSpools(own: Spool, adopted: readonly Spool[]): Spool {
  if (adopted.length === 0) return own;
  // Only messages recovered from adopted partitions are named here; they leave as they finish.
  const owners = new Map<QueueId, Spool>();
  const ownerOf = (id: QueueId): Spool => owners.get(id) ?? own;
  const all = [own, ...adopted];
  return {
    begin: (id) => own.begin(id),
    load: (id) => ownerOf(id).load(id),
    openBody: (id, bodySize, prefix) => ownerOf(id).openBody(id, bodySize, prefix),
    journal: (id, records) => ownerOf(id).journal(id, records),
    async remove(id, journalled) {
      await ownerOf(id).remove(id, journalled);
      owners.delete(id);
    },
    async quarantine(id) {
      await ownerOf(id).quarantine(id);
      owners.delete(id);
    },
    async recover() {
      const ids = await own.recover();
      for (const spool of adopted) {
        for (const id of await spool.recover()) {
          owners.set(id, spool);
          ids.push(id);
        }
      }
      return ids;
    },
    healthy: () => own.healthy(),
    async settle() {
      await Promise.all(all.map((s) => s.settle()));
    },
    async close() {
      await Promise.all(all.map((s) => s.close()));
    },
  };
}
