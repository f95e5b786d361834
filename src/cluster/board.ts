import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';

/**
 * What the nodes of a fleet tell each other (docs/scaling.md): entries on topics, each with an
 * end, kept in Redis (a hash per topic) for nodes that join or come back later, and published
 * (one channel) so live nodes hear them at once. A later entry under a key wins over an earlier
 * one, by the time it was made, so an entry a node posts again after Redis was away never undoes
 * what another node did meanwhile. What an entry means is its topic's business: the daemon wires
 * adaptive effects, suspensions and warm-up actions through here (src/fleet.ts).
 * Also: tallies, counts every node keeps (absolute, so a repeat or a retry counts once) and reads
 * summed over the others.
 */
export interface BoardEntry {
  readonly topic: string;
  readonly key: string;
  /** null: the key's entry is withdrawn (a tombstone, kept until `until`). */
  readonly value: unknown;
  /** Epoch ms after which the entry means nothing. */
  readonly until: number;
  /** Epoch ms it was made (the node's clock): the later wins. */
  readonly at: number;
  readonly from: string;
}

export type BoardHandler = (entry: BoardEntry) => void;

export interface Board {
  /** Subscribe, and read every live entry (handlers get each). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Tell every node, now and later. Never waits on Redis: while it is away the entry waits here
   * and is posted again when it is back (unless a later one was made meanwhile).
   */
  post(topic: string, key: string, value: unknown, until: number): void;
  /** Entries other nodes post on `topic`; and at each (re)connection, every live one in Redis. */
  on(topic: string, handler: BoardHandler): void;
  /** Set this node's counts under `name` (expiring after ttlMs); resolves with the other nodes' counts summed. */
  tally(name: string, counts: Readonly<Record<string, number>>, ttlMs: number): Promise<Record<string, number>>;
}

export const BOARD_LIMITS = {
  /** An entry larger than this is refused (it would be a bug: entries are small records). */
  maxEntryBytes: 16_384,
  /** Entries this node keeps for posting again after Redis was away (the oldest go first). */
  maxOwnEntries: 10_000,
} as const;

/** Write an entry unless a later one is there; publish it. */
const POST = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, e = pcall(cjson.decode, old)
  if ok and type(e) == 'table' and tonumber(e.at) and tonumber(e.at) > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 1
`;

/** Every live entry of a topic; lapsed ones are dropped on the way. */
const READ = `
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local ok, e = pcall(cjson.decode, all[i + 1])
  if ok and type(e) == 'table' and tonumber(e['until']) and tonumber(e['until']) > tonumber(ARGV[1]) then
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
`;

/** This node's counts set, the others' summed: ARGV = node, ttl, then name/count pairs. */
const TALLY = `
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[1] .. '|' .. ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local all = redis.call('HGETALL', KEYS[1])
local sums = {}
local names = {}
local mine = ARGV[1] .. '|'
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, #mine) ~= mine then
    local name = string.match(f, '|(.*)$')
    if name then
      if not sums[name] then sums[name] = 0; names[#names + 1] = name end
      sums[name] = sums[name] + tonumber(all[i + 1])
    end
  end
end
local out = {}
for _, name in ipairs(names) do out[#out + 1] = name; out[#out + 1] = tostring(sums[name]) end
return out
`;

export interface BoardDeps {
  readonly redis: Redis;
  readonly prefix: string;
  readonly node: string;
  readonly clock: Clock;
  readonly log: Logger;
}

export function openBoard(deps: BoardDeps): Board {
  const { redis, prefix, node, clock, log } = deps;
  const channel = `${prefix}board`;
  const hash = (topic: string): string => `${prefix}board:${topic}`;
  const handlers = new Map<string, BoardHandler[]>();
  // What this node posted and is still live: posted again after Redis was away.
  const own = new Map<string, BoardEntry>();
  const sub = redis.duplicate();
  let stopped = false;

  const deliver = (entry: BoardEntry): void => {
    if (entry.from === node || entry.until <= clock.now()) return;
    for (const handler of handlers.get(entry.topic) ?? []) {
      try {
        handler(entry);
      } catch (err) {
        log.error({ err, topic: entry.topic, key: entry.key }, 'cluster: an entry from another node could not be applied');
      }
    }
  };

  async function write(entry: BoardEntry): Promise<void> {
    const text = JSON.stringify(entry);
    await redis.eval(POST, 2, hash(entry.topic), channel, entry.key, text, String(entry.at), text);
  }

  /** Read every topic's live entries, then post again what this node made while Redis was away. */
  async function resync(): Promise<void> {
    const now = clock.now();
    for (const topic of handlers.keys()) {
      const texts = (await redis.eval(READ, 1, hash(topic), String(now))) as string[];
      for (const text of texts) {
        const entry = parseEntry(text);
        if (entry) deliver(entry);
      }
    }
    for (const [id, entry] of own) {
      if (entry.until <= now) own.delete(id);
      else await write(entry);
    }
  }

  sub.on('message', (_channel: string, text: string) => {
    const entry = parseEntry(text);
    if (entry) deliver(entry);
  });
  // Every (re)connection (either connection may come back first): what was missed meanwhile is
  // read from the hashes. Reading twice is harmless: applying an entry again changes nothing.
  const caughtUp = (): void => {
    if (stopped || redis.status !== 'ready') return;
    resync().catch((err: unknown) => log.debug({ err }, 'cluster: board not read (Redis)'));
  };
  sub.on('ready', caughtUp);
  redis.on('ready', caughtUp);
  sub.on('error', () => undefined);

  return {
    async start() {
      await sub.connect().catch(() => undefined);
      await sub.subscribe(channel).catch(() => undefined);
    },
    async stop() {
      stopped = true;
      redis.off('ready', caughtUp);
      sub.disconnect();
    },
    post(topic, key, value, until) {
      const entry: BoardEntry = { topic, key, value, until, at: clock.now(), from: node };
      if (JSON.stringify(entry).length > BOARD_LIMITS.maxEntryBytes) {
        log.error({ topic, key }, 'cluster: board entry too large; not shared');
        return;
      }
      const id = `${topic}\n${key}`;
      own.delete(id);
      own.set(id, entry);
      if (own.size > BOARD_LIMITS.maxOwnEntries) own.delete(own.keys().next().value as string);
      write(entry).catch((err: unknown) => log.debug({ err, topic, key }, 'cluster: board entry not posted yet (Redis); posted when Redis is back'));
    },
    on(topic, handler) {
      handlers.set(topic, [...(handlers.get(topic) ?? []), handler]);
    },
    async tally(name, counts, ttlMs) {
      const pairs = Object.entries(counts).flatMap(([k, v]) => [k, String(v)]);
      const reply = (await redis.eval(TALLY, 1, `${prefix}tally:${name}`, node, String(ttlMs), ...pairs)) as string[];
      const out: Record<string, number> = {};
      for (let i = 0; i + 1 < reply.length; i += 2) out[reply[i] as string] = Number(reply[i + 1]);
      return out;
    },
  };
}

function parseEntry(text: string): BoardEntry | undefined {
  try {
    const e = JSON.parse(text) as Partial<BoardEntry>;
    if (typeof e.topic !== 'string' || typeof e.key !== 'string' || typeof e.until !== 'number' || typeof e.at !== 'number' || typeof e.from !== 'string') return undefined;
    return e as BoardEntry;
  } catch {
    return undefined;
  }
}
