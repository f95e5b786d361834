/**
 * Tern's SMTP listener protocol (RFC 5321 with PIPELINING, 8BITMIME, SMTPUTF8, SIZE, DSN,
 * ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN/LOGIN): the part of SMTP a submission relay
 * speaks, and nothing else (ADR 0008). Policy (who may relay, which addresses are good, what
 * happens to the message) lives in the hooks; this file owns the wire.
 *
 * Written for one-message-per-connection campaign traffic: a connection costs a socket, one
 * object and a few closures; DATA is scanned with Buffer.indexOf and unstuffed without copying
 * the lines that need nothing. The library used before (smtp-server) cost about three times the
 * CPU per message on the bench.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { cutOffLater, plainAddress } from '../lib/net.ts';

export interface SmtpAddress {
  readonly address: string;
  readonly args: Readonly<Record<string, string | true>>;
  readonly dsn?: { readonly notify?: readonly string[]; readonly orcpt?: string };
}

export interface SessionEnvelope {
  mailFrom: SmtpAddress | false;
  rcptTo: SmtpAddress[];
  dsn: { ret?: string; envid?: string };
  bodyType: '7bit' | '8bitmime';
  smtpUtf8: boolean;
}

export interface SmtpSession {
  readonly remoteAddress: string;
  /** "[ip]": reverse lookups are not done (a DNS round trip before every greeting). */
  readonly clientHostname: string;
  /** The name the client gave in EHLO/HELO. */
  hostNameAppearsAs: string;
  secure: boolean;
  user: string | undefined;
  envelope: SessionEnvelope;
}

/** A refusal: `text` starts with its enhanced status code ("5.1.3 Bad recipient ..."). */
export interface SmtpRefusal { readonly code: number; readonly text: string }

/** The message as it arrives, unstuffed; `sizeExceeded` once it passed the size limit. */
export class DataStream extends Readable {
  sizeExceeded = false;
  bytes = 0;
  readonly #resume: () => void;

  constructor(resume: () => void) {
    super();
    this.#resume = resume;
    // The reader sees an abort as a premature close; an 'error' nobody listens to would crash.
    this.on('error', () => undefined);
  }

  override _read(): void {
    this.#resume();
  }

  /**
   * A reader's 'data' listener that throws ends that reader, not the process. Readable emits
   * 'data' from push() or, when it had to buffer, later from process.nextTick: catching it here
   * covers both.
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data') return super.emit(event, ...args);
    try {
      return super.emit(event, ...args);
    } catch (err) {
      this.destroy(err as Error);
      return false;
    }
  }
}

export interface SmtpHooks {
  /** A user name on success. */
  auth(username: string, password: string, session: SmtpSession): SmtpRefusal | string;
  mailFrom(address: SmtpAddress, session: SmtpSession): SmtpRefusal | undefined | Promise<SmtpRefusal | undefined>;
  rcptTo(address: SmtpAddress, session: SmtpSession): SmtpRefusal | undefined;
  /** The success text ("2.0.0 Ok: queued as ...") or a refusal, once the message is dealt with. */
  data(stream: DataStream, session: SmtpSession): Promise<SmtpRefusal | string>;
}

export interface SmtpServerOptions {
  readonly name: string;
  readonly banner: string;
  readonly size: number;
  readonly maxRecipients: number;
  readonly maxClients: number;
  readonly socketTimeout: number;
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** AUTH is offered when this says so (for instance only after STARTTLS). */
  readonly authOffered: (session: SmtpSession) => boolean;
}

const MAX_LINE = 4096;
const MAX_PENDING_INPUT = 256 * 1024;
/** Replies a client has not read yet; past this we stop reading its commands. */
const MAX_PENDING_OUTPUT = 64 * 1024;
/** Unknown commands and over-long lines, and failed AUTH attempts, before the session is closed. */
const MAX_ERRORS = 10;
const MAX_AUTH_FAILURES = 3;
const CUT_OFF_MS = 5_000;
const CR = Buffer.from('\r');
const EMPTY = Buffer.alloc(0);
const NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);

/** Our replies carry their own enhanced status code at the start of the text. */
export const refusal = (code: number, text: string): SmtpRefusal => ({ code, text });

export class SmtpServer {
  readonly #options: SmtpServerOptions;
  readonly #hooks: SmtpHooks;
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  readonly #secureContext: SecureContext | undefined;
  #closing = false;

