/**
 * TLS-RPT (docs/tls.md) wired, as src/fleet.ts wires a fleet: the reports part counting sessions
 * and making each day's reports, and how they leave. https: rua get a POST over verified TLS;
 * mailto: rua get a mail submitted to this node's own SMTP listener, so it is spooled, signed,
 * delivered and retried like any other. No logic of its own beyond the two transports.
 */
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { fleetNodeName, type Config } from './config/index.ts';
import { connectClient } from './delivery/index.ts';
import type { Clock } from './lib/clock.ts';
import { strictHttps } from './lib/strict-https.ts';
import { isSuccess } from './model/reply.ts';
import { openTlsReports, type ReportSender, type TlsReports } from './tls-policy/index.ts';

export const REPORT_SENDING = {
  /** The whole POST of a report, or the whole submission of its mail. */
  timeoutMs: 30_000,
  /** A report receiver's answer read at most this far (only its status matters). */
  maxAnswerBytes: 65_536,
} as const;

export interface TlsRptDeps {
  readonly shard: number;
  readonly txt: (name: string) => Promise<readonly string[] | undefined>;
  readonly addresses: (host: string) => Promise<readonly string[]>;
  /** Where this node takes mail (its first SMTP listener, as bound). */
  readonly ownSmtp: () => { host: string; port: number } | undefined;
  readonly trust: SecureContext | undefined;
  readonly clock: Clock;
  readonly log: Logger;
}

/** With delivery.tls_rpt.enabled, this shard's part in the reports (shard 0 sends them); else undefined. */
export function openTlsRpt(config: Config, deps: TlsRptDeps): TlsReports | undefined {
  const rpt = config.delivery.tls_rpt;
  if (!rpt.enabled) return undefined;
  return openTlsReports(
    {
      dir: `${config.delivery.mta_sts.state_dir}/tlsrpt`, shard: deps.shard, sends: deps.shard === 0,
      organization: rpt.organization || config.hostname,
      contact: rpt.contact || `mailto:postmaster@${config.hostname}`,
      from: rpt.from || `tlsrpt-noreply@${config.hostname}`,
      node: fleetNodeName(config) ?? config.hostname,
    },
    { txt: deps.txt, send: sender(config, deps), clock: deps.clock, log: deps.log },
  );
}

function sender(config: Config, deps: TlsRptDeps): ReportSender {
  return {
    async https(url, gzipped) {
      const target = new URL(url);
      const address = isIP(target.hostname) ? target.hostname : (await deps.addresses(target.hostname))[0];
      if (!address) throw new Error(`${target.hostname} has no address`);
      return post(target, address, gzipped, deps);
    },
    async mail(from, to, message) {
      const own = deps.ownSmtp();
      if (!own) throw new Error('no SMTP listener to submit to');
      const host = own.host === '0.0.0.0' ? '127.0.0.1' : own.host === '::' ? '::1' : own.host;
      const timeouts = { connect: REPORT_SENDING.timeoutMs, greeting: REPORT_SENDING.timeoutMs, command: REPORT_SENDING.timeoutMs, data: REPORT_SENDING.timeoutMs };
      const conn = await connectClient({ host, port: own.port, servername: config.hostname, localName: config.hostname, tls: 'none', timeouts, clock: deps.clock });
      try {
        const body = Buffer.from(message);
        const result = await conn.send({ sender: from, recipients: [to], size: body.length, eightBit: false }, Readable.from([body]));
        const refused = result.kind === 'transaction' ? result.replies.find((r) => !isSuccess(r)) : result.reply;
        if (refused) throw new Error(`refused: ${refused.code} ${refused.text}`);
      } finally {
        await conn.quit();
      }
    },
  };
}

/** A report's POST (RFC 8460 §5.2); the answer's body is not wanted, only its status. */
async function post(target: URL, address: string, gzipped: Buffer, deps: TlsRptDeps): Promise<number> {
  const answer = await strictHttps({
    host: target.hostname, address, port: Number(target.port || 443), path: `${target.pathname}${target.search}`, method: 'POST',
    headers: { 'content-type': 'application/tlsrpt+gzip', 'user-agent': 'Tern TLS-RPT' }, body: gzipped,
    trust: deps.trust, timeoutMs: REPORT_SENDING.timeoutMs, maxBytes: REPORT_SENDING.maxAnswerBytes, what: 'answer', clock: deps.clock,
  });
  if (!answer.ok) throw new Error(answer.error);
  return answer.status;
}
