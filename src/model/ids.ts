
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** ULID-shaped: 10 characters of time then 16 random, so ids sort by arrival. */
export type QueueId = Brand<string, 'QueueId'>;
/** The sorted MX host set of a destination: domains hosted together share limits. */
export type SiteName = Brand<string, 'SiteName'>;

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export function newQueueId(nowMs: number): QueueId {
  return queueIdOf(nowMs, crypto.getRandomValues(new Uint8Array(16)), 0);
}

/** Random bytes drawn for this many ids at once: one getRandomValues per 256 ids, not per id. */
const IDS_PER_DRAW = 256;

/**
 * A source of queue ids for a hot path (ingress): the random tail comes from a buffer refilled
 * every IDS_PER_DRAW ids. getRandomValues cost ~15 µs per call on the relay bench, per message.
 */
export function queueIdSource(): (nowMs: number) => QueueId {
  const pool = new Uint8Array(16 * IDS_PER_DRAW);
  let next = IDS_PER_DRAW;
  return (nowMs) => {
    if (next === IDS_PER_DRAW) {
      crypto.getRandomValues(pool);
      next = 0;
    }
    return queueIdOf(nowMs, pool, 16 * next++);
  };
}

function queueIdOf(nowMs: number, random: Uint8Array, offset: number): QueueId {
  let time = '';
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let tail = '';
  for (let i = offset; i < offset + 16; i++) tail += ALPHABET[(random[i] as number) % 32];
  return (time + tail) as QueueId;
}

/** When a queue id was made (ms since the epoch): its first 10 characters. */
export function queueIdTime(id: QueueId): number {
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + ALPHABET.indexOf(id[i] as string);
  return t;
}

export const parseQueueId = (s: string): QueueId | undefined => (ULID.test(s) ? (s as QueueId) : undefined);

export function siteNameOf(mxHosts: readonly string[]): SiteName {
  const hosts = new Set(mxHosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  return [...hosts].sort().join(',') as SiteName;
}
