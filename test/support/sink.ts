import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface Received {
  readonly host: string;
  readonly mailFrom: string;
  readonly rcptTo: string[];
  readonly data: Buffer;
  readonly secure: boolean;
  readonly envid?: string;
}

export interface SinkOptions {
  readonly host: string;
  readonly port: number;
  /** Delay the greeting by this many ms. */
  readonly greetingDelay?: number;
  readonly starttls?: boolean;
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
 * anything else is accepted.
 */
export interface Sink {
  readonly received: Received[];
  readonly attempts: Map<string, number>;
  connections: number;
  close(): Promise<void>;
}

function err(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

export async function startSink(options: SinkOptions): Promise<Sink> {
  const received: Received[] = [];
  const attempts = new Map<string, number>();
  const sink: Sink = { received, attempts, connections: 0, close: async () => undefined };
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: options.starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideDSN: false,
    size: 50 * 1024 * 1024,
    onConnect(_session, done) {
      sink.connections++;
      if (options.refuseGreeting) return done(err(options.refuseGreeting.code, options.refuseGreeting.text));
      if (options.greetingDelay) setTimeout(() => done(), options.greetingDelay);
      else done();
    },
    onRcptTo(address, session, done) {
      const rcpt = address.address.toLowerCase();
      const local = rcpt.slice(0, rcpt.indexOf('@'));
      const n = (attempts.get(rcpt) ?? 0) + 1;
      attempts.set(rcpt, n);
      if (local === 'user-unknown') return done(err(550, '5.1.1 The email account that you tried to reach does not exist'));
      if (local === 'toomany') return done(err(452, '4.5.3 Too many recipients'));
      if (local === 'close421') return done(err(421, '4.7.0 Try again later, closing connection'));
      const temp = /^tempfail-(\d+)$/.exec(local);
      if (temp && n <= Number(temp[1])) return done(err(451, '4.3.0 Temporary local problem, try again'));
      void session;
      done();
    },
    onData(stream, session: SMTPServerSession, done) {
      const chunks: Buffer[] = [];
      const rcpts = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        // The connection dies after the data but before the reply: the sender cannot know.
        if (rcpts.some((r) => r.startsWith('drop-data@'))) return destroyConnection(server, session);
        if (rcpts.some((r) => r.startsWith('reject-data@'))) return done(err(554, '5.7.1 Message rejected as spam'));
        received.push({
          host: options.host,
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcptTo: rcpts,
          data: Buffer.concat(chunks),
          secure: session.secure,
          ...(session.envelope.dsn?.envid ? { envid: session.envelope.dsn.envid } : {}),
        });
        done(null, 'OK: queued');
      });
    },
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
