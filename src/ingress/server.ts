import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { SmtpConfig } from '../config/index.ts';
import type { Clock } from '../lib/clock.ts';
import { errorKind, RepeatedLog } from '../lib/repeated-log.ts';
import { createNetworkList, parseHostPort } from '../lib/net.ts';
import type { Envelope } from '../model/envelope.ts';
import { parseReply } from '../model/reply.ts';
import type { SuppressionEntry } from '../model/suppression.ts';
import { queueIdSource, type QueueId } from '../model/ids.ts';
import { checkMailbox } from './address.ts';
import { parseMeta } from './meta.ts';
import { receivedHeader } from './received.ts';
import { MessageRewriter } from './rewrite.ts';
import { UNKNOWN_USER, verifyPassword } from './secrets.ts';
import { LOCAL_ERROR, REPLIES, render, SmtpServer, type DataStream, type SmtpAddress, type SmtpHooks, type SmtpLimits, type SmtpRefusal, type SmtpSession } from './smtp-server.ts';

/** What ingress needs from the spool; it never sees the queue, only `accept`. */
export interface IngressPorts {
  begin(id: QueueId): Promise<MessageWriter>;
  healthy(): Promise<boolean>;
  /**
   * Called once the message is durable; the 250 waits for a promise it returns, and a rejection
   * means the message was withdrawn: the client gets a 451. (The daemon returns at once and
   * records the `relayed` events in the background; recovery re-derives them after a crash.)
   */
  accept(envelope: Envelope): void | Promise<void>;
  /**
   * Optional: sees the rewritten message on its way to disk, chunk by chunk, and then yields
   * header lines to send on top of it (the daemon wires DKIM signing here).
   */
  observeBody?(receivedAt: number): BodyObserver;
  /** Optional: every 4xx/5xx reply sent to a client, by code and enhanced status code (metrics). */
  refused?(code: number, enhanced: string): void;
  /** Optional (suppression.enabled): the suppression in force for mail from `sender` to `recipient`. */
  suppressed?(sender: string, recipient: string): SuppressionEntry | undefined;
}

/** The spool's side of one message being received (spool's MessageWriter). */
export interface MessageWriter {
  /** A promise means: wait for it before writing more (it rejects when the write failed). */
  write(piece: Buffer): Promise<void> | undefined;
  commit(envelope: Envelope): Promise<void>;
  abort(): Promise<void>;
}

export interface BodyObserver {
  write(chunk: Buffer): void;
  finish(): Promise<string>;
}

export interface IngressOptions extends SmtpConfig {
  readonly hostname: string;
  readonly validity: number;
  /** Share each listening address with other threads of this process (ADR 0010; Linux, FreeBSD). */
  readonly reusePort?: boolean;
  /** The egress pools X-Tern-Meta `pool` may name; another is refused at DATA (554 5.6.0). */
  readonly pools?: readonly string[];
}

export interface Ingress {
  /**
   * Listen on `smtp.listen`, or on `addresses` given in its place: the ports another shard bound
   * for entries that asked for port 0, so every shard shares them (reusePort).
   */
  start(addresses?: readonly { host: string; port: number }[]): Promise<void>;
  /** Stop accepting; in-flight transactions finish, idle sessions are told 421. */
  stop(): Promise<void>;
  /** Bound addresses, useful when listening on port 0. */
  addresses(): { host: string; port: number }[];
  /** Every configured listener is bound and accepting (false before start and once stopping). */
  listening(): boolean;
  /** SMTP sessions open now, over every listener. */
  sessions(): number;
}

const STORAGE_FULL = render(REPLIES.storageFull);

