/**
 * AUTH passwords as stored in smtp.auth.users: either plaintext or a scrypt hash in a PHC-like
 * string, `$scrypt$ln=15,r=8,p=1$<base64 salt>$<base64 hash>` (ln: log2 of scrypt's N; r, p as
 * in RFC 7914; standard base64 with padding). `tern auth hash` makes them. Both forms are compared
 * in constant time; hashing runs in libuv's thread pool, never on the event loop.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const PREFIX = '$scrypt$';
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;
/** N = 2^15, r = 8: 32 MiB and some 50-100 ms per check (OWASP's scrypt minimum is N = 2^17 with r = 8, p = 1 for 128 MiB; we trade for AUTH latency). */
export const DEFAULT_COST = { ln: 15, r: 8, p: 1 } as const;
/** A hash asking for more than this is refused rather than allowed to take the process' memory. */
const MAX_LN = 20;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

/**
 * Checked instead when the user name is unknown, so that a wrong name takes as long as a wrong
 * password (no user enumeration by timing). Matches no password: any salt and hash will do.
 */
export const UNKNOWN_USER = `$scrypt$ln=${DEFAULT_COST.ln},r=${DEFAULT_COST.r},p=${DEFAULT_COST.p}$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=`;

export interface ScryptCost { readonly ln: number; readonly r: number; readonly p: number }

export function isHashed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, HASH_BYTES, cost);
  return `${PREFIX}ln=${cost.ln},r=${cost.r},p=${cost.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Whether `given` matches `stored` (a hash or plaintext); a malformed hash matches nothing. */
export async function verifyPassword(stored: string, given: string): Promise<boolean> {
  if (!isHashed(stored)) return sameSecret(stored, given);
  const m = FORMAT.exec(stored);
  if (!m) return false;
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const expected = Buffer.from(m[5] as string, 'base64');
  if (cost.ln > MAX_LN || cost.ln < 1 || cost.r < 1 || cost.p < 1 || expected.length === 0) return false;
  const actual = await derive(given, Buffer.from(m[4] as string, 'base64'), expected.length, cost);
  return timingSafeEqual(actual, expected);
}

/** Plaintext, compared as digests: equal lengths, so neither the length nor the bytes leak by timing. */
function sameSecret(expected: string, given: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(expected), digest(given));
}

function derive(password: string, salt: Buffer, length: number, cost: ScryptCost): Promise<Buffer> {
  const N = 2 ** cost.ln;
  const options: ScryptOptions = { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r };
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, length, options, (err, key) => (err ? reject(err) : resolve(key))));
}
