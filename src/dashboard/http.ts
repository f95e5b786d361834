import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import { loginPage } from './login-page.ts';
import { History, overviewOf, type Overview } from './overview.ts';
import { CSRF_HEADER, SESSION_COOKIE, SessionBook, type DashboardSession } from './session.ts';

/**
 * The dashboard, served by the admin listener under /dashboard (docs/dashboard.md): a sign-in
 * page, the built single-page app (dashboard/, bundled at build time: no CDN, works offline),
 * and a server-sent event stream of the overview. Everything but the sign-in page needs a session.
 */
export interface DashboardOptions {
  /** admin.token at start; `tokenChanged` gives a new one (SIGHUP). */
  readonly token: string;
  /** The built app: index.html, app.js, app.css (dashboard/build.ts). */
  readonly assetsDir: string;
}

export interface DashboardPorts {
  /** Every metric as exposition text (the admin listener's /metrics). */
  readonly metrics: () => Promise<string>;
}

export interface Dashboard {
  /** Answers a request under /dashboard; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
  /**
   * The session an API call made from the app carries: the cookie, and the CSRF token in its
   * header, or for a GET (a download link, which sends no headers) in `?csrf=`.
   */
  apiSession(req: IncomingMessage, url: URL): DashboardSession | undefined;
  /** admin.token changed: every session ends. */
  tokenChanged(token: string): void;
  start(): void;
  stop(): void;
}

/** Limits of the dashboard's own endpoints. */
export const DASHBOARD_LIMITS = {
  /** Sign-in form body. */
  maxLoginBytes: 4_096,
  /** Live streams open at once (each is a browser tab). */
  maxStreams: 32,
  /** How often the overview is sampled and streamed while a page is open... */
  sampleMs: 2_000,
  /** ...and when none is: enough for the minute-by-minute history, at a scrape's cost. */
  idleSampleMs: 30_000,
} as const;