export function createIngress(options: IngressOptions, ports: IngressPorts, deps: { clock: Clock; log: Logger }): Ingress {
  const { clock, log } = deps;
  // A full or broken spool fails every message the same way: one line a minute, with a count.
  const faults = new RepeatedLog(log, clock);
  let stopped = false;
  const newId = queueIdSource();
  const mayRelay = createNetworkList(options.allow_networks);
  const servers: SmtpServer[] = [];
  const bound: { host: string; port: number }[] = [];
  const tls = options.tls ? { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) } : undefined;
  const authUsers = options.auth.users;
  const authEnabled = authUsers.length > 0 && (tls !== undefined || options.auth.allow_insecure);

  const relayAllowed = (session: SmtpSession): boolean => session.user !== undefined || mayRelay(session.remoteAddress);

  const hooks: SmtpHooks = {
    async auth(username, password, session) {
      const user = authUsers.find((u) => u.username === username);
      const matches = await verifyPassword(user?.password ?? UNKNOWN_USER, password);
      if (!user || !matches) {
        log.warn({ event: 'auth_failed', remote_ip: session.remoteAddress, username }, 'authentication failed');
        return render(REPLIES.authInvalid);
      }
      return user.username;
    },
    mailFrom(address, session) {
      if (!relayAllowed(session)) return render(REPLIES.authRequired);
      if (address.address !== '') {
        const check = checkMailbox(address.address);
        if (!check.ok) return render(REPLIES.badSender, { address: address.address, problem: check.problem });
      }
      return ports.healthy().then((ok) => (ok ? undefined : STORAGE_FULL), () => STORAGE_FULL);
    },
    rcptTo(address, session) {
      if (!relayAllowed(session)) return render(REPLIES.authRequired);
      const check = checkMailbox(address.address);
      if (!check.ok) return render(REPLIES.badRecipient, { address: address.address, problem: check.problem });
      const sender = session.envelope.mailFrom;
      const suppressed = sender ? ports.suppressed?.(sender.address, address.address) : undefined;
      if (suppressed) {
        const vars = { address: address.address, domain: suppressed.domain, until: new Date(suppressed.until).toISOString().slice(0, 10), detail: suppressed.detail };
        return render(suppressed.reason === 'hard-bounce' ? REPLIES.suppressedBounce : REPLIES.suppressedComplaint, vars);
      }
      return undefined;
    },
    data(stream, session) {
      return receive(stream, session).catch((err: unknown) => {
        log.error({ err, remote_ip: session.remoteAddress }, 'unexpected error while receiving a message');
        return LOCAL_ERROR;
      });
    },
  };

  async function receive(stream: DataStream, session: SmtpSession): Promise<string | SmtpRefusal> {
    const now = clock.now();
    const id = newId(now);
    const rcpts = session.envelope.rcptTo;
    let writer: MessageWriter;
    try {
      writer = await ports.begin(id);
    } catch (err) {
      faults.error(`unavailable:${errorKind(err)}`, { err, queue_id: id }, 'spool unavailable');
      return STORAGE_FULL;
    }
    const observer = ports.observeBody?.(now);
    const body = receiveBody(stream, writer, observer);
    const rewriter = new MessageRewriter({
      maxHeaderBytes: options.limits.header_size,
      prepend: (facts) =>
        receivedHeader({
          helo: session.hostNameAppearsAs || session.clientHostname,
          clientIp: session.remoteAddress,
          hostname: options.hostname,
          queueId: id,
          tls: session.secure,
          authenticated: session.user !== undefined,
          ...(rcpts.length === 1 ? { recipient: rcpts[0]?.address as string } : {}),
          at: now,
        }) + (facts.messageId ? '' : `Message-ID: <${id}@${options.hostname}>\r\n`),
    }, body.store);
    const failure = await body.received(rewriter);
    if (!stream.readableEnded) {
      // The client left (or went silent) before the dot: nothing was accepted, nothing is kept.
      await writer.abort();
      log.info({ queue_id: id, remote_ip: session.remoteAddress, why: stream.errored?.message }, 'client left during DATA; nothing stored');
      return LOCAL_ERROR;
    }
    const refused = failure ? STORAGE_FULL : contentRefusal(stream, rewriter);
    const meta = parseMeta(rewriter.facts.metaValues, options.pools);
    if (refused || !meta.ok) {
      await writer.abort();
      const answer = refused ?? render(REPLIES.badMeta, { problem: meta.ok ? '' : meta.problem });
      if (failure) faults.error(`write:${errorKind(failure)}`, { err: failure, queue_id: id }, 'spool write failed');
      else log.info({ queue_id: id, remote_ip: session.remoteAddress, reply: `${answer.code} ${answer.text}` }, 'message refused');
      return answer;
    }
    let prepend = '';
    try {
      prepend = observer ? await observer.finish() : '';
    } catch (err) {
      await writer.abort();
      log.error({ err, queue_id: id }, 'signing failed');
      return render(REPLIES.signingFailed);
    }
    const envelope: Envelope = {
      id,
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients: rcpts.map((r: SmtpAddress) => ({
        address: r.address,
        ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
        ...(r.dsn?.notify ? { notify: r.dsn.notify } : {}),
      })),
      messageId: rewriter.facts.messageId ?? `<${id}@${options.hostname}>`,
      meta: meta.meta,
      ...(session.envelope.dsn.envid ? { envid: session.envelope.dsn.envid } : {}),
      ...(session.envelope.dsn.ret ? { ret: session.envelope.dsn.ret } : {}),
      receivedAt: now,
      expiresAt: now + (meta.validityMs ?? options.validity),
      smtputf8: session.envelope.smtpUtf8,
      eightBit: session.envelope.bodyType === '8bitmime',
      client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs || '', ...(session.user ? { user: String(session.user) } : {}) },
      bodySize: rewriter.bytesOut,
      ...(prepend ? { prepend } : {}),
    };
    try {
      await writer.commit(envelope);
    } catch (err) {
      log.error({ err, queue_id: id }, 'spool commit failed');
      return STORAGE_FULL;
    }
    try {
      await ports.accept(envelope);
    } catch (err) {
      log.error({ err, queue_id: id }, 'message withdrawn after commit');
      return LOCAL_ERROR;
    }
    log.info({ event: 'accepted', queue_id: id, sender: envelope.sender, rcpts: rcpts.length, size: envelope.bodySize, remote_ip: session.remoteAddress }, 'message accepted');
    return render(REPLIES.queued, { id }).text;
  }

  /** What the listener withheld (size, NUL, long line) or the rewriter could not take (header size). */
  function contentRefusal(stream: DataStream, rewriter: MessageRewriter): SmtpRefusal | undefined {
    if (stream.sizeExceeded) return render(REPLIES.messageTooBig, { limit: options.max_message_size });
    if (stream.refusal) return stream.refusal;
    if (rewriter.problem) return render(REPLIES.messageRefused, { problem: rewriter.problem });
    return undefined;
  }

  // AUTH is not even advertised before STARTTLS: "AUTH PLAIN <credentials>" in one line would
  // put the password on the wire before the server could refuse it.
  const authOffered = (session: SmtpSession): boolean => authEnabled && (session.secure || options.auth.allow_insecure);

  /**
   * Counted, and logged: the first of each kind (code and enhanced code) at once with the client
   * and the text, then once a minute with how many there were, so a hostile client cannot flood the log.
   */
  function onRefusal(reply: SmtpRefusal, remoteAddress: string): void {
    const enhanced = parseReply(`${reply.code} ${reply.text}`).enhanced ?? '';
    ports.refused?.(reply.code, enhanced);
    faults.info(`refused:${reply.code}:${enhanced}`, { event: 'refused', remote_ip: remoteAddress, code: reply.code, text: reply.text }, 'smtp: refused');
  }

  function buildServer(): SmtpServer {
    return new SmtpServer({
      name: options.hostname,
      banner: options.banner,
      size: options.max_message_size,
      maxRecipients: options.max_recipients,
      maxClients: options.max_clients,
      socketTimeout: options.timeout,
      limits: listenerLimits(options.limits),
      ...(tls ? { tls } : {}),
      authOffered,
      exemptFromClientLimits: mayRelay,
      onRefusal,
    }, hooks);
  }

  return {
    async start(addresses) {
      for (const { host, port } of addresses ?? options.listen.map((entry) => parseHostPort(entry) as { host: string; port: number })) {
        const server = buildServer();
        await server.listen(port, host, options.reusePort ?? false);
        const address = server.server.address();
        if (address && typeof address === 'object') bound.push({ host: address.address, port: address.port });
        servers.push(server);
        log.info({ listen: `${host}:${bound.at(-1)?.port}` }, 'smtp listening');
      }
    },
    async stop() {
      stopped = true;
      await Promise.all(servers.map((s) => s.close()));
    },
    addresses: () => [...bound],
    listening: () => !stopped && servers.length > 0 && servers.every((s) => s.server.listening),
    sessions: () => servers.reduce((n, s) => n + s.sessions, 0),
  };
}

