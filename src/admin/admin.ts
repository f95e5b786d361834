import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { parseHostPort } from '../lib/net.ts';
import { RepeatedLog } from '../lib/repeated-log.ts';
import type { Readiness } from '../model/readiness.ts';
import { checkBearer, PUBLIC_PATHS } from './access.ts';
import { judgeReadiness } from './readiness.ts';
import { sitesView, type PathFacts, type SitesInput } from './sites.ts';

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
}

export interface Admin {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { host: string; port: number } | undefined;
}

/**
 * The admin listener: /healthz, /readyz and /metrics open; every /api/v1/ call behind the bearer
 * token (access.ts): GET queue, sites[/:site], campaigns/:id, deliveries/:id.
 */
export function createAdmin(options: { listen: string; token: string; readiness: { outbox_stall: number } }, ports: AdminPorts, log: Logger, clock: Clock): Admin {
  let server: Server | undefined;
  // A client guessing tokens would otherwise write a line per guess.
  const refusals = new RepeatedLog(log, clock);
  let bound: { host: string; port: number } | undefined;

  const handler = async (path: string): Promise<{ status: number; type: string; body: string }> => {
    if (path === '/healthz') return { status: 200, type: 'application/json', body: '{"status":"ok"}\n' };
    if (path === '/readyz') {
      const view = judgeReadiness(await ports.readiness(), options.readiness.outbox_stall);
      return json(view.status === 'ready' ? 200 : 503, view);
    }
    if (path === '/metrics') return { status: 200, type: ports.metricsType, body: await ports.metrics() };
    if (path === '/api/v1/queue') return json(200, await ports.queue());
    if (path === '/api/v1/sites') return json(200, { sites: sitesView(await ports.sites()) });
    const site = /^\/api\/v1\/sites\/([^/]+)$/.exec(path);
    if (site) {
      const name = decodeURIComponent(site[1] as string).toLowerCase();
      const found = sitesView(await ports.sites()).find((s) => s.site === name);
      return found ? json(200, found) : json(404, { error: `no path to site "${name}" is known (a site is its MX host names, sorted, joined by commas)` });
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
    async start() {
      const { host, port } = parseHostPort(options.listen) as { host: string; port: number };
      server = createServer((req, res) => {
        const path = new URL(req.url ?? '/', 'http://admin').pathname;
        if (!PUBLIC_PATHS.has(path)) {
          const access = checkBearer(req.headers.authorization, options.token);
          if (!access.ok) {
            refusals.warn(`${access.status}:${req.socket.remoteAddress}`, { path, method: req.method, remote: req.socket.remoteAddress, status: access.status, error: access.error }, 'admin call refused');
            res.writeHead(access.status, { 'content-type': 'application/json', ...(access.status === 401 ? { 'www-authenticate': 'Bearer realm="tern"' } : {}) })
              .end(`${JSON.stringify({ error: access.error })}\n`);
            return;
          }
        }
        if (req.method !== 'GET') {
          res.writeHead(405, { 'content-type': 'application/json', allow: 'GET' }).end('{"error":"method not allowed"}\n');
          return;
        }
        handler(path).then(
          (r) => res.writeHead(r.status, { 'content-type': r.type }).end(r.body),
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
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server?.close(() => resolve()));
    },
    address: () => bound,
  };
}

function json(status: number, body: unknown): { status: number; type: string; body: string } {
  return { status, type: 'application/json', body: `${JSON.stringify(body)}\n` };
}

