import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Who may call the admin API. Every `/api/v1/...` call carries `Authorization: Bearer <admin.token>`;
 * `/healthz`, `/readyz` and `/metrics` stay open (a load balancer and Prometheus have no token).
 * With no token configured (allowed on a loopback listener only, src/config/schema.ts) the API is
 * closed rather than open: a local user is not an operator.
 */

export type Access = { readonly ok: true } | { readonly ok: false; readonly status: 401 | 403; readonly error: string };

/** The longest Authorization header read: a token is a few dozen bytes, not a request body. */
export const MAX_AUTHORIZATION_BYTES = 1_024;

export const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/** Decides one request's access to the API; comparison takes the same time whatever the guess. */
export function checkBearer(header: string | undefined, token: string): Access {
  if (token === '') return { ok: false, status: 401, error: 'the admin API is closed: admin.token is not set (docs/operations.md, "Admin API")' };
  if (header === undefined || header === '') return { ok: false, status: 401, error: 'an Authorization: Bearer <admin.token> header is required' };
  if (header.length > MAX_AUTHORIZATION_BYTES) return { ok: false, status: 401, error: `the Authorization header is over ${MAX_AUTHORIZATION_BYTES} bytes` };
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) return { ok: false, status: 401, error: 'the Authorization header must be "Bearer <admin.token>"' };
  // Digests first: timingSafeEqual needs equal lengths, and comparing digests leaks no length.
  const given = createHash('sha256').update(match[1] as string).digest();
  const wanted = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, wanted) ? { ok: true } : { ok: false, status: 403, error: 'the token is not admin.token' };
}
