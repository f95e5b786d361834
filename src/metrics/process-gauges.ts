/**
 * The gauges there is one of per process, set from live state just before a scrape: what the
 * coordinator knows (the shaper's holds, the operator's suspensions) and what it can sum over
 * every shard (recipients and connections per provider, the spool on disk).
 */
import { readdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../lib/clock.ts';
import type { Metrics } from './metrics.ts';

export interface ProcessState {
  /** Recipients waiting per path key, over every shard. */
  queued(): Promise<Map<string, number>>;
  /** Open connections per path key, over every shard. */
  pools(): Promise<Map<string, { readonly connections: number }>>;
  /** Every recipient waiting, over every shard (those never attempted have no path yet). */
  recipients(): Promise<number>;
  /** The configured provider a path belongs to (if any), and its egress source. */
  labelsOf(path: string): { readonly provider: string | undefined; readonly source: string };
  /** Paths paused or failing by an adaptive rule, per provider label. */
  holds(): Map<string, number>;
  /** Suspensions in force, by target. */
  suspensions(): readonly { readonly target: string }[];
  /** The spool's size on disk and the free space under it; absent: those gauges are left as they are. */
  disk?(): Promise<{ bytes: number; free: number }>;
  /** Entries on the suppression list. */
  suppressed(): number;
  /** Each warming source's step and what it may still send today (null: no cap). */
  warmups(): readonly { readonly source: string; readonly day: number; readonly remaining: number | null; readonly providers: Readonly<Record<string, { readonly remaining: number | null }>> }[];
}

export async function refreshProcessGauges(metrics: Metrics, state: ProcessState): Promise<void> {
  metrics.suspensions.reset();
  for (const s of state.suspensions()) metrics.suspensions.labels({ target: s.target }).inc();
  metrics.pausedPaths.reset();
  for (const [provider, count] of state.holds()) metrics.pausedPaths.labels({ provider }).set(count);
  const [queued, pools, recipients, disk] = await Promise.all([state.queued(), state.pools(), state.recipients(), state.disk?.()]);
  const label = (path: string): string => state.labelsOf(path).provider ?? 'other';
  metrics.providerQueue.reset();
  let placed = 0;
  for (const [path, count] of queued) {
    metrics.providerQueue.labels({ provider: label(path) }).inc(count);
    placed += count;
  }
  metrics.providerQueue.labels({ provider: 'unknown' }).set(Math.max(0, recipients - placed));
  metrics.providerConnections.reset();
  metrics.sourceConnections.reset();
  for (const [path, pool] of pools) {
    metrics.providerConnections.labels({ provider: label(path) }).inc(pool.connections);
    metrics.sourceConnections.labels({ source: state.labelsOf(path).source }).inc(pool.connections);
  }
  metrics.warmupDay.reset();
  metrics.warmupRemaining.reset();
  for (const w of state.warmups()) {
    metrics.warmupDay.labels({ source: w.source }).set(w.day);
    if (w.remaining !== null) metrics.warmupRemaining.labels({ source: w.source, scope: 'total' }).set(w.remaining);
    for (const [provider, p] of Object.entries(w.providers)) if (p.remaining !== null) metrics.warmupRemaining.labels({ source: w.source, scope: provider }).set(p.remaining);
  }
  metrics.suppressedAddresses.set(state.suppressed());
  if (disk) {
    metrics.spoolBytes.set(disk.bytes);
    metrics.spoolFree.set(disk.free);
  }
}

/** Walking a big spool costs a stat per file: at most once in this long, whatever the scrape rate. */
const DISK_CACHE_MS = 10_000;

/** The bytes of every file under `dir` and the free space of its file system, measured at most every DISK_CACHE_MS. */
export function diskUsage(dir: string, clock: Clock): () => Promise<{ bytes: number; free: number }> {
  let last: { at: number; value: Promise<{ bytes: number; free: number }> } | undefined;
  return () => {
    const now = clock.now();
    if (!last || now - last.at >= DISK_CACHE_MS) last = { at: now, value: measure(dir) };
    return last.value;
  };
}

async function measure(dir: string): Promise<{ bytes: number; free: number }> {
  const [bytes, fs] = await Promise.all([bytesUnder(dir), statfs(dir).catch(() => undefined)]);
  return { bytes, free: fs ? fs.bavail * fs.bsize : 0 };
}

async function bytesUnder(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const e of entries) {
    if (!e.isFile()) continue;
    // A file removed between readdir and stat (a delivered message) counts as nothing.
    total += (await stat(join(e.parentPath, e.name)).catch(() => undefined))?.size ?? 0;
  }
  return total;
}
