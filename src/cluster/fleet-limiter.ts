import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { Rate } from '../lib/units.ts';
import type { Grant, GrantRequest, LimiterPort, PathSettings } from '../model/path.ts';

/**
 * A node's grants when a fleet shares the receivers' limits through Redis (docs/scaling.md).
 * The limits are per path (source, site), counted in Redis: connection leases in a sorted set
 * with an expiry (a crashed node's lapse), message and connection rates by GCRA. A node asks in
 * batches and holds what it got as local credit, so delivery still gets an answer at once: a
 * grant from credit, or "ask again in ASK_AGAIN_MS" while the next batch is on its way.
 * While Redis cannot be reached, the node falls back to its share of each limit (limit ÷ live
 * nodes last seen), counted by `fallback`, this process's own limiter.
 */
export interface FleetLimits { readonly leaseTtlMs: number; readonly renewMs: number; readonly leaseIdleMs: number; readonly askAgainMs: number; readonly fullRetryMs: number; readonly messageBatchShare: number; readonly wantingTtlMs: number }

export const FLEET_LIMITS: FleetLimits = {
  /** A lease not renewed for this long lapses (its node crashed or lost Redis). */
  leaseTtlMs: 10_000,
  /** Held leases are renewed this often. */
  renewMs: 2_000,
  /** A lease held and unused this long goes back to the fleet. */
  leaseIdleMs: 2_000,
  /** Delivery told "not yet" while a batch is on its way asks again this soon. */
  askAgainMs: 20,
  /** A path full fleet-wide is asked about again this often. */
  fullRetryMs: 100,
  /** Message credit asked for at once: this share of a second's worth (at least what was asked). */
  messageBatchShare: 0.25,
  /** A node refused leases counts as wanting more for this long (it asks again well within it). */
  wantingTtlMs: 1_000,
};

interface Held {
  settings: PathSettings;
  /** Lease ids this node holds in Redis. */
  leases: string[];
  /** Of those, connections open now. */
  inUse: number;
  /** Connections the fallback granted (Redis away), released to it. */
  fallbackInUse: number;
  /** Message grants taken from Redis and not yet handed out. */
  credit: number;
  asking: { connection: boolean; message: boolean };
  /** Not before this: the path was full (or a rate empty) fleet-wide. */
  waitUntil: { connection: number; message: number };
  /** The path's leases fleet-wide, as Redis last said. */
  fleetLeases: number;
  /**
   * The most leases this node may use while other nodes want more than they got (the path's
   * limit ÷ the nodes wanting); Infinity while none does.
   */
  cap: number;
  idleSince: number;
}

/**
 * Leases: drop lapsed ones, pace by the connection rate (GCRA), add up to `want` below `max`.
 * Fairness: while other nodes want more than they got (KEYS[4], nodes refused lately), this one
 * gets no more than the limit ÷ the nodes wanting, and one ask never takes more than the limit
 * ÷ the live nodes, so nodes that start at once split the path instead of the first taking all.
 * {leases fleet-wide, this node's cap (0: none), new ids...}.
 */
const LEASE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[2])
local want = tonumber(ARGV[1])
local others = redis.call('ZCARD', KEYS[4]) - (redis.call('ZSCORE', KEYS[4], ARGV[4]) and 1 or 0)
local cap = 0
local n = math.min(want, max - held, math.ceil(max / tonumber(ARGV[8])))
if others > 0 then
  cap = math.ceil(max / (others + 1))
  n = math.min(n, cap - tonumber(ARGV[7]))
end
if n < want then redis.call('ZADD', KEYS[4], now + tonumber(ARGV[9]), ARGV[4]) else redis.call('ZREM', KEYS[4], ARGV[4]) end
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[9]) * 2)
if n <= 0 then return {held, cap} end
local T = tonumber(ARGV[5])
if T > 0 then
  local B = tonumber(ARGV[6])
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < now then tat = now end
  local k = math.floor((now + B * T - tat) / T)
  if k < n then n = math.max(0, k) end
  if n > 0 then redis.call('SET', KEYS[2], tostring(tat + n * T), 'PX', math.ceil(B * T + n * T) + 1000) end
end
local out = {held + n, cap}
for i = 1, n do
  local id = ARGV[4] .. ':' .. redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
  out[#out + 1] = id
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return out
`;

/** Renew this node's leases (those that still exist); {the leases fleet-wide, this node's cap (0: none)}. */
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
local others = redis.call('ZCARD', KEYS[2]) - (redis.call('ZSCORE', KEYS[2], ARGV[2]) and 1 or 0)
local cap = 0
if others > 0 then cap = math.ceil(tonumber(ARGV[3]) / (others + 1)) end
return {redis.call('ZCARD', KEYS[1]), cap}
`;

/** Up to `want` messages by GCRA (T ms each, a burst of B): {granted, ms until the next}. */
const RATE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want, T, B = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local k = math.max(0, math.min(want, math.floor((now + B * T - tat) / T)))
if k > 0 then
  tat = tat + k * T
  redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(B * T) + 1000)
