import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { parseHostPort } from '../lib/net.ts';
import { RepeatedLog } from '../lib/repeated-log.ts';
import type { Readiness } from '../model/readiness.ts';
import { checkBearer, PUBLIC_PATHS } from './access.ts';
import { judgeReadiness, type DrainView } from './readiness.ts';
import { sitesView, type PathFacts, type SitesInput } from './sites.ts';
import type { Answer, Writes } from './writes.ts';

/** The browser dashboard as admin serves it (src/dashboard; the daemon passes it in). */
export interface DashboardPort {
  /** Answers a request under /dashboard; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
  /** Whether an API call carries a dashboard session (cookie and CSRF header). */
  apiSession(req: IncomingMessage, url: URL): unknown;
  tokenChanged(token: string): void;
  start(): void;
  stop(): void;
}

/** What admin shows; asynchronous, since with shards (ADR 0010) each answer is a merge of theirs. */
export interface AdminPorts {
  /** The exposition format's content type. */
  readonly metricsType: string;
  /** Every metric as exposition text, gauges refreshed from live state. */
  readonly metrics: () => Promise<string>;
  readonly queue: () => Promise<unknown>;
  /** Every shard's readiness (undefined: did not answer). */
  readonly readiness: () => Promise<(Readiness | undefined)[]>;
  /** KPIs of one campaign (`meta.campaign`) or delivery (`meta.delivery`), or undefined. */
  readonly kpi: (scope: 'campaign' | 'delivery', id: string) => Promise<unknown>;
  /** Every known delivery path, its pool and its waiting recipients. */
  readonly sites: () => Promise<SitesInput<PathFacts>>;
  /** The write calls and the suspensions list (writes.ts). */
  readonly writes: Writes;
  /** One waiting message, from whichever shard holds it; undefined if none does. */
  readonly message: (id: string) => Promise<unknown>;
  /** Sources, pools and warm-up progress (docs/egress.md). */
  readonly egress: () => unknown;
  /** What receivers said to each source, per (source, site), over egress.reputation_days. */
  readonly reputation: (filter: { source?: string; site?: string }) => unknown;
  /** The suppression list, optionally of one sender domain or address. */
  readonly suppressions: (filter: { domain?: string; address?: string }) => unknown;
  /** Every campaign's KPIs, the most recently active first. */
  readonly campaigns: () => Promise<unknown>;
  /** A page of one campaign's delivery log, newest first (docs/dashboard.md, "Campaigns"). */
  readonly campaignLog: (id: string, query: CampaignLogQuery) => Promise<unknown>;
  /** The same log as CSV lines, a header first. */
  readonly campaignCsv: (id: string, query: Omit<CampaignLogQuery, 'offset' | 'limit'>) => AsyncIterable<string>;
  /** One campaign's events per minute since a time (ms). */
  readonly campaignTimeline: (id: string, since: number) => Promise<unknown>;
  /** POST /api/v1/drain starts a drain (no new mail; delivery goes on) and says how far it is; GET says how far. */
  readonly drain: { start(remote: string | undefined): Promise<DrainView>; view(): Promise<DrainView>; since(): number | undefined };
  /** With cluster.redis: the fleet as this node sees it, and its /readyz check. */
  readonly cluster?: () => { readonly view: unknown; readonly check: string };
  /** The browser dashboard under /dashboard, whose pages call this API with a session (docs/dashboard.md). */
  readonly dashboard?: DashboardPort;
}

export interface CampaignLogQuery { readonly recipient?: string; readonly type?: string; readonly offset: number; readonly limit: number }

const LOG_TYPES = new Set(['relayed', 'delivered', 'soft_bounce', 'failed', 'complaint']);
/** The delivery log's paging and the timeline's reach, as the API accepts them. */
export const LOG_QUERY_LIMITS = { maxOffset: 1_000_000, maxLimit: 500, defaultLimit: 50, maxRecipientChars: 320, maxTimelineHours: 72 } as const;