  constructor(options: SmtpServerOptions, hooks: SmtpHooks) {
    this.#options = options;
    this.#hooks = hooks;
    this.#secureContext = options.tls ? createSecureContext({ key: options.tls.key, cert: options.tls.cert }) : undefined;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  get server(): Server { return this.#server; }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  /** No new connections; idle ones are told 421, busy ones after their transaction. */
  close(): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#connections) c.shutdown();
    return closed;
  }

  #accept(socket: Socket): void {
    socket.on('error', () => undefined);
    if (this.#connections.size >= this.#options.maxClients || this.#closing) {
      socket.end(`421 4.3.2 ${this.#options.name} Too many connected clients, try again in a moment\r\n`);
      cutOffLater(socket, CUT_OFF_MS);
      return;
    }
    const connection = new Connection(socket, this.#options, this.#hooks, this.#secureContext, () => this.#connections.delete(connection));
    this.#connections.add(connection);
  }
}

type Mode = 'command' | 'data' | 'auth-plain' | 'auth-login-user' | 'auth-login-pass' | 'closed';

class Connection {
  readonly #options: SmtpServerOptions;
  readonly #hooks: SmtpHooks;
  readonly #secureContext: SecureContext | undefined;
  readonly #onClosed: () => void;
  readonly #session: SmtpSession;
  #socket: Socket;
  #mode: Mode = 'command';
  #input: Buffer = EMPTY;
  #busy = false;
  #shutdown = false;
  /** An over-long line is being dropped up to its LF. */
  #skipLine = false;
  #errors = 0;
  #authFailures = 0;
  #waitingForDrain = false;
  #handshaking = false;
  #loginUser = '';
  #data: DataFeed | undefined;
  /** The data hook answered before the message ended: sent once the terminator is read. */
  #earlyAnswer: SmtpRefusal | string | undefined;
  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);

  constructor(socket: Socket, options: SmtpServerOptions, hooks: SmtpHooks, secureContext: SecureContext | undefined, onClosed: () => void) {
    this.#socket = socket;
    this.#options = options;
    this.#hooks = hooks;
    this.#secureContext = secureContext;
    this.#onClosed = onClosed;
    const remote = plainAddress(socket.remoteAddress ?? '');
    this.#session = { remoteAddress: remote, clientHostname: `[${remote}]`, hostNameAppearsAs: '', secure: false, user: undefined, envelope: emptyEnvelope() };
    socket.setNoDelay(true);
    this.#listen(socket);
    this.#send(220, `${options.name} ESMTP ${options.banner}`.trimEnd());
  }

  /** Server shutdown: 421 now if idle, else once the transaction in flight is answered. */
  shutdown(): void {
    this.#shutdown = true;
    if (!this.#busy) this.#closeForShutdown();
    // A TLS handshake the client never finishes must not hold the shutdown for `smtp.timeout`.
    else if (this.#handshaking) cutOffLater(this.#socket, CUT_OFF_MS);
  }

  #listen(socket: Socket): void {
    socket.setTimeout(this.#options.socketTimeout);
    socket.on('data', this.#onData);
    socket.on('timeout', () => this.#closeWith(421, `4.4.2 ${this.#options.name} Error: timeout exceeded`, 'the client went silent during DATA'));
    socket.on('close', () => this.#closed());
    socket.on('error', () => undefined);
  }

  #closed(why = 'client closed the connection during DATA'): void {
    if (this.#mode === 'closed') return;
    this.#mode = 'closed';
    this.#data?.abort(new Error(why));
    this.#data = undefined;
    this.#onClosed();
  }

  #send(code: number, text: string | readonly string[]): void {
    if (this.#mode === 'closed' || this.#socket.destroyed) return;
    const lines = typeof text === 'string' ? [text] : text;
    this.#socket.write(lines.map((l, i) => `${code}${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
  }

  /**
   * `atOnce` (QUIT): close as soon as the reply is with the kernel; close(2) still sends it, then
   * FIN. Waiting for the client's FIN costs a shutdown(2), and with clients that close without
   * reading the 221 (smtp-source does), a connection reset to handle as an error. Not over TLS
   * (close_notify), nor with input unread (reading paused), which would make the close a reset
   * that can discard the reply.
   */
  #closeWith(code: number, text: string, why?: string, { atOnce = false } = {}): void {
    if (this.#mode === 'closed') return;
    this.#send(code, text);
    const socket = this.#socket;
    if (atOnce && !this.#session.secure && socket.writableLength === 0 && !socket.isPaused()) {
      socket.destroy();
    } else {
      socket.end();
      // Reading goes on (ignored by #receive) so the client's close is seen at once; a client that
      // never closes its side is cut off, so shutdown is never held up.
      cutOffLater(socket, CUT_OFF_MS);
    }
    this.#closed(why);
  }

  #closeForShutdown(): void {
    this.#closeWith(421, `4.3.2 ${this.#options.name} Server shutting down`);
  }

  /** Count a client error; too many end the session (a scanner, or a password guesser). */
  #fault(code: number, text: string, auth = false): void {
    this.#send(code, text);
    if (auth ? ++this.#authFailures >= MAX_AUTH_FAILURES : ++this.#errors >= MAX_ERRORS) {
      this.#closeWith(421, `4.7.0 ${this.#options.name} Too many errors, closing connection`);
    }
  }

  #receive(chunk: Buffer): void {
    if (this.#mode === 'closed') return;
    if (this.#mode === 'data' && this.#data) {
      const rest = this.#data.feed(chunk);
      if (rest) this.#endData(rest);
      return;
    }
    this.#input = this.#input.length > 0 ? Buffer.concat([this.#input, chunk]) : chunk;
    // A client that keeps sending while its commands wait is throttled, not buffered forever.
    if (this.#input.length > MAX_PENDING_INPUT && this.#busy) this.#socket.pause();
    this.#pump();
  }

  /** Handle complete lines, one at a time; an async hook holds the rest until it answers. */
  #pump(): void {
    while (!this.#busy && !this.#waitingForDrain && this.#mode !== 'closed' && this.#mode !== 'data') {
      if (this.#socket.writableLength > MAX_PENDING_OUTPUT) {
        // The client is not reading its replies: stop reading its commands until it does.
        this.#waitingForDrain = true;
        this.#socket.pause();
        this.#socket.once('drain', () => {
          this.#waitingForDrain = false;
          this.#pump();
        });
        return;
      }
      const lf = this.#input.indexOf(0x0a);
      if (lf === -1) {
        if (this.#input.length > MAX_LINE) {
          this.#input = EMPTY;
          if (!this.#skipLine) this.#lineTooLong();
          this.#skipLine = true;
        }
        break;
      }
      const end = lf > 0 && this.#input[lf - 1] === 0x0d ? lf - 1 : lf;
      const tooLong = end > MAX_LINE + 1;
      const line = tooLong || this.#skipLine ? '' : this.#input.toString('utf8', 0, end);
      this.#input = this.#input.subarray(lf + 1);
      if (this.#skipLine) this.#skipLine = false;
      else if (tooLong) this.#lineTooLong();
      else this.#line(line);
    }
    if (!this.#busy && !this.#waitingForDrain && this.#socket.isPaused() && this.#mode !== 'closed') this.#socket.resume();
  }

  #lineTooLong(): void {
    this.#mode = 'command';
    this.#fault(500, '5.5.2 Error: line too long');
  }

  #line(line: string): void {
    switch (this.#mode) {
      case 'auth-plain':
        return this.#authPlain(line);
      case 'auth-login-user':
        return this.#authLoginUser(line);
      case 'auth-login-pass':
        return this.#authLoginPass(line);
      default:
        return this.#command(line);
    }
  }

  #command(line: string): void {
    const space = line.indexOf(' ');
    const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase();
    const rest = space === -1 ? '' : line.slice(space + 1);
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        return this.#hello(verb, rest.trim());
      case 'MAIL':
        return this.#mail(rest);
      case 'RCPT':
        return this.#rcpt(rest);
      case 'DATA':
        return this.#dataCommand();
      case 'RSET':
        this.#session.envelope = emptyEnvelope();
        return this.#send(250, '2.0.0 Flushed');
      case 'NOOP':
        return this.#send(250, '2.0.0 OK');
      case 'QUIT':
        return this.#closeWith(221, '2.0.0 Bye', undefined, { atOnce: true });
      case 'VRFY':
        return this.#send(252, '2.5.0 Cannot VRFY user, but will accept message and attempt delivery');
      case 'HELP':
        return this.#send(214, '2.0.0 See https://www.rfc-editor.org/rfc/rfc5321');
      case 'STARTTLS':
        return this.#startTls(rest);
      case 'AUTH':
        return this.#auth(rest);
      default:
        return this.#fault(500, '5.5.2 Error: command not recognized');
    }
  }

  #hello(verb: string, name: string): void {
    if (name === '' || /\s/.test(name)) return this.#send(501, `5.5.4 Syntax: ${verb} hostname`);
    this.#session.hostNameAppearsAs = name;
    this.#session.envelope = emptyEnvelope();
    const greeting = `${this.#options.name} Nice to meet you, ${this.#session.clientHostname}`;
    if (verb === 'HELO') return this.#send(250, greeting);
    const features = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN', `SIZE ${this.#options.size}`];
    if (this.#secureContext && !this.#session.secure) features.push('STARTTLS');
    if (this.#authAllowed()) features.push('AUTH PLAIN LOGIN');
    this.#send(250, [greeting, ...features]);
  }

  /** EHLO/HELO given (the name cannot be empty), and not undone by STARTTLS. */
  #greeted(): boolean {
    return this.#session.hostNameAppearsAs !== '';
  }

  #authAllowed(): boolean {
    return this.#session.user === undefined && this.#options.authOffered(this.#session);
  }

  #mail(rest: string): void {
    if (!this.#greeted()) return this.#send(503, '5.5.1 Error: send HELO/EHLO first');
    if (this.#session.envelope.mailFrom) return this.#send(503, '5.5.1 Error: nested MAIL command');
    const parsed = parsePath(rest, 'FROM');
    if (!parsed) return this.#send(501, '5.5.4 Syntax: MAIL FROM:<address>');
    const envelope = emptyEnvelope();
    for (const [key, value] of Object.entries(parsed.args)) {
      const problem = mailParam(envelope, key, value, this.#options.size);
      if (problem) return this.#send(problem.code, problem.text);
    }
    const address: SmtpAddress = { address: parsed.address, args: parsed.args };
    this.#hold(guard(() => this.#hooks.mailFrom(address, this.#session)), (answer) => {
      if (answer) return this.#send(answer.code, answer.text);
      envelope.mailFrom = address;
      this.#session.envelope = envelope;
      this.#send(250, '2.1.0 Accepted');
    });
  }

  #rcpt(rest: string): void {
    const envelope = this.#session.envelope;
    if (!envelope.mailFrom) return this.#send(503, '5.5.1 Error: need MAIL command');
    const parsed = parsePath(rest, 'TO');
    if (!parsed || parsed.address === '') return this.#send(501, '5.1.3 Syntax: RCPT TO:<address>');
    if (envelope.rcptTo.length >= this.#options.maxRecipients) return this.#send(452, '4.5.3 Error: too many recipients');
    const dsn: { notify?: string[]; orcpt?: string } = {};
    for (const [key, value] of Object.entries(parsed.args)) {
      if (key === 'NOTIFY' && typeof value === 'string') {
        const notify = value.toUpperCase().split(',');
        if (!notify.every((n) => NOTIFY.has(n)) || (notify.includes('NEVER') && notify.length > 1)) return this.#send(501, '5.5.4 Error: invalid NOTIFY parameter');
        dsn.notify = notify;
      } else if (key === 'ORCPT' && typeof value === 'string' && /^[^;]+;./.test(value)) {
        dsn.orcpt = decodeXtext(value);
      } else {
        return this.#send(555, `5.5.4 Error: unsupported parameter ${key}`);
      }
    }
    const address: SmtpAddress = { address: parsed.address, args: parsed.args, ...(dsn.notify || dsn.orcpt ? { dsn } : {}) };
    const answer = guard(() => this.#hooks.rcptTo(address, this.#session));
    if (answer) return this.#send(answer.code, answer.text);
    envelope.rcptTo.push(address);
    this.#send(250, '2.1.5 Accepted');
  }

  #dataCommand(): void {
    if (!this.#session.envelope.mailFrom) return this.#send(503, '5.5.1 Error: need MAIL command');
    if (this.#session.envelope.rcptTo.length === 0) return this.#send(503, '5.5.1 Error: need RCPT command');
    this.#send(354, 'End data with <CR><LF>.<CR><LF>');
    const stream = new DataStream(() => {
      if (this.#mode === 'data') this.#socket.resume();
    });
    this.#data = new DataFeed(stream, this.#options.size, () => this.#socket.pause());
    this.#mode = 'data';
    this.#busy = true;
    const pending = this.#input;
    this.#input = EMPTY;
    Promise.resolve()
      .then(() => this.#hooks.data(stream, this.#session))
      .then((answer) => this.#dataAnswered(answer), () => this.#dataAnswered(LOCAL_ERROR))
      .catch(() => this.#socket.destroy());
    if (pending.length > 0) this.#receive(pending);
  }

  #endData(rest: Buffer): void {
    this.#data = undefined;
    this.#mode = 'command';
    // What the client pipelined after the message waits for the message's answer.
    this.#input = rest.length > 0 ? Buffer.from(rest) : EMPTY;
    const early = this.#earlyAnswer;
    this.#earlyAnswer = undefined;
    if (early !== undefined) this.#dataAnswered(early);
  }

  #dataAnswered(answer: SmtpRefusal | string): void {
    if (this.#mode === 'closed') return;
    if (this.#mode === 'data') {
      // Answered before the message ended (the hook refused it unread): read on to the dot,
      // keeping nothing, and answer then.
      this.#earlyAnswer = answer;
      this.#data?.discard();
      this.#socket.resume();
      return;
    }
    this.#session.envelope = emptyEnvelope();
    if (typeof answer === 'string') this.#send(250, answer);
    else this.#send(answer.code, answer.text);
    this.#busy = false;
    if (this.#shutdown) return this.#closeForShutdown();
    this.#pump();
  }

  /** Run a hook that may answer later; commands behind it wait. */
  #hold<T>(result: T | Promise<T>, then: (value: T) => void): void {
    if (!(result instanceof Promise)) return then(result);
    this.#busy = true;
    result
      .then(then, () => this.#send(LOCAL_ERROR.code, LOCAL_ERROR.text))
      .finally(() => {
        this.#busy = false;
        if (this.#shutdown) return this.#closeForShutdown();
        this.#pump();
      })
      .catch(() => this.#socket.destroy());
  }

  #startTls(rest: string): void {
    if (!this.#secureContext) return this.#send(502, '5.5.1 Error: command not implemented');
    if (this.#session.secure) return this.#send(503, '5.5.1 Error: TLS already active');
    if (rest.trim() !== '') return this.#send(501, '5.5.4 Syntax: STARTTLS');
    // Anything pipelined after STARTTLS was sent in plaintext; it must not count as sent over
    // TLS (RFC 3207 §4.2, the STARTTLS command-injection attack).
    this.#input = EMPTY;
    this.#send(220, '2.0.0 Ready to start TLS');
    const raw = this.#socket;
    raw.off('data', this.#onData);
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    this.#busy = true;
    this.#handshaking = true;
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.#secureContext });
    const handshakeTimeout = (): void => {
      secure.destroy();
    };
    secure.on('error', () => secure.destroy());
    secure.setTimeout(this.#options.socketTimeout);
    secure.on('timeout', handshakeTimeout);
    secure.once('secure', () => {
      this.#handshaking = false;
      secure.off('timeout', handshakeTimeout);
      this.#socket = secure;
      // RFC 3207 §4.2: everything learnt before TLS is forgotten, AUTH included.
      this.#session.secure = true;
      this.#session.hostNameAppearsAs = '';
      this.#session.user = undefined;
      this.#session.envelope = emptyEnvelope();
      this.#listen(secure);
      this.#busy = false;
      if (this.#shutdown) return this.#closeForShutdown();
      this.#pump();
    });
    secure.once('close', () => this.#closed());
  }

  #auth(rest: string): void {
    if (!this.#greeted()) return this.#send(503, '5.5.1 Error: send HELO/EHLO first');
    if (this.#session.user !== undefined) return this.#send(503, '5.5.1 Error: already authenticated');
    if (!this.#authAllowed()) return this.#send(503, '5.5.1 Error: authentication not enabled');
    if (this.#session.envelope.mailFrom) return this.#send(503, '5.5.1 Error: not allowed during a mail transaction');
    const [method = '', initial] = rest.trim().split(/\s+/);
    switch (method.toUpperCase()) {
      case 'PLAIN':
        if (initial === undefined) {
          this.#mode = 'auth-plain';
          return this.#send(334, '');
        }
        return this.#authPlain(initial);
      case 'LOGIN':
        if (initial !== undefined) return this.#authLoginUser(initial);
        this.#mode = 'auth-login-user';
        return this.#send(334, 'VXNlcm5hbWU6');
      default:
        return this.#send(504, '5.5.4 Error: unrecognized authentication type');
    }
  }

  #authPlain(line: string): void {
    this.#mode = 'command';
    if (line === '*') return this.#send(501, '5.7.0 Authentication aborted');
    const decoded = base64(line);
    if (decoded === undefined) return this.#fault(501, '5.5.2 Error: invalid base64', true);
    const parts = decoded.split('\0');
    if (parts.length !== 3) return this.#send(501, '5.5.2 Error: invalid userdata');
    this.#authenticate(parts[1] as string, parts[2] as string);
  }

  #authLoginUser(line: string): void {
    if (line === '*') {
      this.#mode = 'command';
      return this.#send(501, '5.7.0 Authentication aborted');
    }
    const user = base64(line);
    if (user === undefined) {
      this.#mode = 'command';
      return this.#fault(501, '5.5.2 Error: invalid base64', true);
    }
    this.#loginUser = user;
    this.#mode = 'auth-login-pass';
    this.#send(334, 'UGFzc3dvcmQ6');
  }

  #authLoginPass(line: string): void {
    this.#mode = 'command';
    if (line === '*') return this.#send(501, '5.7.0 Authentication aborted');
    const password = base64(line);
    const user = this.#loginUser;
    this.#loginUser = '';
    if (password === undefined) return this.#fault(501, '5.5.2 Error: invalid base64', true);
    this.#authenticate(user, password);
  }

  #authenticate(username: string, password: string): void {
    const answer = guard(() => this.#hooks.auth(username, password, this.#session));
    if (typeof answer !== 'string') return answer.code === 535 ? this.#fault(answer.code, answer.text, true) : this.#send(answer.code, answer.text);
    this.#session.user = answer;
    this.#send(235, '2.7.0 Authentication successful');
  }
}

/**
 * DATA: unstuffs dots at line starts and finds the terminating CRLF.CRLF, whatever the TCP
 * segmentation. Only a line start (the beginning, or just after CRLF) is special, and a dot there
 * is held until the next bytes say what it is: the terminator, or a stuffed dot to drop. The
 * CRLF before the terminator belongs to the message.
 */
class DataFeed {
  readonly #stream: DataStream;
  readonly #limit: number;
  readonly #pause: () => void;
  #lineStart = true;
  /** 0: nothing held; 1: a dot at a line start; 2: a dot and CR at a line start. */
  #held = 0;
  #lastWasCr = false;
  #discarding = false;

  constructor(stream: DataStream, limit: number, pause: () => void) {
    this.#stream = stream;
    this.#limit = limit;
    this.#pause = pause;
  }

  /** The bytes after the terminator once it is found, else undefined. */
  feed(chunk: Buffer): Buffer | undefined {
    let from = 0;
    let i = 0;
    while (i < chunk.length) {
      if (this.#held === 1) {
        if (chunk[i] === 0x0d) {
          this.#held = 2;
          from = ++i;
          continue;
        }
        // A stuffed dot: dropped, and the line goes on.
        this.#held = 0;
        this.#lineStart = false;
        continue;
      }
      if (this.#held === 2) {
        this.#held = 0;
        if (chunk[i] === 0x0a) {
          this.#finish();
          return chunk.subarray(i + 1);
        }
        this.#emit(CR);
        this.#lineStart = false;
        continue;
      }
      if (this.#lineStart) {
        this.#lineStart = false;
        if (chunk[i] === 0x2e) {
          this.#emit(chunk.subarray(from, i));
          this.#held = 1;
          from = ++i;
        }
        continue;
      }
      const lf = chunk.indexOf(0x0a, i);
      if (lf === -1) {
        this.#lastWasCr = chunk[chunk.length - 1] === 0x0d;
        break;
      }
      this.#lineStart = lf > 0 ? chunk[lf - 1] === 0x0d : this.#lastWasCr;
      this.#lastWasCr = false;
      i = lf + 1;
    }
    this.#emit(chunk.subarray(from, chunk.length));
    return undefined;
  }

  /** The hook answered early: read on to the terminator without keeping anything. */
  discard(): void {
    this.#discarding = true;
  }

  abort(err: Error): void {
    this.#stream.destroy(err);
  }

  #emit(bytes: Buffer): void {
    if (bytes.length === 0 || this.#discarding) return;
    this.#stream.bytes += bytes.length;
    if (this.#stream.bytes > this.#limit) {
      this.#stream.sizeExceeded = true;
      return;
    }
    // A destroyed stream's reader is gone (it threw, or gave up): the client is read to the dot.
    if (this.#stream.destroyed) return;
    if (!this.#stream.push(bytes)) this.#pause();
  }

  #finish(): void {
    if (!this.#stream.destroyed) this.#stream.push(null);
  }
}

export const LOCAL_ERROR = refusal(451, '4.3.0 Local error in processing, try again later');

/** A hook that throws is a local error for this command, never a crashed process. */
function guard<T>(call: () => T): T | SmtpRefusal {
  try {
    return call();
  } catch {
    return LOCAL_ERROR;
  }
}

/** RFC 4954: "=" is an empty response; anything not base64 is refused, not guessed at. */
function base64(text: string): string | undefined {
  if (text === '=') return '';
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  return Buffer.from(text, 'base64').toString('utf8');
}

function emptyEnvelope(): SessionEnvelope {
  return { mailFrom: false, rcptTo: [], dsn: {}, bodyType: '7bit', smtpUtf8: false };
}

const PATH = {
  FROM: /^FROM:\s*(?:<([^<>]*)>|([^\s<>]+))((?:\s+\S+)*)\s*$/i,
  TO: /^TO:\s*(?:<([^<>]*)>|([^\s<>]+))((?:\s+\S+)*)\s*$/i,
};

/** "FROM:<a@b> SIZE=10 BODY=8BITMIME" → address and upper-cased parameters. */
export function parsePath(rest: string, keyword: 'FROM' | 'TO'): { address: string; args: Record<string, string | true> } | undefined {
  const m = PATH[keyword].exec(rest);
  if (!m) return undefined;
  const address = (m[1] ?? m[2] ?? '').trim();
  const args: Record<string, string | true> = {};
  for (const part of (m[3] ?? '').trim().split(/\s+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq === 0) return undefined;
    args[(eq === -1 ? part : part.slice(0, eq)).toUpperCase()] = eq === -1 ? true : part.slice(eq + 1);
  }
  return { address, args };
}

function mailParam(envelope: SessionEnvelope, key: string, value: string | true, limit: number): SmtpRefusal | undefined {
  switch (key) {
    case 'SIZE':
      if (typeof value !== 'string' || !/^\d+$/.test(value)) return refusal(501, '5.5.4 Error: invalid SIZE parameter');
      if (Number(value) > limit) return refusal(552, `5.3.4 Error: message exceeds fixed maximum message size ${limit}`);
      return undefined;
    case 'BODY': {
      const body = typeof value === 'string' ? value.toLowerCase() : '';
      if (body !== '7bit' && body !== '8bitmime') return refusal(501, '5.5.4 Error: BODY must be 7BIT or 8BITMIME');
      envelope.bodyType = body;
      return undefined;
    }
    case 'SMTPUTF8':
      if (value !== true) return refusal(501, '5.5.4 Error: SMTPUTF8 takes no value');
      envelope.smtpUtf8 = true;
      return undefined;
    case 'RET': {
      const ret = typeof value === 'string' ? value.toUpperCase() : '';
      if (ret !== 'FULL' && ret !== 'HDRS') return refusal(501, '5.5.4 Error: RET must be FULL or HDRS');
      envelope.dsn.ret = ret;
      return undefined;
    }
    case 'ENVID':
      if (typeof value !== 'string' || value === '') return refusal(501, '5.5.4 Error: invalid ENVID parameter');
      envelope.dsn.envid = decodeXtext(value);
      return undefined;
    default:
      return refusal(555, `5.5.4 Error: unsupported parameter ${key}`);
  }
}

/** RFC 3461 xtext; control characters that a decoded "+0D+0A" would smuggle are dropped. */
function decodeXtext(value: string): string {
  return value.replace(/\+([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).replace(/[\x00-\x1f\x7f]/g, '');
}

