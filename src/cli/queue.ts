import { parseArgs } from 'node:util';
import { loadConfig, resolveConfigPath, type Config } from '../config/index.ts';
import { parseHostPort } from '../lib/net.ts';
import type { Io } from './cli.ts';

/**
 * `tern queue list|show|suspend|resume|flush|bounce`: the admin API's calls from a shell, for an SRE in an
 * incident. The address and token come from the config (`admin.listen`, `admin.token` or
 * $TERN_ADMIN_TOKEN); output is a line or two for a person, or the API's JSON with --json.
 * Exit 0 when the call succeeded, 1 when the API refused it or could not be reached, 2 on usage.
 */
export const QUEUE_USAGE = `  queue list [--json]            the queue's counts and the suspensions in force
  queue suspend (--domain D | --site S) [--duration 1h] [--reason TEXT] [--json]
                                 hold a destination's mail in the queue (at most 30d)
  queue resume (--domain D | --site S) [--json]
                                 end a suspension; its held mail goes now
  queue flush (--campaign C | --delivery D | --domain D | --site S | --queue-id Q) [--json]
                                 retry the waiting mail it names now
  queue bounce (--campaign C | --delivery D | --domain D | --site S | --queue-id Q) [--reason TEXT] [--json]
                                 fail the waiting mail it names (a "failed" event each, cause "admin")
  queue show QUEUE_ID [--json]   one message: each recipient's state, attempts, last reply, next attempt`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  domain: { type: 'string' },
  site: { type: 'string' },
  duration: { type: 'string' },
  reason: { type: 'string' },
  campaign: { type: 'string' },
  delivery: { type: 'string' },
  'queue-id': { type: 'string' },
} as const;

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

interface Call { readonly method: 'GET' | 'POST'; readonly path: string; readonly body?: Record<string, string> }

/** The admin listener as seen from this machine: a wildcard bind is reached on loopback. */
function adminBase(config: Config): string {
  const { host, port } = parseHostPort(config.admin.listen) as { host: string; port: number };
  const reach = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reach.includes(':') ? `[${reach}]` : reach}:${port}`;
}

function pick(values: Values, keys: readonly (keyof Values)[]): Record<string, string> {
  return Object.fromEntries(keys.flatMap((k) => (typeof values[k] === 'string' ? [[k === 'queue-id' ? 'queue_id' : k, values[k] as string]] : [])));
}

function callFor(sub: string, values: Values, positionals: readonly string[]): Call | string {
  switch (sub) {
    case 'show':
      return positionals.length === 1 ? { method: 'GET', path: `/api/v1/messages/${encodeURIComponent(positionals[0] as string)}` } : 'show takes one queue id';
    case 'bounce':
      return { method: 'POST', path: '/api/v1/bounce', body: pick(values, ['campaign', 'delivery', 'domain', 'site', 'queue-id', 'reason']) };
    case 'list':
      return { method: 'GET', path: '/api/v1/queue' };
    case 'suspend':
      return { method: 'POST', path: '/api/v1/suspend', body: pick(values, ['domain', 'site', 'duration', 'reason']) };
    case 'resume':
      return { method: 'POST', path: '/api/v1/resume', body: pick(values, ['domain', 'site']) };
    case 'flush':
      return { method: 'POST', path: '/api/v1/flush', body: pick(values, ['campaign', 'delivery', 'domain', 'site', 'queue-id']) };
    default:
      return `unknown subcommand "${sub}" (list, show, suspend, resume, flush, bounce)`;
  }
}

export async function queueCommand(args: readonly string[], io: Io): Promise<number> {
  const [sub = '', ...rest] = args;
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: true }) as { values: Values; positionals: string[] });
  } catch (err) {
    io.err(`tern queue: ${(err as Error).message}\n${QUEUE_USAGE}`);
    return 2;
  }
  const call = callFor(sub, values, positionals);
  if (typeof call === 'string') {
    io.err(`tern queue: ${call}\n${QUEUE_USAGE}`);
    return 2;
  }
  const loaded = loadConfig(resolveConfigPath(values.config, io.env, io.cwd));
  if (!loaded.ok) {
    io.err(`tern queue: ${loaded.source}: ${loaded.problems.map((p) => `${p.path}: ${p.problem}`).join('; ')}`);
    return 1;
  }
  const base = adminBase(loaded.config);
  const ask = async (c: Call): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base}${c.path}`, {
      method: c.method,
      headers: { authorization: `Bearer ${loaded.config.admin.token}`, ...(c.body ? { 'content-type': 'application/json' } : {}) },
      ...(c.body ? { body: JSON.stringify(c.body) } : {}),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  };
  try {
    const answer = await ask(call);
    const suspensions = sub === 'list' && answer.status === 200 ? await ask({ method: 'GET', path: '/api/v1/suspensions' }) : undefined;
    const body = suspensions ? { ...answer.body, suspensions: suspensions.body.suspensions ?? [] } : answer.body;
    if (answer.status !== 200) {
      if (values.json) io.out(JSON.stringify({ status: answer.status, ...body }));
      io.err(`tern queue ${sub}: ${answer.status} ${describeError(body)}`);
      return 1;
    }
    if (values.json) io.out(JSON.stringify(body));
    else for (const line of describe(sub, body)) io.out(line);
    return 0;
  } catch (err) {
    io.err(`tern queue ${sub}: cannot reach the admin API at ${base}: ${(err as Error).message}`);
    return 1;
  }
}

