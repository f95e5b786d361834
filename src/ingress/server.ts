import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { SmtpConfig } from '../config/index.ts';
import type { Clock } from '../lib/clock.ts';
import { createNetworkList, parseHostPort } from '../lib/net.ts';
import { pipeChain } from '../lib/streams.ts';
import type { Envelope } from '../model/envelope.ts';
import { newQueueId, type QueueId } from '../model/ids.ts';
import { checkMailbox } from './address.ts';
import { parseMeta } from './meta.ts';
import { receivedHeader } from './received.ts';
import { MessageRewriter } from './rewrite.ts';

/** What ingress needs from the spool; it never sees the queue, only `accept`. */
export interface IngressPorts {
  begin(id: QueueId): Promise<{ stream: Writable; commit(e: Envelope): Promise<void>; abort(): Promise<void> }>;
  healthy(): Promise<boolean>;
  /**
   * Called once the message is durable; the 250 waits for it (the daemon makes the `relayed`
   * events durable here). A rejection means the message was withdrawn: the client gets a 451.
   */
  accept(envelope: Envelope): void | Promise<void>;
  /**
   * Optional: a pass-through stream that sees the rewritten message on its way to disk, and
   * then yields header lines to send on top of it (the daemon wires DKIM signing here).
   */
  observeBody?(receivedAt: number): { stream: Duplex; finish(): Promise<string> };
}

export interface IngressOptions extends SmtpConfig {
  readonly hostname: string;
  readonly validity: number;
}

export interface Ingress {
  start(): Promise<void>;
  /** Stop accepting; in-flight transactions finish (smtp-server closes idle ones). */
  stop(): Promise<void>;
  /** Bound addresses, useful when listening on port 0. */
  addresses(): { host: string; port: number }[];
}

const MAX_HEADER_BYTES = 1024 * 1024;

/** smtp-server callbacks take an Error with responseCode; the text carries our enhanced code. */
function smtpError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