/**
 * The DATA stream, rewritten, into the spool writer and the observer, by plain calls: `store`
 * takes each rewritten piece; `received` feeds the rewriter and settles once the message is
 * stored (or the client is gone: the source then has not ended), with the error if it could not
 * be stored. Reading pauses while the spool is behind on disk. On a failure, writing stops but the
 * client's data is still read, so the session stays in step.
 */
function receiveBody(source: DataStream, writer: MessageWriter, observer?: BodyObserver): {
  store(piece: Buffer): void;
  received(rewriter: MessageRewriter): Promise<Error | undefined>;
} {
  let failure: Error | undefined;
  let writing: Promise<void> | undefined;
  return {
    store(piece) {
      if (failure) return;
      observer?.write(piece);
      const wait = writer.write(piece);
      if (!wait) return;
      source.pause();
      writing = wait.then(
        () => void source.resume(),
        (err: unknown) => {
          failure ??= err as Error;
          source.resume();
        },
      );
    },
    received(rewriter) {
      return new Promise((resolve) => {
        if (source.destroyed) return resolve(failure);
        // 'data' may come on a later tick (after a resume), where nobody would catch a throw.
        const guarded = (step: () => void): void => {
          try {
            step();
          } catch (err) {
            failure ??= err as Error;
          }
        };
        source.on('data', (chunk: Buffer) => guarded(() => rewriter.write(chunk)));
        source.once('end', () => {
          guarded(() => rewriter.end());
          void Promise.resolve(writing).then(() => resolve(failure));
        });
        source.once('close', () => {
          if (!source.readableEnded) resolve(failure);
        });
      });
    },
  };
}

/** smtp.limits (YAML's names) as the listener's. */
function listenerLimits(limits: SmtpConfig['limits']): SmtpLimits {
  return {
    errorLimit: limits.error_limit,
    junkCommandLimit: limits.junk_command_limit,
    recipientOvershootLimit: limits.recipient_overshoot_limit,
    clientConnectionLimit: limits.client_connection_limit,
    clientConnectionRate: limits.client_connection_rate,
    authFailureLimit: limits.auth_failure_limit,
    authFailureWindow: limits.auth_failure_window,
    sessionDeadline: limits.session_deadline,
    dataDeadline: limits.data_deadline,
    lineLength: limits.line_length,
    headerSize: limits.header_size,
  };
}