/** A slow flush reads every waiting message; a minute is enough for a large queue on this machine's disks. */
const REQUEST_TIMEOUT_MS = 120_000;

function describeError(body: any): string {
  const problems = Array.isArray(body.problems) ? `: ${body.problems.map((p: { path: string; problem: string }) => `${p.path}: ${p.problem}`).join('; ')}` : '';
  return `${body.error ?? 'error'}${problems}`;
}

function left(s: { remaining_s: number }): string {
  const m = Math.ceil(s.remaining_s / 60);
  return m >= 120 ? `${Math.round(m / 60)} h left` : `${m} min left`;
}

function describe(sub: string, body: any): string[] {
  switch (sub) {
    case 'list': {
      const lines = [
        `${body.recipients} recipients waiting in ${body.scheduled} messages, ${body.active} being attempted; ${body.delivery.connections} connections to ${body.delivery.sites} sites`,
        `webhook backlog: ${body.feedback.pending} events`,
      ];
      if (body.suspensions.length === 0) return [...lines, 'no suspensions'];
      return [...lines, 'suspended:', ...body.suspensions.map((s: any) => `  ${s.target} ${s.name} until ${s.until} (${left(s)})${s.reason ? `: ${s.reason}` : ''}`)];
    }
    case 'suspend': {
      const s = body.suspended;
      return [`suspended ${s.target} ${s.name} until ${s.until} (${left(s)})${s.reason ? `: ${s.reason}` : ''}`];
    }
    case 'resume':
      return [`resumed ${body.resumed.target} ${body.resumed.name}: ${body.released.recipients} recipients in ${body.released.messages} messages go now`];
    case 'bounce':
      return [`bounced ${Object.entries(body.bounced).map(([k, v]) => `${k} ${v}`).join('')}: ${body.recipients} recipients in ${body.messages} messages fail now (cause "admin")`];
    case 'show':
      return [
        `${body.queue_id} from ${body.sender}, received ${body.received_at}, expires ${body.expires_at}: ${body.state}${body.bounce !== undefined ? ' (bounced by an operator)' : ''}`,
        ...body.recipients.map((r: any) => `  ${r.recipient}: ${r.state}, ${r.attempts} attempt${r.attempts === 1 ? '' : 's'}${r.last_reply ? `, last "${r.last_reply}"` : ''}${r.next_attempt ? `, next ${r.next_attempt}` : ''}`),
      ];
    default:
      return [`flushed ${Object.entries(body.flushed).map(([k, v]) => `${k} ${v}`).join('')}: ${body.recipients} recipients in ${body.messages} messages retried now`];
  }
}
