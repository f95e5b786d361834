/**
 * A fleet (docs/scaling.md), wired: with cluster.redis, this node's membership, the limiter that
 * shares the receivers' limits, and the board through which the nodes tell each other what one
 * of them learnt or was told: adaptive effects (a throttle one node saw slows all), operators'
 * suspensions and warm-up ramps, and the warm-up counts summed over the nodes. Like the daemon,
 * it holds no logic of its own: what an entry means is the part's (shaper, warm-up, admin).
 */
import type { Logger } from 'pino';
import type { Suspensions } from './admin/index.ts';
import { FleetLimiter, openBoard, openMembership, type Board, type Membership } from './cluster/index.ts';
import { fleetNodeName, type Config } from './config/index.ts';
import type { Ramp, Warmup } from './egress/index.ts';
import type { Clock, Timer } from './lib/clock.ts';
import type { Metrics } from './metrics/index.ts';
import type { Selector } from './model/selector.ts';
import { suspensionKey, type Suspension } from './model/suspension.ts';
import { Limiter, TIGHTENING, type Change, type SharedEffect, type Shaper } from './shaping/index.ts';

export const FLEET_SHARING = {
  /** Each warming source's counts are summed over the nodes this often (the caps' overshoot: nodes × this × rate). */
  warmupTallyMs: 1_000,
  /** A day's counts outlive it by this much in Redis. */
  warmupTallyTtlMs: 3 * 86_400_000,
  /** An effect extended again and again (every refused reply) is told to the fleet at most this often. */
  extendShareMs: 30_000,
} as const;

/** The parts that take what other nodes tell: wired once they exist, before start. */
export interface FleetParts {
  readonly shaper: Pick<Shaper, 'shared' | 'adopt'>;
  readonly warmup: Warmup;
  readonly suspensions: Suspensions;
  /** The list in force changed: every shard's queue gets it. */
  readonly suspensionsChanged: (list: readonly Suspension[]) => Promise<void>;
  /** A resume releases what the suspension held. */
  readonly flush: (selector: Selector) => Promise<unknown>;
}

