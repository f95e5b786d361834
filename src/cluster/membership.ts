import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';

/**
 * A node's place in a fleet (docs/scaling.md): it tells Redis it is alive every heartbeat and
 * learns which other nodes are. A node that stops (crashed, cut off) lapses after nodeTtlMs; the
 * live count is what a shared limit will be divided by while Redis cannot be reached. Times are
 * Redis's own (TIME in the script), so nodes' clocks may disagree. Redis Cluster is not
 * supported (the script reads keys it is not given): one Redis, or one behind Sentinel.
 */
export interface ClusterOptions {
  readonly url: string;
  readonly prefix: string;
  readonly node: string;
  /** What the other nodes may show of this one (its admin address, when it started, whether it drains), as of each heartbeat. */
  readonly info: () => Readonly<Record<string, unknown>>;
}

export const CLUSTER_LIMITS = {
  /** How often a node says it is alive... */
  heartbeatMs: 2_000,
  /** ...and how long after its last word it counts as gone. */
  nodeTtlMs: 6_000,
  connectTimeoutMs: 2_000,
  /** A Redis command slower than this counts as Redis unreachable. */
  commandTimeoutMs: 1_000,
  /** Reconnection attempts back off up to this. */
  reconnectMaxMs: 5_000,
} as const;

export type RedisState = 'connecting' | 'connected' | 'unreachable';

export interface NodeView {
  readonly name: string;
  /** Milliseconds until it lapses without another heartbeat. */
  readonly expires_in_ms: number;
  readonly info: Readonly<Record<string, unknown>>;
}

export interface ClusterView {
  readonly node: string;
  readonly redis: { readonly url: string; readonly state: RedisState; readonly since: string; readonly error?: string };
  /** The live nodes as last seen (this one included). */
  readonly nodes: readonly NodeView[];
}

/** The /readyz check: "ok", or what is wrong; never a reason to stop sending (see readiness.ts). */
export function clusterCheck(view: ClusterView, live: number): string {
  if (view.redis.state === 'connected') return 'ok';
  if (view.redis.state === 'connecting') return `connecting to Redis (${view.redis.url})`;
  return `degraded: Redis unreachable since ${view.redis.since}${view.redis.error ? ` (${view.redis.error})` : ''}; each limit at this node's share (1/${live})`;
}

export interface Membership {
  start(): Promise<void>;
  /** Leave the fleet at once (a graceful stop), then disconnect. */
  stop(): Promise<void>;
  view(): ClusterView;
  state(): RedisState;
  /** Live nodes as last seen, at least 1: a limit's share on this node is limit ÷ this. */
  liveNodes(): number;
  /** The connection, for the fleet's other shared state. */
  readonly redis: Redis;
}

/** Registers this node, drops lapsed ones, and answers every live node with its info. */
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[2] .. ARGV[1], ARGV[3], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tostring(tonumber(live[i + 1]) - now)
  out[#out + 1] = redis.call('GET', KEYS[2] .. live[i]) or '{}'
end
return out
`;

export function openMembership(options: ClusterOptions, deps: { clock: Clock; log: Logger; onState?: (state: RedisState) => void }): Membership {
  const { clock, log } = deps;
  const redis = new Redis(options.url, {
    lazyConnect: true,
    // Nothing waits for Redis: a command while it is away fails at once, and the node carries on.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: CLUSTER_LIMITS.connectTimeoutMs,
    commandTimeout: CLUSTER_LIMITS.commandTimeoutMs,
    retryStrategy: (times: number) => Math.min(times * 250, CLUSTER_LIMITS.reconnectMaxMs),
  });
  const zset = `${options.prefix}nodes`;
  const infoKey = `${options.prefix}node:`;
  let state: RedisState = 'connecting';
  let since = clock.now();
  let lastError: string | undefined;
  let nodes: NodeView[] = [];
  let timer: Timer | undefined;
  let stopped = false;

  const setState = (next: RedisState, error?: string): void => {
    if (error) lastError = error;
    if (next === state) return;
    state = next;
    since = clock.now();
    if (next === 'unreachable') log.warn({ redis: redacted(options.url), error: lastError, live_nodes: nodes.length }, `cluster: Redis unreachable; each shared limit falls back to this node's share (1/${Math.max(1, nodes.length)})`);
    if (next === 'connected') log.info({ redis: redacted(options.url), node: options.node }, 'cluster: Redis reachable; limits are shared in the fleet');
    deps.onState?.(next);
  };
  redis.on('error', (err: Error) => !stopped && setState('unreachable', err.message));
  redis.on('close', () => !stopped && setState('unreachable', lastError ?? 'connection closed'));

  async function beat(): Promise<void> {
    try {
      const reply = (await redis.eval(HEARTBEAT, 2, zset, infoKey, options.node, String(CLUSTER_LIMITS.nodeTtlMs), JSON.stringify({ ...options.info(), node: options.node }))) as string[];
      const seen: NodeView[] = [];
      for (let i = 0; i + 2 < reply.length; i += 3) {
        seen.push({ name: reply[i] as string, expires_in_ms: Number(reply[i + 1]), info: parseInfo(reply[i + 2] as string) });
      }
      nodes = seen;
      setState('connected');
    } catch (err) {
      setState('unreachable', (err as Error).message);
    }
  }
  const schedule = (): void => {
    if (stopped) return;
    timer = clock.at(clock.now() + CLUSTER_LIMITS.heartbeatMs, () => void beat().finally(schedule));
  };

  return {
    redis,
    async start() {
      await redis.connect().catch((err: unknown) => setState('unreachable', (err as Error).message));
      await beat();
      schedule();
    },
    async stop() {
      stopped = true;
      timer?.cancel();
      if (state === 'connected') await redis.multi().zrem(zset, options.node).del(`${infoKey}${options.node}`).exec().catch(() => undefined);
      redis.disconnect();
    },
    view: () => ({
      node: options.node,
      redis: { url: redacted(options.url), state, since: new Date(since).toISOString(), ...(state !== 'connected' && lastError ? { error: lastError } : {}) },
      nodes,
    }),
    state: () => state,
    liveNodes: () => Math.max(1, nodes.length),
  };
}

function parseInfo(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A Redis URL without its password, for logs and the API. */
export function redacted(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*)@/, (_m, scheme: string, auth: string) => `${scheme}${auth.includes(':') ? `${auth.split(':')[0]}:***` : '***'}@`);
}
