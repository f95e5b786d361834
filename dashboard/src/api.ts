/** Calls to Tern's admin API from the page: the session cookie goes by itself, the CSRF token in a header. */
export const csrf = (): string => document.querySelector<HTMLMetaElement>('meta[name="tern-csrf"]')?.content ?? '';

export class SignedOut extends Error {}

export async function api<T>(path: string, init: { method?: 'GET' | 'POST'; body?: unknown } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: { 'x-tern-csrf': csrf(), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    credentials: 'same-origin',
  });
  if (res.status === 401 || res.status === 403) throw new SignedOut(`signed out (${res.status})`);
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

/** The live overview stream; the CSRF token rides in the URL, since EventSource sends no headers. */
export function openStream(): EventSource {
  return new EventSource(`/dashboard/api/stream?csrf=${encodeURIComponent(csrf())}`);
}

export async function signOut(): Promise<void> {
  await fetch('/dashboard/logout', { method: 'POST', headers: { 'x-tern-csrf': csrf() }, credentials: 'same-origin' });
  location.assign('/dashboard/login');
}
