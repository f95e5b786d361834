import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';

/**
 * The dashboard's browser sessions (docs/dashboard.md, "Access"). A person signs in once with
 * admin.token; the browser then holds an opaque session id in an HttpOnly, SameSite=Strict
 * cookie, never the token. Every API call made with the cookie must also carry the session's
 * CSRF token in a header, which a page of another site can neither read nor send: the cookie
 * alone authorises nothing.
 */
export interface DashboardSession {
  readonly id: string;
  readonly csrf: string;
  /** When it lapses if unused (ms). */
  expires: number;
}

/** Limits of the session book, each named once. */
export const SESSION_LIMITS = {
  /** A session unused this long lapses. */
  idleMs: 8 * 3_600_000,
  /** Sessions held at once; past this the least recently used goes (a login loop cannot fill memory). */
  max: 256,
  /** Failed sign-ins from one address, per window, before the form refuses (429). */
  failures: 10,
  failureWindowMs: 15 * 60_000,
} as const;

export const SESSION_COOKIE = 'tern_session';
export const CSRF_HEADER = 'x-tern-csrf';

export class SessionBook {
  readonly #clock: Clock;
  /** Insertion order is use order: a touched session is moved to the end. */
  readonly #sessions = new Map<string, DashboardSession>();
  readonly #failures = new Map<string, { count: number; since: number }>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  open(): DashboardSession {
    const session = { id: token(), csrf: token(), expires: this.#clock.now() + SESSION_LIMITS.idleMs };
    this.#sessions.set(session.id, session);
    while (this.#sessions.size > SESSION_LIMITS.max) this.#sessions.delete(this.#sessions.keys().next().value as string);
    return session;
  }

  /** The live session a Cookie header names, touched; undefined when none. */
  find(cookieHeader: string | undefined): DashboardSession | undefined {
    const id = cookieValue(cookieHeader, SESSION_COOKIE);
    const session = id ? this.#sessions.get(id) : undefined;
    if (!session) return undefined;
    const now = this.#clock.now();
    this.#sessions.delete(session.id);
    if (session.expires <= now) return undefined;
    session.expires = now + SESSION_LIMITS.idleMs;
    this.#sessions.set(session.id, session);
    return session;
  }

  close(id: string): void {
    this.#sessions.delete(id);
  }

  /** A new admin.token (SIGHUP): sessions opened with the old one end. */
  closeAll(): void {
    this.#sessions.clear();
  }

  /** Whether an address may try to sign in now. */
  mayTry(address: string): boolean {
    const f = this.#failures.get(address);
    if (!f || this.#clock.now() - f.since > SESSION_LIMITS.failureWindowMs) return true;
    return f.count < SESSION_LIMITS.failures;
  }

  failed(address: string): void {
    const now = this.#clock.now();
    const f = this.#failures.get(address);
    if (!f || now - f.since > SESSION_LIMITS.failureWindowMs) this.#failures.set(address, { count: 1, since: now });
    else f.count += 1;
    // Stale windows go as new ones come; the map stays as small as the recent guessers.
    for (const [a, v] of this.#failures) if (now - v.since > SESSION_LIMITS.failureWindowMs) this.#failures.delete(a);
  }
}

function token(): string {
  return randomBytes(24).toString('base64url');
}

/** One cookie's value from a Cookie header (RFC 6265 §5.4), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8_192) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}
