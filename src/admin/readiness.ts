import type { Readiness } from '../model/readiness.ts';

/**
 * GET /readyz: whether this node should be sent mail now. Liveness (/healthz) says the process
 * answers; readiness says it can do its job: every shard answers, every SMTP listener accepts,
 * the spool has room above spool.min_free (else every message gets 452), and no outbox has held
 * events without an acknowledgement for longer than admin.readiness.outbox_stall (a webhook down
 * that long means campaign tools have lost sight of what was sent).
 */

export type CheckName = 'shards' | 'smtp' | 'spool' | 'outbox' | 'cluster';

export interface ReadyView {
  readonly status: 'ready' | 'not ready';
  /** "ok", or what is wrong in words. */
  readonly checks: Readonly<Partial<Record<CheckName, string>>>;
}

/**
 * `cluster` (with cluster.redis) is reported but never makes a node "not ready": Redis gone is
 * the same for every node, and a load balancer taking them all out would stop the whole fleet.
 */
export function judgeReadiness(answers: readonly (Readiness | undefined)[], outboxStallMs: number, cluster?: string, drainingSince?: number): ReadyView {
  const missing = answers.filter((a) => a === undefined).length;
  const known = answers.filter((a): a is Readiness => a !== undefined);
  const stalled = Math.max(0, ...known.map((a) => a.outboxStalledMs));
  const checks: Record<Exclude<CheckName, 'cluster'>, string> = {
    shards: missing === 0 ? 'ok' : `${missing} of ${answers.length} shards did not answer`,
    smtp: drainingSince !== undefined
      ? `closed: draining since ${new Date(drainingSince).toISOString()} (POST /api/v1/drain)`
      : known.every((a) => a.listening) ? 'ok' : 'an SMTP listener is not accepting (starting or stopping)',
    spool: known.every((a) => a.spool) ? 'ok' : 'free space is below spool.min_free: mail is refused with 452 4.3.1',
    outbox: stalled <= outboxStallMs ? 'ok' : `events have waited ${Math.round(stalled / 1000)} s with none acknowledged (admin.readiness.outbox_stall: ${Math.round(outboxStallMs / 1000)} s)`,
  };
  return { status: Object.values(checks).every((c) => c === 'ok') ? 'ready' : 'not ready', checks: { ...checks, ...(cluster === undefined ? {} : { cluster }) } };
}

/** GET and POST /api/v1/drain: whether this node drains, and what it still has to do. */
export interface DrainView {
  readonly draining: boolean;
  readonly since: string | null;
  /** Nothing is being delivered or waits for a connection: the node may be stopped. */
  readonly finished: boolean;
  /** Messages being delivered now, and the connections open. */
  readonly active: number;
  readonly connections: number;
  /** Recipients in the queue: those deferred stay in the spool and go after the restart. */
  readonly recipients: number;
}

export function drainView(since: number | undefined, queue: { readonly active: number; readonly recipients: number; readonly delivery: { readonly connections: number; readonly waiting: number } }): DrainView {
  const busy = queue.active + queue.delivery.connections + queue.delivery.waiting;
  return {
    draining: since !== undefined,
    since: since === undefined ? null : new Date(since).toISOString(),
    finished: since !== undefined && busy === 0,
    active: queue.active,
    connections: queue.delivery.connections,
    recipients: queue.recipients,
  };
}
