import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { parseHostPort } from '../lib/net.ts';
import { REPLIES, render, SmtpServer, type DataStream } from './smtp-server.ts';

/**
 * The bounce listener (bounce.listen; docs/bounces.md, "Asynchronous bounces"): mail comes back
 * here to a return path Tern signed — a DSN, a complaint, an out-of-office. Only those addresses
 * are accepted (anything else is 550 5.1.1 at RCPT, counted as forged); each message is handed
 * over whole, once per return path it was sent to, and answered 250 once it has been read.
 */
export interface ReturnsOptions {
  readonly listen: readonly string[];
  readonly hostname: string;
  /** bounce.domain: the only domain accepted. */
  readonly domain: string;
  readonly maxSize: number;
  /** smtp.tls (file paths): STARTTLS is offered with the relay listener's certificate. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface ReturnsPorts {
  /** Whether a local part is a return path Tern signed. */
  known(localPart: string): boolean;
  /** A returned message, whole, for one return path it was sent to. */
  received(raw: Buffer, localPart: string): Promise<void>;
  /** RCPT to anything else (counted). */
  refused?(address: string): void;
}

export interface ReturnsIngress {
  start(): Promise<void>;
  stop(): Promise<void>;
  addresses(): { host: string; port: number }[];
}

/** Returned mail is read whole: bounces and complaints quote the original, a few hundred KB at most. */
export const MAX_RETURN_SIZE = 10_000_000;
/**
 * The bounce listener's own limits (docs/bounces.md, "The listener"). It faces the whole
 * internet, not one campaign tool: few recipients per message (a DSN goes to one return path),
 * fewer sessions than the relay listener, and a short idle timeout. Everything else is the relay
 * listener's DEFAULT_LIMITS (error limit, per-client sessions, line length, deadlines).
 */
export const RETURN_LIMITS = {
  maxRecipients: 100,
  maxClients: 100,
  socketTimeoutMs: 60_000,
} as const;

export function createReturnsIngress(options: ReturnsOptions, ports: ReturnsPorts, log: Logger): ReturnsIngress {
  const servers: SmtpServer[] = [];
  const tls = options.tls ? { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) } : undefined;
  const bound: { host: string; port: number }[] = [];
  const localPartOf = (address: string): string | undefined => {
    const at = address.lastIndexOf('@');
    return at > 0 && address.slice(at + 1).toLowerCase() === options.domain ? address.slice(0, at) : undefined;
  };
  const server = (): SmtpServer => new SmtpServer({
    name: options.hostname, banner: 'Tern bounces', size: options.maxSize,
    maxRecipients: RETURN_LIMITS.maxRecipients, maxClients: RETURN_LIMITS.maxClients, socketTimeout: RETURN_LIMITS.socketTimeoutMs,
    ...(tls ? { tls } : {}),
    authOffered: () => false,
  }, {
    auth: () => render(REPLIES.authNotEnabled),
    mailFrom: () => undefined,
    rcptTo(address) {
      const local = localPartOf(address.address);
      if (local !== undefined && ports.known(local)) return undefined;
      ports.refused?.(address.address);
      return render(REPLIES.returnUnknown, { address: address.address });
    },
    async data(stream: DataStream, session) {
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      if (stream.sizeExceeded) return render(REPLIES.messageTooBig, { limit: options.maxSize });
      if (stream.refusal) return stream.refusal;
      const raw = Buffer.concat(chunks);
      for (const rcpt of session.envelope.rcptTo) {
        const local = localPartOf(rcpt.address);
        if (local !== undefined) await ports.received(raw, local).catch((err: unknown) => log.error({ err, rcpt: rcpt.address }, 'returns: a returned message could not be processed'));
      }
      return render(REPLIES.returnReceived).text;
    },
  });
  return {
    async start() {
      for (const entry of options.listen) {
        const { host, port } = parseHostPort(entry) as { host: string; port: number };
        const s = server();
        await s.listen(port, host);
        const a = s.server.address();
        if (a && typeof a === 'object') bound.push({ host: a.address, port: a.port });
        servers.push(s);
        log.info({ listen: `${host}:${bound.at(-1)?.port}`, domain: options.domain }, 'bounce listener listening');
      }
    },
    async stop() {
      await Promise.all(servers.map((s) => s.close()));
    },
    addresses: () => [...bound],
  };
}