/** A delivery-log query from the URL, or what is wrong with it. */
function logQuery(query: URLSearchParams): CampaignLogQuery | { error: string } {
  const type = query.get('type') ?? undefined;
  if (type !== undefined && !LOG_TYPES.has(type)) return { error: `type must be one of ${[...LOG_TYPES].join(', ')}` };
  const recipient = query.get('recipient') ?? undefined;
  if (recipient !== undefined && recipient.length > LOG_QUERY_LIMITS.maxRecipientChars) return { error: `recipient is over ${LOG_QUERY_LIMITS.maxRecipientChars} characters` };
  const offset = Number(query.get('offset') ?? 0);
  const limit = Number(query.get('limit') ?? LOG_QUERY_LIMITS.defaultLimit);
  if (!Number.isInteger(offset) || offset < 0 || offset > LOG_QUERY_LIMITS.maxOffset) return { error: `offset must be a whole number from 0 to ${LOG_QUERY_LIMITS.maxOffset}` };
  if (!Number.isInteger(limit) || limit < 1 || limit > LOG_QUERY_LIMITS.maxLimit) return { error: `limit must be a whole number from 1 to ${LOG_QUERY_LIMITS.maxLimit}` };
  return { ...(type ? { type } : {}), ...(recipient ? { recipient } : {}), offset, limit };
}

/** POST paths and the write call each makes. */
const WRITE_CALLS = {
  '/api/v1/suspend': 'suspend', '/api/v1/resume': 'resume', '/api/v1/flush': 'flush', '/api/v1/bounce': 'bounce', '/api/v1/egress/warmup': 'warmup',
  '/api/v1/suppressions/add': 'suppressAdd', '/api/v1/suppressions/remove': 'suppressRemove',
} as const;
/** A write call's JSON body is a few selectors; anything larger is refused unread (413). */
export const MAX_BODY_BYTES = 65_536;