export function createIngress(options: IngressOptions, ports: IngressPorts, deps: { clock: Clock; log: Logger }): Ingress {
  const { clock, log } = deps;
  const mayRelay = createNetworkList(options.allow_networks);
  const servers: SMTPServer[] = [];
  const bound: { host: string; port: number }[] = [];
  const tls = options.tls ? { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) } : undefined;
  const authUsers = options.auth.users;
  const authEnabled = authUsers.length > 0 && (tls !== undefined || options.auth.allow_insecure);

  const relayAllowed = (session: SMTPServerSession): boolean => session.user !== undefined || mayRelay(session.remoteAddress);

  function onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, done: (err: Error | null | undefined, res?: { user: string }) => void): void {
    const user = authUsers.find((u) => u.username === auth.username);
    if (auth.method === 'XOAUTH2' || !user || !sameSecret(user.password, auth.password ?? '')) {
      log.warn({ event: 'auth_failed', remote_ip: session.remoteAddress, username: auth.username }, 'authentication failed');
      return done(smtpError(535, '5.7.8 Authentication credentials invalid'));
    }
    done(null, { user: user.username });
  }

  function onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, done: (err?: Error | null) => void): void {
    if (!relayAllowed(session)) return done(smtpError(530, '5.7.0 Authentication required'));
    if (address.address !== '') {
      const check = checkMailbox(address.address);
      if (!check.ok) return done(smtpError(553, `5.1.7 Bad sender address <${address.address}>: ${check.problem}`));
    }
    ports.healthy().then(
      (ok) => done(ok ? null : smtpError(452, '4.3.1 Insufficient system storage, try again later')),
      () => done(smtpError(452, '4.3.1 Insufficient system storage, try again later')),
    );
  }

  function onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, done: (err?: Error | null) => void): void {
    if (!relayAllowed(session)) return done(smtpError(530, '5.7.0 Authentication required'));
    const check = checkMailbox(address.address);
    if (!check.ok) return done(smtpError(553, `5.1.3 Bad recipient address <${address.address}>: ${check.problem}`));
    done();
  }

  function onData(stream: SMTPServerDataStream, session: SMTPServerSession, done: (err?: Error | null, message?: string) => void): void {
    receive(stream, session).then(
      (reply) => (typeof reply === 'string' ? done(null, reply) : done(reply)),
      (err: unknown) => {
        log.error({ err, remote_ip: session.remoteAddress }, 'unexpected error while receiving a message');
        done(smtpError(451, '4.3.0 Local error in processing, try again later'));
      },
    );
  }

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string | Error> {
    const now = clock.now();
    const id = newQueueId(now);
    const rcpts = session.envelope.rcptTo;
    let writer: Awaited<ReturnType<IngressPorts['begin']>>;
    try {
      writer = await ports.begin(id);
    } catch (err) {
      log.error({ err, queue_id: id }, 'spool unavailable');
      return smtpError(452, '4.3.1 Insufficient system storage, try again later');
    }
    const rewriter = new MessageRewriter({
      maxHeaderBytes: MAX_HEADER_BYTES,
      prepend: (facts) =>
        receivedHeader({
          helo: session.hostNameAppearsAs || session.clientHostname || 'unknown',
          clientIp: session.remoteAddress,
          hostname: options.hostname,
          queueId: id,
          tls: session.secure,
          authenticated: session.user !== undefined,
          ...(rcpts.length === 1 ? { recipient: rcpts[0]?.address as string } : {}),
          at: now,
        }) + (facts.messageId ? '' : `Message-ID: <${id}@${options.hostname}>\r\n`),
    });
    const observer = ports.observeBody?.(now);
    const failure = await spoolStream(stream, rewriter, writer.stream, observer?.stream);
    const refusal = failure
      ? smtpError(452, '4.3.1 Insufficient system storage, try again later')
      : stream.sizeExceeded
        ? smtpError(552, `5.3.4 Message size exceeds the fixed maximum of ${options.max_message_size} bytes`)
        : rewriter.problem
          ? smtpError(554, `5.6.0 Message refused: ${rewriter.problem}`)
          : undefined;
    const meta = parseMeta(rewriter.facts.metaValues);
    if (refusal || !meta.ok) {
      await writer.abort();
      if (failure) log.error({ err: failure, queue_id: id }, 'spool write failed');
      return refusal ?? smtpError(554, `5.6.0 ${meta.ok ? '' : meta.problem}`);
    }
    let prepend = '';
    try {
      prepend = observer ? await observer.finish() : '';
    } catch (err) {
      await writer.abort();
      log.error({ err, queue_id: id }, 'signing failed');
      return smtpError(451, '4.3.0 Local error in processing (signing), try again later');
    }
    const envelope: Envelope = {
      id,
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients: rcpts.map((r) => ({
        address: r.address,
        ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
        ...(r.dsn?.notify ? { notify: r.dsn.notify } : {}),
      })),
      messageId: rewriter.facts.messageId ?? `<${id}@${options.hostname}>`,
      meta: meta.meta,
      ...(session.envelope.dsn?.envid ? { envid: session.envelope.dsn.envid } : {}),
      ...(session.envelope.dsn?.ret ? { ret: session.envelope.dsn.ret } : {}),
      receivedAt: now,
      expiresAt: now + (meta.validityMs ?? options.validity),
      smtputf8: session.envelope.smtpUtf8 === true,
      eightBit: session.envelope.bodyType === '8bitmime',
      client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs || '', ...(session.user ? { user: String(session.user) } : {}) },
      bodySize: rewriter.bytesOut,
      ...(prepend ? { prepend } : {}),
    };
    try {
      await writer.commit(envelope);
    } catch (err) {
      log.error({ err, queue_id: id }, 'spool commit failed');
      return smtpError(452, '4.3.1 Insufficient system storage, try again later');
    }
    try {
      await ports.accept(envelope);
    } catch (err) {
      log.error({ err, queue_id: id }, 'message withdrawn after commit');
      return smtpError(451, '4.3.0 Local error in processing, try again later');
    }
    log.info({ event: 'accepted', queue_id: id, sender: envelope.sender, rcpts: rcpts.length, size: envelope.bodySize, remote_ip: session.remoteAddress }, 'message accepted');
    return `2.0.0 Ok: queued as ${id}`;
  }

  const disabled = [...(tls ? [] : ['STARTTLS']), ...(authEnabled ? [] : ['AUTH'])];
  // AUTH is not even advertised before STARTTLS: "AUTH PLAIN <credentials>" in one line would
  // put the password on the wire before the server could refuse it.
  const hideAuthUntilTls = authEnabled && tls !== undefined && !options.auth.allow_insecure;

  function onConnect(session: SMTPServerSession, done: (err?: Error | null) => void): void {
    if (hideAuthUntilTls) (session as SMTPServerSession & { disabledCommands?: string[] }).disabledCommands = [...disabled, 'AUTH'];
    done();
  }

  function onSecure(_socket: unknown, session: SMTPServerSession, done: (err?: Error | null) => void): void {
    (session as SMTPServerSession & { disabledCommands?: string[] }).disabledCommands = disabled;
    done();
  }

  function buildServer(): SMTPServer {
    const server = new SMTPServer({
      name: options.hostname,
      banner: options.banner,
      size: options.max_message_size,
      maxRecipients: options.max_recipients,
      maxClients: options.max_clients,
      socketTimeout: options.timeout,
      authOptional: true,
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: options.auth.allow_insecure,
      hideDSN: false,
      hideENHANCEDSTATUSCODES: false,
      // A reverse lookup per connection costs a DNS round trip before the greeting; the
      // Received header records the IP, which is what matters for a submission relay.
      disableReverseLookup: true,
      disabledCommands: disabled,
      ...(tls ? { key: tls.key, cert: tls.cert } : {}),
      logger: false,
      onConnect,
      onSecure,
      onAuth,
      onMailFrom,
      onRcptTo,
      onData,
    });
    adjustConnections(server, options.max_clients);
    server.on('error', (err) => log.warn({ err }, 'smtp connection error'));
    return server;
  }

  return {
    async start() {
      for (const entry of options.listen) {
        const { host, port } = parseHostPort(entry) as { host: string; port: number };
        const server = buildServer();
        await new Promise<void>((resolve, reject) => {
          server.server.once('error', reject);
          server.listen(port, host, () => {
            server.server.off('error', reject);
            resolve();
          });
        });
        const address = server.server.address();
        if (address && typeof address === 'object') bound.push({ host: address.address, port: address.port });
        servers.push(server);
        log.info({ listen: `${host}:${bound.at(-1)?.port}` }, 'smtp listening');
      }
    },
    async stop() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
    addresses: () => [...bound],
  };
}

