import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface Received {
  readonly host: string;
  readonly mailFrom: string;
  readonly rcptTo: string[];
  readonly data: Buffer;
  readonly secure: boolean;
  /** The sender's address and the name it gave in EHLO/HELO. */
  readonly peer: string;
  readonly helo: string;
  readonly envid?: string;
  /** NOTIFY/ORCPT per recipient, as the sink's RCPT parser (smtp-server) read them. */
  readonly rcptDsn?: readonly ({ notify?: string[]; orcpt?: string } | undefined)[];
}

/**
 * A receiver's scripted patience: what it allows before it says no. Mutable on the running sink
 * (`sink.patience`), so a test can make a receiver relent.
 */
export interface Patience {
  /** Answer the greeting with 421 above this many concurrent sessions. */
  maxSessions?: number | undefined;
  /** Never greet sessions above this many (a tarpit: the client's greeting timeout ends them). */
  stallAbove?: number | undefined;
  /** Answer RCPT with 451 4.7.0 [TSS04] once this many messages were accepted within the window. */
  rate?: { count: number; windowMs: number } | undefined;
  /** Answer MAIL with 421 after this many messages on one connection, and close. */
  messagesPerConnection?: number | undefined;
  /** Close the connection without a word after this many messages. */
  dropAfter?: number | undefined;
  /** Time taken per message between the end of DATA and the reply. */
  dataDelayMs?: number | undefined;
  /** Answer RCPT from these sender addresses with 451 4.7.0 [TSS04], whatever the rate (a receiver distrusting an IP). */
  throttlePeers?: readonly string[] | undefined;
}

/** What the sink's patience cost its clients, counted as the sink saw it. */
export interface PatienceStats {
  sessions: number;
  peakSessions: number;
  /** 421 greetings (maxSessions). */
  refused: number;
  /** Sessions never greeted (stallAbove). */
  stalled: number;
  /** When each refusal of any kind (421 greeting, stalled session, [TSS04], 421 at MAIL) was made. */
  refusedAt: number[];
  /** 451 [TSS04] replies (rate), one per recipient, and when. */
  throttled: number;
  throttledAt: number[];
  /** 421 at MAIL (messagesPerConnection). */
  cutOff: number;
  /** Connections closed without a word (dropAfter). */
  dropped: number;
  /** When each accepted message was accepted (ms). */
  acceptedAt: number[];
}

export interface SinkOptions {
  readonly host: string;
  readonly port: number;
  readonly patience?: Patience;
  /** Delay the greeting by this many ms. */
  readonly greetingDelay?: number;
  readonly starttls?: boolean;
  /** STARTTLS with this certificate (smtp-server's own self-signed one otherwise). */
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** Answer every connection with this greeting error (e.g. "421 4.3.2 busy"). */
  readonly refuseGreeting?: { code: number; text: string };
}

/**
 * A scripted receiving MX. Behaviour is chosen by the recipient's local part, as KumoMTA's
 * maildir-sink does:
 *   user-unknown@   550 5.1.1 at RCPT        tempfail-N@  451 4.3.0 for the first N attempts
 *   toomany@        452 4.5.3 at RCPT        reject-data@ 554 5.7.1 after DATA
 *   drop-data@      closes the connection during DATA
 *   close421@       421 4.7.0 at RCPT (server closes the session)
 *   tss04-N@        451 4.7.0 [TSS04] for the first N attempts (Yahoo's "slow down")
 * anything else is accepted.
 */
export interface Sink {
  readonly received: Received[];
  readonly attempts: Map<string, number>;
  connections: number;
  patience: Patience;
  readonly stats: PatienceStats;
  close(): Promise<void>;
}