export interface Fleet {
  readonly node: string;
  readonly membership: Membership;
  readonly limiter: FleetLimiter;
  attach(parts: FleetParts): void;
  /** A change an adaptive rule made here: the tightening ones go to the other nodes. */
  shapingChanged(change: Change): void;
  /** For the admin write calls: a suspension or resume made here. */
  readonly told: { suspended(s: Suspension): void; resumed(s: Suspension): void };
  /** An operator moved or paused a source's ramp here. */
  rampChanged(source: string): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

type SuspensionEntry = { readonly state: 'suspended'; readonly suspension: Suspension } | { readonly state: 'resumed'; readonly suspension: Suspension };

/** With cluster.redis, this node's part in the fleet; else undefined (a single node). */
export function openFleet(config: Config, deps: { clock: Clock; log: Logger; metrics: Metrics; draining: () => boolean }): Fleet | undefined {
  const node = fleetNodeName(config);
  if (!config.cluster.redis || !node) return undefined;
  const { clock, metrics } = deps;
  const log = deps.log.child({ stage: 'cluster', node });
  const started = new Date(clock.now()).toISOString();
  const membership = openMembership(
    { url: config.cluster.redis, prefix: config.cluster.prefix, node, info: () => ({ admin: config.admin.listen, smtp: config.smtp.listen, started, draining: deps.draining() }) },
    { clock, log, onState: (state) => metrics.clusterRedisUp.set(state === 'connected' ? 1 : 0) },
  );
  const limiter = new FleetLimiter({
    redis: membership.redis, prefix: config.cluster.prefix, node,
    shared: () => membership.state() === 'connected', liveNodes: () => membership.liveNodes(),
    fallback: new Limiter(() => clock.now()), clock, log,
  });
  const board = openBoard({ redis: membership.redis, prefix: config.cluster.prefix, node, clock, log });
  const counted = (topic: string, direction: 'sent' | 'taken'): void => metrics.clusterShared.labels({ topic, direction }).inc();
  const post = (topic: string, key: string, value: unknown, until: number): void => {
    board.post(topic, key, value, until);
    counted(topic, 'sent');
  };
  const lastExtendShared = new Map<string, number>();
  let parts: FleetParts | undefined;
  let tallying: Timer | undefined;
  metrics.clusterNode.labels({ node }).set(1);

  function attach(p: FleetParts): void {
    parts = p;
    board.on('effects', (entry) => {
      const [path] = entry.key.split('\n');
      if (!path || !entry.value) return;
      p.shaper.adopt(path, entry.value as SharedEffect);
      counted('effects', 'taken');
    });
    board.on('suspensions', (entry) => void takeSuspension(p, entry.value as SuspensionEntry, entry.from));
    board.on('warmup', (entry) => {
      if (p.warmup.setRamp(entry.key, entry.value as Ramp)) counted('warmup', 'taken');
    });
  }

  async function takeSuspension(p: FleetParts, entry: SuspensionEntry, from: string): Promise<void> {
    const s = entry.suspension;
    const changed = entry.state === 'suspended' ? await p.suspensions.apply(s) : (await p.suspensions.resume(s.target, s.name)) !== undefined;
    if (!changed) return;
    counted('suspensions', 'taken');
    log.info({ target: s.target, name: s.name, from }, `cluster: ${s.target} ${s.name} ${entry.state} on ${from}; here too`);
    await p.suspensionsChanged(p.suspensions.list());
    if (entry.state === 'resumed') await p.flush({ [s.target]: s.name } as Selector);
  }

  /** Each warming source's counts of today: this node's set in Redis, the others' taken. */
  async function tally(): Promise<void> {
    if (!parts || membership.state() !== 'connected') return;
    for (const { source, date, counts } of parts.warmup.counts()) {
      const others = await board.tally(`warmup:${source}:${date}`, counts, FLEET_SHARING.warmupTallyTtlMs);
      parts.warmup.setOthers(source, date, others);
    }
  }
  /** Extensions told long enough ago may be told again: their marks go (on the tally's tick, once a second). */
  const forgetOldExtends = (): void => {
    for (const [id, at] of lastExtendShared) if (clock.now() - at >= FLEET_SHARING.extendShareMs) lastExtendShared.delete(id);
  };
  const scheduleTally = (): void => {
    tallying = clock.at(clock.now() + FLEET_SHARING.warmupTallyMs, () => {
      forgetOldExtends();
      void tally().catch((err: unknown) => log.debug({ err }, 'cluster: warm-up counts not shared (Redis)')).finally(scheduleTally);
    });
  };

  return {
    node,
    membership,
    limiter,
    attach,
    shapingChanged(change) {
      if (!parts || !TIGHTENING.has(change.change)) return;
      const id = `${change.path}\n${change.rule}`;
      if (change.change === 'extend' && clock.now() - (lastExtendShared.get(id) ?? 0) < FLEET_SHARING.extendShareMs) return;
      const effect = parts.shaper.shared(change.path, change.rule);
      if (!effect) return;
      lastExtendShared.set(id, clock.now());
      post('effects', id, effect, effect.until);
    },
    told: {
      suspended: (s) => post('suspensions', suspensionKey(s), { state: 'suspended', suspension: s }, s.until),
      resumed: (s) => post('suspensions', suspensionKey(s), { state: 'resumed', suspension: s }, s.until),
    },
    rampChanged(source) {
      const ramp = parts?.warmup.ramp(source);
      // Good for the day it was made on: the next day each node rolls it on by itself.
      if (ramp) post('warmup', source, ramp, clock.now() + 2 * 86_400_000);
    },
    async start() {
      await membership.start();
      await board.start();
      limiter.start();
      scheduleTally();
    },
    async stop() {
      tallying?.cancel();
      metrics.clusterNode.labels({ node }).set(0);
      await limiter.stop();
      await board.stop();
      await membership.stop();
    },
  };
}
