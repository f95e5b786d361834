
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** ULID-shaped: 10 characters of time then 16 random, so ids sort by arrival. */
export type QueueId = Brand<string, 'QueueId'>;
/** The sorted MX host set of a destination: domains hosted together share limits. */
export type SiteName = Brand<string, 'SiteName'>;

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export function newQueueId(nowMs: number): QueueId {
  let time = '';
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  // A small typed array lives on the V8 heap; randomBytes() would malloc a Buffer per id.
  const random = crypto.getRandomValues(new Uint8Array(16));
  let tail = '';
  for (const byte of random) tail += ALPHABET[byte % 32];
  return (time + tail) as QueueId;
}

export const parseQueueId = (s: string): QueueId | undefined => (ULID.test(s) ? (s as QueueId) : undefined);

export function siteNameOf(mxHosts: readonly string[]): SiteName {
  const hosts = new Set(mxHosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  return [...hosts].sort().join(',') as SiteName;
}
