import { startTern, tempDir, testConfig, type RunningTern } from './daemon.ts';
import { startWorld, type World } from './world.ts';

/** The tap hooks a file's setup registers on. */
interface Hooks {
  before(fn: () => Promise<void>): void;
  teardown(fn: () => Promise<void>): void;
}

export interface TernsInWorld {
  /** The file's loopback internet (DNS zone and sinks), up once `before` has run. */
  readonly world: World;
  /** A Tern on a fresh spool, relaying into the world; stopped at teardown. */
  tern(extra?: Record<string, unknown>): Promise<RunningTern>;
  /** A scratch directory removed at teardown. */
  keep(dir: { remove(): void }): void;
}

/** The usual end-to-end setup: one standard world per file, any number of Terns in it, all cleaned up. */
export function ternsInWorld(tap: Hooks): TernsInWorld {
  let world: World | undefined;
  const dirs: { remove(): void }[] = [];
  const terns: RunningTern[] = [];
  tap.before(async () => {
    world = await startWorld();
  });
  tap.teardown(async () => {
    for (const tern of terns) await tern.stop();
    await world?.close();
    for (const d of dirs) d.remove();
  });
  const ready = (): World => {
    if (!world) throw new Error('the world starts in before()');
    return world;
  };
  return {
    get world() { return ready(); },
    async tern(extra = {}) {
      const spool = tempDir();
      dirs.push(spool);
      const running = await startTern(testConfig({ dnsServer: ready().dns.server, deliveryPort: ready().port, spoolDir: spool.path, ...extra }));
      terns.push(running);
      return running;
    },
    keep: (dir) => dirs.push(dir),
  };
}
