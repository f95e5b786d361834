import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import type { FeedbackEvent } from '../model/event.ts';

export interface Counts {
  relayed: number;
  delivered: number;
  soft_bounces: number;
  failed: { total: number; hard: number; soft: number; ignored: number; expired: number };
  /** Recipients who reported the message (complaint events); they stay counted as delivered. */
  complaints: number;
  /** Failures by bounce reason and by Momentum class (the dashboard's breakdown). */
  failed_by: { reason: Record<string, number>; class: Record<string, number> };
  /** The newest event's time (ms), to list the active campaigns first. */
  last_event: number;
}

export interface KpiView extends Counts {
  readonly id: string;
  /** delivered ÷ relayed, in percent (BRIEF §2). */
  readonly success_pct: number;
  /** relayed recipients with no final event yet. */
  readonly in_progress: number;
}

export type KpiScope = 'campaign' | 'delivery';

export interface Kpis {
  /** Count an event; `n` is its outbox number, so a replay after a restart counts nothing twice. */
  apply(n: number, event: FeedbackEvent): void;
  view(scope: KpiScope, id: string): KpiView | undefined;
  /** Every campaign's (or delivery's) KPIs. */
  list(scope: KpiScope): KpiView[];
  /** Events up to this outbox number are in the saved snapshot. */
  savedThrough(): number;
  save(): Promise<void>;
}

interface Snapshot { through: number; campaign: Record<string, Counts>; delivery: Record<string, Counts> }

const empty = (): Counts => ({ relayed: 0, delivered: 0, soft_bounces: 0, failed: { total: 0, hard: 0, soft: 0, ignored: 0, expired: 0 }, complaints: 0, failed_by: { reason: {}, class: {} }, last_event: 0 });

/**
 * Per-campaign (`meta.campaign`) and per-delivery (`meta.delivery`) counters. Saved atomically to
 * `path` with the outbox number they cover; on start the outbox replays the events after it.
 */
export function openKpis(path: string): Kpis {
  const snapshot = load(path);
  const tables: Record<KpiScope, Map<string, Counts>> = {
    campaign: new Map(Object.entries(snapshot.campaign)),
    delivery: new Map(Object.entries(snapshot.delivery)),
  };
  let through = snapshot.through;
  let saved = snapshot.through;
  let saving: Promise<void> | undefined;

  function count(scope: KpiScope, id: unknown, event: FeedbackEvent): void {
    if (typeof id !== 'string' && typeof id !== 'number') return;
    const key = String(id);
    // Counts saved before a field existed get it now.
    const c = { ...empty(), ...tables[scope].get(key) };
    tables[scope].set(key, c);
    c.last_event = Math.max(c.last_event, Date.parse(event.time) || 0);
    if (event.type === 'relayed') c.relayed += 1;
    else if (event.type === 'delivered') c.delivered += 1;
    else if (event.type === 'soft_bounce') c.soft_bounces += 1;
    else if (event.type === 'complaint') c.complaints = (c.complaints ?? 0) + 1;
    else {
      // A bounce that came back after the 250 moves its recipient from delivered to failed.
      if (event.async) c.delivered = Math.max(0, c.delivered - 1);
      c.failed.total += 1;
      const type = event.bounce?.type;
      if (type === 'hard' || type === 'soft' || type === 'ignored') c.failed[type] += 1;
      if (event.cause === 'expired') c.failed.expired += 1;
      const reason = event.bounce?.reason ?? event.cause ?? 'unknown';
      c.failed_by.reason[reason] = (c.failed_by.reason[reason] ?? 0) + 1;
      const klass = String(event.bounce?.class ?? 1);
      c.failed_by.class[klass] = (c.failed_by.class[klass] ?? 0) + 1;
    }
  }

  async function save(): Promise<void> {
    if (saving) await saving;
    if (through === saved) return;
    const data: Snapshot = { through, campaign: Object.fromEntries(tables.campaign), delivery: Object.fromEntries(tables.delivery) };
    const tmp = `${path}.tmp`;
    saving = writeFile(tmp, JSON.stringify(data)).then(() => rename(tmp, path)).then(() => { saved = data.through; });
    try {
      await saving;
    } finally {
      saving = undefined;
    }
  }

  return {
    apply(n, event) {
      if (n <= through) return;
      through = n;
      count('campaign', event.meta.campaign, event);
      count('delivery', event.meta.delivery, event);
    },
    view(scope, id) {
      const c = tables[scope].get(id);
      return c ? viewOf(id, structuredClone(c)) : undefined;
    },
    list(scope) {
      return [...tables[scope]].map(([id, c]) => viewOf(id, structuredClone(c)));
    },
    savedThrough: () => saved,
    save,
  };
}

function viewOf(id: string, counts: Counts): KpiView {
  const c = { ...empty(), ...counts };
  const final = c.delivered + c.failed.total;
  return {
    id, ...c, complaints: c.complaints ?? 0,
    success_pct: c.relayed === 0 ? 0 : Math.round((c.delivered / c.relayed) * 10_000) / 100,
    in_progress: Math.max(0, c.relayed - final),
  };
}

/** One campaign's (or delivery's) KPIs counted in several places (partitions, shards): summed, the percentages made again. */
export function mergeKpiViews(views: readonly (KpiView | undefined)[]): KpiView | undefined {
  const present = views.filter((v): v is KpiView => v !== undefined);
  const first = present[0];
  if (!first) return undefined;
  const total: Counts = empty();
  for (const v of present) {
    total.relayed += v.relayed;
    total.delivered += v.delivered;
    total.soft_bounces += v.soft_bounces;
    total.complaints += v.complaints ?? 0;
    for (const k of ['total', 'hard', 'soft', 'ignored', 'expired'] as const) total.failed[k] += v.failed[k];
    for (const k of ['reason', 'class'] as const) for (const [name, n] of Object.entries(v.failed_by?.[k] ?? {})) total.failed_by[k][name] = (total.failed_by[k][name] ?? 0) + n;
    total.last_event = Math.max(total.last_event, v.last_event ?? 0);
  }
  return viewOf(first.id, total);
}

/** Every shard's list merged by id, the most recently active first. */
export function mergeKpiLists(lists: readonly (readonly KpiView[])[]): KpiView[] {
  const byId = new Map<string, KpiView[]>();
  for (const list of lists) for (const v of list) byId.set(v.id, [...(byId.get(v.id) ?? []), v]);
  return [...byId.values()].map((views) => mergeKpiViews(views) as KpiView).sort((a, b) => b.last_event - a.last_event || a.id.localeCompare(b.id));
}

function load(path: string): Snapshot {
  try {
    const data = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
    return { through: data.through ?? 0, campaign: data.campaign ?? {}, delivery: data.delivery ?? {} };
  } catch {
    return { through: 0, campaign: {}, delivery: {} };
  }
}
