import type { FeedbackEvent } from '../model/event.ts';
import { earliest, type Feedback, type Ledger } from './feedback.ts';
import { mergeKpiLists, mergeKpiViews } from './kpis.ts';

/**
 * A shard's feedback with the outboxes of the partitions it adopted: their events still go to
 * the webhook and their ledgers keep recovery from repeating events, but every new event is
 * recorded in the shard's own outbox.
 */
export function joinFeedback(own: Feedback, adopted: readonly Feedback[]): Feedback {
  if (adopted.length === 0) return own;
  const all = [own, ...adopted];
  return {
    async recover() {
      const ledgers = [await own.recover()];
      for (const f of adopted) ledgers.push(await f.recover());
      return mergeLedgers(ledgers);
    },
    record: (events) => own.record(events),
    start() {
      for (const f of all) f.start();
    },
    async stop() {
      await Promise.all(all.map((f) => f.stop()));
    },
    kpiList(scope) {
      return mergeKpiLists(all.map((f) => f.kpiList(scope)));
    },
    kpi(scope, id) {
      return mergeKpiViews(all.map((f) => f.kpi(scope, id)));
    },
    stalledMs: () => Math.max(...all.map((f) => f.stalledMs())),
    oldestPendingAt: () => earliest(all.map((f) => f.oldestPendingAt())),
    async setWebhooks(webhooks) {
      for (const f of all) await f.setWebhooks(webhooks);
    },
    stats() {
      const stats = all.map((f) => f.stats());
      return {
        pending: stats.reduce((n, s) => n + s.pending, 0),
        bytes: stats.reduce((n, s) => n + s.bytes, 0),
        segments: stats.reduce((n, s) => n + s.segments, 0),
      };
    },
  };
}

function mergeLedgers(ledgers: readonly Ledger[]): Ledger {
  const relayed = new Set<string>();
  const finals = new Map<string, ReadonlyMap<number, FeedbackEvent>>();
  for (const ledger of ledgers) {
    for (const id of ledger.relayed) relayed.add(id);
    for (const [id, byIndex] of ledger.finals) {
      const known = finals.get(id);
      finals.set(id, known ? new Map([...known, ...byIndex]) : byIndex);
    }
  }
  return { relayed, finals };
}
