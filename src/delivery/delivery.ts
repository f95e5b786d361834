import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import type { SiteName } from '../model/ids.ts';
import type { AttemptOutcome } from '../model/outcome.ts';
import { SitePool, type DeliveryJob, type PoolSettings } from './pool.ts';

export interface Delivery {
  /** Send one message to one site's recipients; always resolves with an outcome, never throws. */
  deliver(job: DeliveryJob): Promise<AttemptOutcome>;
  /** Stop opening connections and quit idle ones. */
  stop(): void;
  /** Close every connection at once (shutdown deadline). */
  abort(): void;
  snapshot(): { sites: number; connections: number; waiting: number };
}

// Pools of sites with no traffic are dropped after this long, so a million domains do not pin memory.
const POOL_SWEEP_MS = 60_000;

export function createDelivery(settings: PoolSettings, deps: { clock: Clock; log: Logger }): Delivery {
  const pools = new Map<SiteName, SitePool>();
  let sweeper = deps.clock.at(deps.clock.now() + POOL_SWEEP_MS, sweep);
  let stopped = false;

  function sweep(): void {
    for (const [site, pool] of pools) if (!pool.busy) pools.delete(site);
    if (!stopped) sweeper = deps.clock.at(deps.clock.now() + POOL_SWEEP_MS, sweep);
  }

  function poolFor(site: SiteName): SitePool {
    let pool = pools.get(site);
    if (!pool) {
      pool = new SitePool(site, settings, deps.clock, deps.log);
      pools.set(site, pool);
    }
    return pool;
  }

  return {
    deliver: (job) => poolFor(job.site).submit(job),
    stop() {
      stopped = true;
      sweeper.cancel();
      for (const pool of pools.values()) pool.stop();
    },
    abort() {
      for (const pool of pools.values()) pool.abort();
    },
    snapshot() {
      let connections = 0;
      let waiting = 0;
      for (const pool of pools.values()) {
        connections += pool.connections;
        waiting += pool.depth;
      }
      return { sites: pools.size, connections, waiting };
    },
  };
}