export interface Admin {
  /** SIGHUP: a new token and readiness limit apply to the next request. */
  reconfigure(options: Pick<AdminOptions, 'token' | 'readiness'>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { host: string; port: number } | undefined;
}

/**
 * The admin listener: /healthz, /readyz and /metrics open; every /api/v1/ call behind the bearer
 * token (access.ts): GET queue, sites[/:site], campaigns/:id, deliveries/:id, messages/:id,
 * suspensions, egress, egress/reputation, suppressions; POST suspend, resume, flush, bounce, egress/warmup,
 * suppressions/add, suppressions/remove (writes.ts). Under /dashboard, the browser dashboard
 * (src/dashboard), whose pages may call the API with their session instead of the token.
 */
export interface AdminOptions { readonly listen: string; readonly token: string; readonly readiness: { readonly outbox_stall: number } }

export function createAdmin(initial: AdminOptions, ports: AdminPorts, log: Logger, clock: Clock): Admin {
  let options = initial;
  let server: Server | undefined;
  // A client guessing tokens would otherwise write a line per guess.
  const refusals = new RepeatedLog(log, clock);
  let bound: { host: string; port: number } | undefined;

  const handler = async (path: string, query: URLSearchParams): Promise<Reply> => {
    if (path === '/healthz') return { status: 200, type: 'application/json', body: '{"status":"ok"}\n' };
    if (path === '/readyz') {
      const view = judgeReadiness(await ports.readiness(), options.readiness.outbox_stall, ports.cluster?.().check, ports.drain.since());
      return json(view.status === 'ready' ? 200 : 503, view);
    }
    if (path === '/metrics') return { status: 200, type: ports.metricsType, body: await ports.metrics() };
    if (path === '/api/v1/queue') return json(200, await ports.queue());
    if (path === '/api/v1/drain') return json(200, await ports.drain.view());
    if (path === '/api/v1/cluster') return json(200, ports.cluster ? { enabled: true, ...(ports.cluster().view as object) } : { enabled: false });
    if (path === '/api/v1/suspensions') return answer(ports.writes.list());
    if (path === '/api/v1/egress') return json(200, ports.egress());
    if (path === '/api/v1/suppressions') {
      const domain = query.get('domain')?.toLowerCase();
      const address = query.get('address')?.toLowerCase();
      return json(200, ports.suppressions({ ...(domain ? { domain } : {}), ...(address ? { address } : {}) }));
    }
    if (path === '/api/v1/egress/reputation') {
      const source = query.get('source') ?? undefined;
      const site = query.get('site')?.toLowerCase() ?? undefined;
      return json(200, { pairs: ports.reputation({ ...(source ? { source } : {}), ...(site ? { site } : {}) }) });
    }
    if (path === '/api/v1/sites') return json(200, { sites: sitesView(await ports.sites()) });
    const site = /^\/api\/v1\/sites\/([^/]+)$/.exec(path);
    if (site) {
      const name = decodeURIComponent(site[1] as string).toLowerCase();
      const found = sitesView(await ports.sites()).find((s) => s.site === name);
      return found ? json(200, found) : json(404, { error: `no path to site "${name}" is known (a site is its MX host names, sorted, joined by commas)` });
    }
    const message = /^\/api\/v1\/messages\/([^/]+)$/.exec(path);
    if (message) {
      const id = decodeURIComponent(message[1] as string);
      const view = /^[A-Za-z0-9._-]{1,64}$/.test(id) ? await ports.message(id) : undefined;
      return view === undefined ? json(404, { error: `message ${id} is not in the queue (never accepted, or every recipient is final)` }) : json(200, view);
    }
    if (path === '/api/v1/campaigns') return json(200, { campaigns: await ports.campaigns() });
    const campaign = /^\/api\/v1\/campaigns\/([^/]+)\/(log|log\.csv|timeline)$/.exec(path);
    if (campaign) {
      const id = decodeURIComponent(campaign[1] as string);
      if (campaign[2] === 'timeline') {
        const hours = Number(query.get('hours') ?? 6);
        if (!Number.isInteger(hours) || hours < 1 || hours > LOG_QUERY_LIMITS.maxTimelineHours) return json(400, { error: `hours must be a whole number from 1 to ${LOG_QUERY_LIMITS.maxTimelineHours}` });
        return json(200, { rows: await ports.campaignTimeline(id, clock.now() - hours * 3_600_000) });
      }
      const q = logQuery(query);
      if ('error' in q) return json(400, { error: q.error });
      if (campaign[2] === 'log') return json(200, { ...(await ports.campaignLog(id, q) as object), offset: q.offset, limit: q.limit });
      const { offset: _o, limit: _l, ...filter } = q;
      return { status: 200, type: 'text/csv; charset=utf-8', body: '', stream: ports.campaignCsv(id, filter), filename: `campaign-${id.replace(/[^\w.-]/g, '_')}.csv` };
    }
    const kpi = /^\/api\/v1\/(campaigns|deliveries)\/([^/]+)$/.exec(path);
    if (kpi) {
      const id = decodeURIComponent(kpi[2] as string);
      const view = await ports.kpi(kpi[1] === 'campaigns' ? 'campaign' : 'delivery', id);
      return view === undefined
        ? { status: 404, type: 'application/json', body: `${JSON.stringify({ error: `no events for ${kpi[1] === 'campaigns' ? 'campaign' : 'delivery'} "${id}"` })}\n` }
        : { status: 200, type: 'application/json', body: `${JSON.stringify(view)}\n` };
    }
    return { status: 404, type: 'application/json', body: '{"error":"not found"}\n' };
  };

  return {
    reconfigure({ token, readiness }) {
      if (token !== options.token) ports.dashboard?.tokenChanged(token);
      options = { ...options, token, readiness };
    },
    async start() {
      const { host, port } = parseHostPort(options.listen) as { host: string; port: number };
      ports.dashboard?.start();
      server = createServer((req, res) => {
        const url = new URL(req.url ?? '/', 'http://admin');
        const path = url.pathname;
        if (ports.dashboard?.handle(req, res, url)) return;
        // The dashboard's pages call the API with their session (cookie and CSRF header), no token.
        const viaDashboard = req.headers.authorization === undefined && !PUBLIC_PATHS.has(path) && ports.dashboard?.apiSession(req, url) !== undefined;
        if (!PUBLIC_PATHS.has(path) && !viaDashboard) {
          const access = checkBearer(req.headers.authorization, options.token);
          if (!access.ok) {
            refusals.warn(`${access.status}:${req.socket.remoteAddress}`, { path, method: req.method, remote: req.socket.remoteAddress, status: access.status, error: access.error }, 'admin call refused');
            res.writeHead(access.status, { 'content-type': 'application/json', ...(access.status === 401 ? { 'www-authenticate': 'Bearer realm="tern"' } : {}) })
              .end(`${JSON.stringify({ error: access.error })}\n`);
            return;
          }
        }
        const write = Object.hasOwn(WRITE_CALLS, path) ? WRITE_CALLS[path as keyof typeof WRITE_CALLS] : undefined;
        const remote = viaDashboard ? `${req.socket.remoteAddress} (dashboard)` : req.socket.remoteAddress;
        // A drain is started with POST and followed with GET.
        const drain = path === '/api/v1/drain' && req.method === 'POST';
        if (!drain && req.method !== (write ? 'POST' : 'GET')) {
          res.writeHead(405, { 'content-type': 'application/json', allow: write ? 'POST' : path === '/api/v1/drain' ? 'GET, POST' : 'GET' }).end('{"error":"method not allowed"}\n');
          return;
        }
        const reply: Promise<Reply> = write
          ? readJson(req).then((body) => ('error' in body ? json(body.status, { error: body.error }) : ports.writes[write](body.value, remote).then(answer)))
          : drain ? ports.drain.start(remote).then((view) => json(200, view)) : handler(path, url.searchParams);
        reply.then(
          (r) => (r.stream ? streamReply(res, r, log) : res.writeHead(r.status, { 'content-type': r.type }).end(r.body)),
          (err: unknown) => {
            log.error({ err }, 'admin request failed');
            res.writeHead(500).end();
          },
        );
      });
      await new Promise<void>((resolve, reject) => {
        server?.once('error', reject);
        server?.listen(port, host, () => resolve());
      });
      const a = server.address();
      if (a && typeof a === 'object') bound = { host: a.address, port: a.port };
      log.info({ listen: `${host}:${bound?.port}` }, 'admin listening');
    },
    async stop() {
      ports.dashboard?.stop();
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server?.close(() => resolve()));
    },
    address: () => bound,
  };
}