function err(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

export async function startSink(options: SinkOptions): Promise<Sink> {
  const received: Received[] = [];
  const attempts = new Map<string, number>();
  const stats: PatienceStats = { sessions: 0, peakSessions: 0, refused: 0, stalled: 0, refusedAt: [], throttled: 0, throttledAt: [], cutOff: 0, dropped: 0, acceptedAt: [] };
  const sink: Sink = { received, attempts, connections: 0, patience: { ...options.patience }, stats, close: async () => undefined };
  const arrivals = new Map<number, number>();
  const accepted = (): number => {
    const window = sink.patience.rate?.windowMs ?? 0;
    const since = Date.now() - window;
    let n = 0;
    for (let i = stats.acceptedAt.length - 1; i >= 0 && (stats.acceptedAt[i] as number) > since; i--) n++;
    return n;
  };
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: options.starttls || options.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    hideDSN: false,
    size: 50 * 1024 * 1024,
    onConnect(session, done) {
      sink.connections++;
      if (options.refuseGreeting) return done(err(options.refuseGreeting.code, options.refuseGreeting.text));
      const { maxSessions, stallAbove } = sink.patience;
      // How many sessions were open when this one arrived (onConnect runs a little later).
      const rank = arrivals.get(session.remotePort) ?? stats.sessions;
      arrivals.delete(session.remotePort);
      if (maxSessions !== undefined && rank > maxSessions) {
        stats.refused++;
        stats.refusedAt.push(Date.now());
        return done(err(421, '4.7.0 Too many connections from your IP'));
      }
      if (stallAbove !== undefined && rank > stallAbove) {
        stats.stalled++;
        stats.refusedAt.push(Date.now());
        return; // no greeting, ever: the client gives up
      }
      if (options.greetingDelay) setTimeout(() => done(), options.greetingDelay);
      else done();
    },
    onMailFrom(_address, session, done) {
      const per = sink.patience.messagesPerConnection;
      if (per !== undefined && session.transaction > per) {
        stats.cutOff++;
        stats.refusedAt.push(Date.now());
        return done(err(421, '4.7.0 Max message per connection reached, closing transmission channel'));
      }
      done();
    },
    onRcptTo(address, session, done) {
      const rate = sink.patience.rate;
      const distrusted = sink.patience.throttlePeers?.includes(session.remoteAddress.replace(/^::ffff:/, '')) ?? false;
      if (distrusted || (rate && accepted() >= rate.count)) {
        stats.throttled++;
        stats.throttledAt.push(Date.now());
        stats.refusedAt.push(Date.now());
        return done(err(451, `4.7.0 [TSS04] Messages from ${session.remoteAddress} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1`));
      }
      const rcpt = address.address.toLowerCase();
      const local = rcpt.slice(0, rcpt.indexOf('@'));
      const n = (attempts.get(rcpt) ?? 0) + 1;
      attempts.set(rcpt, n);
      if (local === 'user-unknown') return done(err(550, '5.1.1 The email account that you tried to reach does not exist'));
      if (local === 'toomany') return done(err(452, '4.5.3 Too many recipients'));
      if (local === 'close421') return done(err(421, '4.7.0 Try again later, closing connection'));
      const temp = /^tempfail-(\d+)$/.exec(local);
      if (temp && n <= Number(temp[1])) return done(err(451, '4.3.0 Temporary local problem, try again'));
      const slow = /^tss04-(\d+)$/.exec(local);
      if (slow && n <= Number(slow[1])) return done(err(451, '4.7.0 [TSS04] Messages from your IP temporarily deferred due to unexpected volume'));
      void session;
      done();
    },
    onData(stream, session: SMTPServerSession, done) {
      const chunks: Buffer[] = [];
      const rcpts = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
      // Read now: smtp-server moves the session on to the next transaction as soon as done() is called.
      const transaction = session.transaction;
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => (sink.patience.dataDelayMs ? setTimeout(finish, sink.patience.dataDelayMs) : finish()));
      const finish = (): void => {
        // The connection dies after the data but before the reply: the sender cannot know.
        if (rcpts.some((r) => r.startsWith('drop-data@'))) return destroyConnection(server, session);
        if (rcpts.some((r) => r.startsWith('reject-data@'))) return done(err(554, '5.7.1 Message rejected as spam'));
        received.push({
          host: options.host,
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcptTo: rcpts,
          data: Buffer.concat(chunks),
          secure: session.secure,
          peer: session.remoteAddress.replace(/^::ffff:/, ''),
          helo: session.hostNameAppearsAs,
          ...(session.envelope.dsn?.envid ? { envid: session.envelope.dsn.envid } : {}),
          rcptDsn: session.envelope.rcptTo.map((r) => (r as { dsn?: { notify?: string[]; orcpt?: string } }).dsn),
        });
        stats.acceptedAt.push(Date.now());
        done(null, 'OK: queued');
        const dropAfter = sink.patience.dropAfter;
        if (dropAfter !== undefined && transaction >= dropAfter) {
          stats.dropped++;
          // After the 250 has gone out: the client learns only when it sends the next command.
          setImmediate(() => destroyConnection(server, session));
        }
      };
    },
  });
  // Sessions are counted on the socket, before smtp-server's own handlers (onClose comes a tick late).
  server.server.prependListener('connection', (socket) => {
    stats.sessions++;
    if (socket.remotePort !== undefined) arrivals.set(socket.remotePort, stats.sessions);
    stats.peakSessions = Math.max(stats.peakSessions, stats.sessions);
    socket.once('close', () => stats.sessions--);
  });
  // A sender killed mid-session resets the connection; a real MX shrugs that off.
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  sink.close = () => new Promise<void>((resolve) => {
    for (const c of server.connections) (c as unknown as { close(): void }).close();
    server.close(() => resolve());
  });
  return sink;
}

function destroyConnection(server: SMTPServer, session: SMTPServerSession): void {
  for (const c of server.connections) {
    if ((c as unknown as { session: SMTPServerSession }).session === session) {
      (c as unknown as { _socket: { destroy(): void } })._socket.destroy();
    }
  }
}