end
local wait = 0
if k < want then wait = math.max(1, math.ceil(tat - (B - 1) * T - now)) end
return {k, wait}
`;

export interface FleetLimiterDeps {
  readonly redis: Redis;
  readonly prefix: string;
  readonly node: string;
  /** Whether Redis answers now (the membership's heartbeat says). */
  readonly shared: () => boolean;
  /** Live nodes as last seen, at least 1. */
  readonly liveNodes: () => number;
  /** This process's own limiter, for this node's share while Redis is away. */
  readonly fallback: LimiterPort;
  readonly clock: Clock;
  readonly log: Logger;
  /** FLEET_LIMITS, some changed (tests shorten the lease times). */
  readonly limits?: Partial<FleetLimits>;
}

export class FleetLimiter implements LimiterPort {
  readonly #d: FleetLimiterDeps;
  readonly #held = new Map<string, Held>();
  readonly #limits: FleetLimits;
  #timer: Timer | undefined;

  constructor(deps: FleetLimiterDeps) {
    this.#d = deps;
    this.#limits = { ...FLEET_LIMITS, ...deps.limits };
  }

  start(): void {
    const tick = (): void => {
      void this.#renew().finally(() => {
        this.#timer = this.#d.clock.at(this.#d.clock.now() + this.#limits.renewMs, tick);
      });
    };
    this.#timer = this.#d.clock.at(this.#d.clock.now() + this.#limits.renewMs, tick);
  }

  /** Give every lease back (a graceful stop); what cannot be given back lapses. */
  async stop(): Promise<void> {
    this.#timer?.cancel();
    await Promise.all([...this.#held].map(([path, h]) => this.#giveBack(path, h.leases.splice(0))));
  }

  configure(path: string, settings: PathSettings): void {
    const h = this.#held.get(path);
    if (h) h.settings = settings;
    else this.#held.set(path, { settings, leases: [], inUse: 0, fallbackInUse: 0, credit: 0, asking: { connection: false, message: false }, waitUntil: { connection: 0, message: 0 }, fleetLeases: 0, cap: Infinity, idleSince: this.#d.clock.now() });
    this.#d.fallback.configure(path, shareOf(settings, this.#d.liveNodes()));
  }

  acquire(requests: readonly GrantRequest[]): Grant[] {
    const now = this.#d.clock.now();
    const shared = this.#d.shared();
    return requests.map((r) => {
      const h = this.#held.get(r.path);
      if (!h || r.count <= 0) return { granted: 0 };
      if (!shared) return this.#fromFallback(r, h);
      return r.kind === 'connection' ? this.#connections(r.path, h, r.count, now) : this.#messages(r.path, h, r.count, now);
    });
  }

  release(path: string, connections: number): void {
    const h = this.#held.get(path);
    if (!h) return;
    // Connections the fallback granted go back to it first: they were counted there.
    const toFallback = Math.min(connections, h.fallbackInUse);
    if (toFallback > 0) {
      h.fallbackInUse -= toFallback;
      this.#d.fallback.release(path, toFallback);
    }
    h.inUse = Math.max(0, h.inUse - (connections - toFallback));
    if (h.inUse === 0) h.idleSince = this.#d.clock.now();
    // Other nodes wait for this path: what this one holds above its cap goes back at once.
    const over = Math.min(h.leases.length - h.inUse, h.leases.length - h.cap);
    if (over > 0) void this.#giveBack(path, h.leases.splice(h.inUse, over));
  }

  refund(path: string, messages: number): void {
    const h = this.#held.get(path);
    if (h && h.settings.max_message_rate) h.credit += messages;
  }

  leases(path: string): number {
    const h = this.#held.get(path);
    return h ? h.inUse + h.fallbackInUse : 0;
  }

  scale(path: string): number {
    const h = this.#held.get(path);
    if (!h || !this.#d.shared() || h.leases.length === 0) return 1;
    return Math.max(1, h.fleetLeases / h.leases.length);
  }

  forget(path: string): void {
    const h = this.#held.get(path);
    if (!h || h.inUse + h.fallbackInUse > 0) return;
    void this.#giveBack(path, h.leases.splice(0));
    this.#held.delete(path);
    this.#d.fallback.forget(path);
  }

  #fromFallback(r: GrantRequest, h: Held): Grant {
    this.#d.fallback.configure(r.path, shareOf(h.settings, this.#d.liveNodes()));
    const [grant = { granted: 0 }] = this.#d.fallback.acquire([r]);
    if (r.kind === 'connection') h.fallbackInUse += grant.granted;
    return grant;
  }

  #connections(path: string, h: Held, count: number, now: number): Grant {
    const n = Math.max(0, Math.min(count, Math.min(h.leases.length, h.cap) - h.inUse));
    h.inUse += n;
    if (n === count) return { granted: n };
    if (now < h.waitUntil.connection) return { granted: n, retryAt: h.waitUntil.connection };
    void this.#askLeases(path, h, count - n);
    return { granted: n, retryAt: now + this.#limits.askAgainMs };
  }

  #messages(path: string, h: Held, count: number, now: number): Grant {
    const rate = h.settings.max_message_rate;
    if (!rate) return { granted: count };
    const n = Math.min(count, Math.floor(h.credit));
    h.credit -= n;
    if (n === count) return { granted: n };
    if (now < h.waitUntil.message) return { granted: n, retryAt: h.waitUntil.message };
    void this.#askMessages(path, h, Math.max(count - n, Math.ceil((rate.count / rate.perMs) * 1000 * this.#limits.messageBatchShare)));
    return { granted: n, retryAt: now + this.#limits.askAgainMs };
  }

  async #askLeases(path: string, h: Held, want: number): Promise<void> {
    if (h.asking.connection) return;
    h.asking.connection = true;
    try {
      const { T, B } = gcra(h.settings.max_connection_rate);
      const [fleet, cap, ...ids] = (await this.#d.redis.eval(LEASE, 4, this.#key('leases', path), this.#key('conn-rate', path), `${this.#d.prefix}lease-seq`, this.#key('wanting', path),
        String(want), String(h.settings.max_connections), String(this.#limits.leaseTtlMs), this.#d.node, String(T), String(B),
        String(h.leases.length), String(this.#d.liveNodes()), String(this.#limits.wantingTtlMs))) as [number, number, ...string[]];
      h.fleetLeases = Number(fleet);
      h.cap = Number(cap) > 0 ? Number(cap) : Infinity;
      h.leases.push(...ids);
      if (ids.length === 0) h.waitUntil.connection = this.#d.clock.now() + this.#limits.fullRetryMs;
    } catch (err) {
      this.#d.log.debug({ err, path }, 'cluster: leases not granted (Redis)');
    } finally {
      h.asking.connection = false;
    }
  }

  async #askMessages(path: string, h: Held, want: number): Promise<void> {
    if (h.asking.message || !h.settings.max_message_rate) return;
    h.asking.message = true;
    try {
      const { T, B } = gcra(h.settings.max_message_rate);
      const [granted, wait] = (await this.#d.redis.eval(RATE, 1, this.#key('msg-rate', path), String(want), String(T), String(B))) as [number, number];
      h.credit += Number(granted);
      if (Number(granted) < want) h.waitUntil.message = this.#d.clock.now() + Number(wait);
    } catch (err) {
      this.#d.log.debug({ err, path }, 'cluster: messages not granted (Redis)');
    } finally {
      h.asking.message = false;
    }
  }

  /** Renew the leases in use; give back those idle past leaseIdleMs. */
  async #renew(): Promise<void> {
    if (!this.#d.shared()) return;
    const now = this.#d.clock.now();
    for (const [path, h] of this.#held) {
      const spare = h.leases.length - h.inUse;
      if (spare > 0 && now - h.idleSince >= this.#limits.leaseIdleMs) await this.#giveBack(path, h.leases.splice(h.inUse, spare));
      if (h.leases.length === 0) continue;
      const renewed = (await this.#d.redis.eval(RENEW, 2, this.#key('leases', path), this.#key('wanting', path), String(this.#limits.leaseTtlMs), this.#d.node, String(h.settings.max_connections), ...h.leases).catch(() => undefined)) as [number, number] | undefined;
      if (!renewed) continue;
      h.fleetLeases = Number(renewed[0]);
      h.cap = Number(renewed[1]) > 0 ? Number(renewed[1]) : Infinity;
      // Spare leases above the cap others wait for go back now, not after leaseIdleMs.
      const over = Math.min(h.leases.length - h.inUse, h.leases.length - h.cap);
      if (over > 0) await this.#giveBack(path, h.leases.splice(h.inUse, over));
    }
  }

  async #giveBack(path: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#d.redis.zrem(this.#key('leases', path), ...ids).catch(() => undefined);
  }

  #key(kind: string, path: string): string {
    return `${this.#d.prefix}${kind}:${path}`;
  }
}

/** GCRA's emission interval T (ms a token) and burst B (one second's worth, as TokenBucket). */
function gcra(rate: Rate | undefined): { T: number; B: number } {
  if (!rate) return { T: 0, B: 0 };
  return { T: rate.perMs / rate.count, B: Math.max(1, Math.min(rate.count, (rate.count / rate.perMs) * 1000)) };
}

/** This node's share of a path's limits while Redis is away: each ÷ the live nodes. */
export function shareOf(settings: PathSettings, nodes: number): PathSettings {
  if (nodes <= 1) return settings;
  const rate = (r: Rate | undefined): Rate | undefined => (r ? { count: r.count / nodes, perMs: r.perMs } : undefined);
  return { ...settings, max_connections: Math.max(1, Math.floor(settings.max_connections / nodes)), max_message_rate: rate(settings.max_message_rate), max_connection_rate: rate(settings.max_connection_rate) };
}