interface Reply { status: number; type: string; body: string; stream?: AsyncIterable<string>; filename?: string }

/** A long answer (a CSV export) written as it is read, so it never sits whole in memory. */
function streamReply(res: ServerResponse, r: Reply, log: Logger): void {
  res.writeHead(r.status, { 'content-type': r.type, ...(r.filename ? { 'content-disposition': `attachment; filename="${r.filename}"` } : {}) });
  void (async () => {
    try {
      for await (const chunk of r.stream as AsyncIterable<string>) {
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        if (res.destroyed) return;
      }
      res.end();
    } catch (err) {
      log.error({ err }, 'admin: an export failed midway');
      res.destroy();
    }
  })();
}

function json(status: number, body: unknown): { status: number; type: string; body: string } {
  return { status, type: 'application/json', body: `${JSON.stringify(body)}\n` };
}

function answer(a: Answer): { status: number; type: string; body: string } {
  return json(a.status, a.body);
}

/** A write call's body: JSON, at most MAX_BODY_BYTES (413 beyond, unread), an object (400 otherwise). */
async function readJson(req: IncomingMessage): Promise<{ value: unknown } | { status: number; error: string }> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) return { status: 413, error: `the body is over ${MAX_BODY_BYTES} bytes` };
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return { status: 413, error: `the body is over ${MAX_BODY_BYTES} bytes` };
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    const value: unknown = text.trim() === '' ? {} : JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return { status: 400, error: 'the body must be a JSON object' };
    return { value };
  } catch (err) {
    return { status: 400, error: `the body is not JSON: ${(err as Error).message}` };
  }
}