/**
 * Pipe the DATA stream through the rewriter into the spool file. On a write failure, stop
 * writing but keep draining the client's data so the SMTP session stays in step.
 */
async function spoolStream(source: Readable, rewriter: MessageRewriter, sink: Writable, observer?: Duplex): Promise<Error | undefined> {
  let failure: Error | undefined;
  const written = (observer ? pipeChain(rewriter, observer, sink) : pipeChain(rewriter, sink)).catch((err: unknown) => {
    failure = err as Error;
    source.unpipe(rewriter);
    source.resume();
  });
  const ended = new Promise<void>((resolve) => {
    source.once('end', resolve);
    source.once('close', resolve);
  });
  source.pipe(rewriter);
  await ended;
  if (!failure && source.readableEnded) await written;
  else if (!source.readableEnded) {
    failure ??= new Error('client closed the connection during DATA');
    rewriter.destroy();
    await written;
  }
  return failure;
}

interface ConnectionInternals {
  init(): void;
  _setListeners(callback: () => void): void;
  connectionReady(): void;
  send(code: number, data?: string | string[] | null, context?: string | false): void;
  name: string;
}

/**
 * Two per-connection adjustments to smtp-server 3.21.6 (pinned), made as each connection is
 * registered, never on the shared prototype:
 * - it adds an enhanced status code chosen from the reply code alone (452 → 4.2.2), wrong for
 *   "452 4.3.1 storage" or "554 5.6.0 bad metadata"; our texts carry their own code, so for
 *   those the library's is left out;
 * - it holds every greeting for a fixed 100 ms to catch early talkers, a spam-trap for inbound
 *   MX servers that caps a relay fed by one-message-per-connection clients at ~10 messages per
 *   second per session. Tern's clients are trusted campaign tools, so it greets at once.
 */
function adjustConnections(server: SMTPServer, maxClients: number): void {
  const connections = server.connections;
  const add = connections.add.bind(connections);
  connections.add = (connection) => {
    const internals = connection as unknown as ConnectionInternals;
    const send = internals.send.bind(internals);
    internals.send = (code, data, context) => {
      const own = typeof data === 'string' && /^[245]\.\d{1,3}\.\d{1,3} /.test(data);
      send(code, data, own ? false : context);
    };
    internals.init = () => {
      internals._setListeners(() => {
        if (connections.size > maxClients) {
          internals.send(421, `${internals.name} Too many connected clients, try again in a moment`, false);
          return;
        }
        internals.connectionReady();
      });
    };
    return add(connection);
  };
}

function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