const ASSET_TYPES: Readonly<Record<string, string>> = { 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

/** No script, style, frame or form from anywhere but here; nothing may frame the pages. */
const APP_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export function createDashboard(options: DashboardOptions, ports: DashboardPorts, clock: Clock, log: Logger): Dashboard {
  const sessions = new SessionBook(clock);
  let adminToken = options.token;
  const history = new History();
  const streams = new Set<ServerResponse>();
  const assets = readAssets(options.assetsDir, log);
  let latest: Overview | undefined;
  let timer: Timer | undefined;
  let stopped = false;

  const sample = async (): Promise<void> => {
    try {
      latest = overviewOf(await ports.metrics(), clock.now());
      history.add(latest);
      for (const res of streams) send(res, 'overview', { overview: latest, minute: history.last() });
    } catch (err) {
      log.warn({ err }, 'dashboard: the overview could not be sampled');
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    const every = streams.size > 0 ? DASHBOARD_LIMITS.sampleMs : DASHBOARD_LIMITS.idleSampleMs;
    timer = clock.at(clock.now() + every, () => void sample().finally(schedule));
  };

  const headers = (csp: string): Record<string, string> => ({
    'content-security-policy': csp, 'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY', 'referrer-policy': 'same-origin', 'cache-control': 'no-store',
  });
  const toLogin = (res: ServerResponse): void => void res.writeHead(303, { location: '/dashboard/login', ...headers(LOGIN_CSP) }).end();

  async function signIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const address = req.socket.remoteAddress ?? '';
    if (!sameOrigin(req)) return void res.writeHead(403, { 'content-type': 'text/html; charset=utf-8', ...headers(LOGIN_CSP) }).end(loginPage('This form can only be sent from this page.'));
    if (!sessions.mayTry(address)) return void res.writeHead(429, { 'content-type': 'text/html; charset=utf-8', 'retry-after': '900', ...headers(LOGIN_CSP) }).end(loginPage('Too many wrong tokens from this address; try again in 15 minutes.'));
    const body = await readSmallBody(req, DASHBOARD_LIMITS.maxLoginBytes);
    const given = body === undefined ? undefined : new URLSearchParams(body).get('token') ?? undefined;
    if (given === undefined || !sameToken(given, adminToken)) {
      sessions.failed(address);
      log.warn({ remote: address }, 'dashboard: sign-in refused');
      return void res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', ...headers(LOGIN_CSP) }).end(loginPage(adminToken === '' ? 'The dashboard is closed: admin.token is not set.' : 'That is not the admin token.'));
    }
    const session = sessions.open();
    log.info({ remote: address }, 'dashboard: signed in');
    res.writeHead(303, { location: '/dashboard/', 'set-cookie': `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; SameSite=Strict`, ...headers(LOGIN_CSP) }).end();
  }

  function stream(req: IncomingMessage, res: ServerResponse, session: DashboardSession, url: URL): void {
    if (!sameCsrf(url.searchParams.get('csrf') ?? undefined, session)) return void res.writeHead(403, headers(APP_CSP)).end();
    if (streams.size >= DASHBOARD_LIMITS.maxStreams) return void res.writeHead(503, { 'retry-after': '10', ...headers(APP_CSP) }).end();
    res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...headers(APP_CSP) });
    send(res, 'history', { rows: history.rows(), ...(latest ? { overview: latest } : {}) });
    streams.add(res);
    // The first viewer should not wait out an idle interval for the next sample.
    if (streams.size === 1) {
      timer?.cancel();
      void sample().finally(schedule);
    }
    req.on('close', () => streams.delete(res));
  }

  function route(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const path = url.pathname;
    if (path === '/dashboard') return void res.writeHead(308, { location: '/dashboard/' }).end();
    if (path === '/dashboard/login') {
      if (req.method === 'POST') {
        return void signIn(req, res).catch((err: unknown) => {
          log.warn({ err }, 'dashboard: a sign-in could not be read');
          res.destroy();
        });
      }
      return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...headers(LOGIN_CSP) }).end(loginPage());
    }
    const session = sessions.find(req.headers.cookie);
    if (!session) return toLogin(res);
    if (path === '/dashboard/logout') return signOut(req, res, session);
    if (path === '/dashboard/api/stream') return stream(req, res, session, url);
    const asset = /^\/dashboard\/assets\/([\w.-]+)$/.exec(path)?.[1];
    if (asset) {
      const body = assets?.files.get(asset);
      if (!body) return void res.writeHead(404, headers(APP_CSP)).end();
      return void res.writeHead(200, { 'content-type': ASSET_TYPES[asset] ?? 'application/octet-stream', ...headers(APP_CSP) }).end(body);
    }
    // Every other path is a page of the app, which routes itself.
    if (!assets) return void res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('The dashboard is not built: run `npm run build:dashboard` (docs/dashboard.md).\n');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...headers(APP_CSP) }).end(assets.index.replace('%CSRF%', session.csrf));
  }

  function signOut(req: IncomingMessage, res: ServerResponse, session: DashboardSession): void {
    if (req.method !== 'POST' || !sameCsrf(headerOf(req, CSRF_HEADER), session)) return void res.writeHead(403, headers(APP_CSP)).end();
    sessions.close(session.id);
    res.writeHead(204, { 'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`, ...headers(APP_CSP) }).end();
  }

  return {
    handle(req, res, url) {
      if (url.pathname !== '/dashboard' && !url.pathname.startsWith('/dashboard/')) return false;
      route(req, res, url);
      return true;
    },
    apiSession(req, url) {
      const session = sessions.find(req.headers.cookie);
      if (!session) return undefined;
      const given = headerOf(req, CSRF_HEADER) ?? (req.method === 'GET' ? url.searchParams.get('csrf') ?? undefined : undefined);
      return sameCsrf(given, session) ? session : undefined;
    },
    tokenChanged(token) {
      adminToken = token;
      sessions.closeAll();
    },
    start() {
      void sample();
      schedule();
    },
    stop() {
      stopped = true;
      timer?.cancel();
      for (const res of streams) res.end();
      streams.clear();
    },
  };
}

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function readAssets(dir: string, log: Logger): { index: string; files: Map<string, Buffer> } | undefined {
  try {
    const files = new Map(Object.keys(ASSET_TYPES).map((name) => [name, readFileSync(join(dir, name))]));
    return { index: readFileSync(join(dir, 'index.html'), 'utf8'), files };
  } catch (err) {
    log.warn({ dir, error: (err as Error).message }, 'dashboard: not built (npm run build:dashboard); /dashboard answers 503');
    return undefined;
  }
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * A form posted from elsewhere (another site's page) is refused: browsers send Origin with a
 * POST. The pages' Referrer-Policy is same-origin, not no-referrer, under which a browser sends
 * "Origin: null" even from the page itself.
 */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = headerOf(req, 'origin');
  if (origin === undefined || origin === 'null') return origin === undefined;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

function sameToken(given: string, wanted: string): boolean {
  if (wanted === '') return false;
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(wanted).digest());
}

function sameCsrf(given: string | undefined, session: DashboardSession): boolean {
  return given !== undefined && sameToken(given, session.csrf);
}

async function readSmallBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
