/**
 * Tern's outbound SMTP client. Everything past this file sees SmtpReply values: a remote reply
 * when the server said something, a local one (timeout, lost connection, TLS failure) otherwise.
 *
 * It is written for the one job a relay has: many messages over few connections. With
 * PIPELINING (RFC 2920) a transaction costs two socket writes — MAIL, every RCPT and DATA in
 * one, the dot-stuffed message and its terminator in the other — where a general-purpose client
 * (nodemailer, which Tern used first) made about seven, and stuffed dots a byte at a time.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Readable } from 'node:stream';
import { cutOffLater } from '../lib/net.ts';
import type { ConnectionEvent, TlsPolicy } from '../model/path.ts';
import { isSuccess as ok, localReply, parseReply, type SmtpCommand, type SmtpReply } from '../model/reply.ts';

export interface ConnectOptions {
  readonly host: string;
  readonly servername: string;
  readonly port: number;
  readonly localName: string;
  readonly localAddress?: string;
  /** required: no STARTTLS, a refused one or a failed handshake ends the connection (never plaintext). */
  readonly tls: TlsPolicy;
  /** `data`: how long the server may take to answer the end of a message (RFC 5321: 10 min). */
  readonly timeouts: { readonly connect: number; readonly greeting: number; readonly command: number; readonly data?: number };
  /** Aborted: stop waiting for the greeting now, as if its timeout had passed (a session tarpitted). */
  readonly giveUpGreeting?: AbortSignal;
}

export interface Envelope {
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly size: number;
  readonly eightBit: boolean;
  readonly envid?: string;
  readonly ret?: string;
}

export type SendResult =
  | { readonly kind: 'transaction'; readonly replies: readonly SmtpReply[]; readonly healthy: boolean }
  | { readonly kind: 'message-refused'; readonly reply: SmtpReply; readonly healthy: boolean };

export interface ClientConnection {
  readonly secure: boolean;
  readonly remoteIp: string;
  readonly localIp: string | undefined;
  send(envelope: Envelope, body: Readable): Promise<SendResult>;
  reset(): Promise<boolean>;
  /** Resolves once the socket is closed: until then the receiver still counts the session. */
  quit(): Promise<void>;
  close(): void;
  readonly closed: boolean;
}

/**
 * Why a connection could not be opened. `code` ETLS means TLS failed (or was required and not to
 * be had); `event` names a failure no server said in words, for the adaptive rules.
 */
export class ConnectError extends Error {
  readonly code: string;
  readonly reply: SmtpReply;
  readonly event: ConnectionEvent | undefined;
  constructor(code: string, reply: SmtpReply, event?: ConnectionEvent) {
    super(reply.text);
    this.code = code;
    this.reply = reply;
    this.event = event;
  }
}

/** The reply to record for a failed connect, whatever was thrown. */
export function connectFailure(err: unknown): SmtpReply {
  if (err instanceof ConnectError) return err.reply;
  return localReply(451, '4.4.1', `connection failed: ${(err as Error).message}`, 'CONNECT');
}

interface Extensions {
  readonly pipelining: boolean;
  readonly eightBitMime: boolean;
  readonly size: boolean;
  readonly dsn: boolean;
  readonly smtputf8: boolean;
  readonly starttls: boolean;
}

interface Received {
  readonly reply: SmtpReply;
  /** The reply's lines as received, "250-" prefixes and all (EHLO keywords follow them). */
  readonly lines: readonly string[];
}

interface Waiter { readonly command: SmtpCommand; readonly resolve: (r: Received) => void }

interface Failure { readonly enhanced: string; readonly text: (command: SmtpCommand) => string }

/** Longest reply line we buffer; a peer that sends more without a newline is not speaking SMTP. */
const MAX_LINE = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const REPLY_LINE = /^\d{3}(?:[ -]|$)/;

/**
 * Reply reading for one socket: replies are matched to waiters in order, which is all
 * pipelining needs. Every reply must answer something sent (the greeting answers the connect):
 * one more would shift every later reply onto the wrong command, so it ends the connection. A
 * lost or timed-out connection answers every waiter, present and future, with a local reply
 * naming the command that was waiting.
 */
class Wire {
  socket: Socket;
  #partial: Buffer = EMPTY;
  #lines: string[] = [];
  readonly #waiters: Waiter[] = [];
  readonly #early: string[][] = [];
  #failure: Failure | undefined;
  /** Replies owed to us: commands and message terminators sent, plus the greeting. */
  #outstanding = 1;
  /** Waiting for the socket to take more of a message: a timeout means the server stopped reading. */
  sendingBody = false;
  readonly #onData = (chunk: Buffer): void => this.#read(chunk);
  readonly #onClose = (): void => this.fail('4.4.2', () => 'connection lost: the server closed the connection');
  readonly #onError = (err: Error): void => this.fail('4.4.2', () => `connection lost: ${err.message}`);
  readonly #onTimeout = (): void => {
    if (this.#waiters.length === 0 && !this.sendingBody) return;
    const ms = this.socket.timeout ?? 0;
    const text = this.sendingBody
      ? (): string => `timeout: the server stopped reading the message for ${ms} ms`
      : (command: SmtpCommand): string => (command === 'CONNECT' ? 'timeout: Greeting never received' : `timeout: no reply to ${command} within ${ms} ms`);
    this.fail('4.4.2', text);
    this.socket.destroy();
  };

  constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  get failed(): boolean { return this.#failure !== undefined; }

  attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.#onData);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
    socket.on('timeout', this.#onTimeout);
  }

  /**
   * Hand the socket over (to TLS); errors on it are still caught, so none goes unhandled.
   * Anything the server sent after its reply to STARTTLS would be plaintext smuggled into the
   * TLS session (RFC 3207 §4.2): that is a protocol error, never data to read later.
   */
  detach(): Socket {
    if (this.#partial.length > 0 || this.#lines.length > 0 || this.#early.length > 0 || this.#outstanding > 0) {
      this.protocolError('the server sent more after its reply to STARTTLS');
    }
    const socket = this.socket;
    socket.off('data', this.#onData);
    socket.off('close', this.#onClose);
    socket.off('error', this.#onError);
    socket.off('timeout', this.#onTimeout);
    socket.setTimeout(0);
    socket.on('error', () => undefined);
    return socket;
  }

  /** Write command lines; each one will be answered. */
  write(data: string): void {
    if (this.failed) return;
    this.#outstanding += data.split('\r\n').length - 1;
    this.socket.write(data);
  }

  /** A message terminator or QUIT went out by another path: it will be answered too. */
  expectReply(): void {
    this.#outstanding++;
  }

  next(command: SmtpCommand): Promise<Received> {
    const early = this.#early.shift();
    if (early) return Promise.resolve(received(early, command));
    if (this.#failure) return Promise.resolve(this.#lost(command));
    return new Promise((resolve) => this.#waiters.push({ command, resolve }));
  }

  fail(enhanced: string, text: (command: SmtpCommand) => string): void {
    this.#failure ??= { enhanced, text };
    for (const w of this.#waiters.splice(0)) w.resolve(this.#lost(w.command));
  }

  /** The local reply for a command on this connection once it has failed (or was closed by us). */
  lost(command: SmtpCommand): SmtpReply {
    const f = this.#failure ?? { enhanced: '4.4.2', text: () => 'connection lost: closed' };
    return localReply(451, f.enhanced, f.text(command), command);
  }

  #lost(command: SmtpCommand): Received {
    return { reply: this.lost(command), lines: [] };
  }

  #read(chunk: Buffer): void {
    const data = this.#partial.length > 0 ? Buffer.concat([this.#partial, chunk]) : chunk;
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
      const end = nl > start && data[nl - 1] === 0x0d ? nl - 1 : nl;
      this.#line(data.toString('utf8', start, end));
      start = nl + 1;
    }
    this.#partial = start < data.length ? Buffer.from(data.subarray(start)) : EMPTY;
    if (this.#partial.length > MAX_LINE) this.protocolError('a reply line longer than 64 KiB');
  }

  #line(line: string): void {
    if (this.failed) return;
    if (!REPLY_LINE.test(line)) return this.protocolError(`not an SMTP reply: ${JSON.stringify(line.slice(0, 100))}`);
    this.#lines.push(line);
    if (line[3] === '-') return;
    const lines = this.#lines;
    this.#lines = [];
    if (this.#outstanding === 0) {
      const said = JSON.stringify(lines.join(' ').slice(0, 100));
      // An idle server may say 421 as it hangs up; anything else unasked is out of step.
      return lines[0]?.startsWith('421') ? this.#end(`the server ended the session: ${said}`) : this.protocolError(`a reply to no command: ${said}`);
    }
    this.#outstanding--;
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(received(lines, waiter.command));
    else this.#early.push(lines);
  }

  protocolError(what: string): void {
    this.#end(`protocol error: ${what}`);
  }

  #end(text: string): void {
    this.fail('4.4.2', () => text);
    this.socket.destroy();
  }
}

function received(lines: readonly string[], command: SmtpCommand): Received {
  return { reply: parseReply(lines.join('\r\n'), { command }), lines };
}

export async function connectClient(options: ConnectOptions): Promise<ClientConnection> {
  const wire = new Wire(await openSocket(options));
  const giveUp = (): void => {
    wire.fail('4.4.2', () => 'timeout: Greeting never received (while other sessions to this host were greeted)');
    wire.socket.destroy();
  };
  try {
    wire.socket.setTimeout(options.timeouts.greeting);
    options.giveUpGreeting?.addEventListener('abort', giveUp, { once: true });
    if (options.giveUpGreeting?.aborted) giveUp();
    const greeting = await wire.next('CONNECT');
    options.giveUpGreeting?.removeEventListener('abort', giveUp);
    if (greeting.reply.code !== 220) throw greetingFailure(greeting.reply);
    wire.socket.setTimeout(options.timeouts.command);
    const extensions = await hello(wire, options.localName);
    const session = options.tls === 'disabled' ? { extensions, secure: false } : await secureSession(wire, extensions, options);
    if (wire.failed) throw new ConnectError('EPROTOCOL', wire.lost('EHLO'));
    return new Connection(wire, session.extensions, session.secure, options.timeouts);
  } catch (err) {
    wire.socket.destroy();
    throw err;
  }
}

function greetingFailure(reply: SmtpReply): ConnectError {
  if (reply.origin === 'remote') return new ConnectError('EPROTOCOL', reply);
  const timedOut = reply.text.startsWith('timeout');
  return new ConnectError(timedOut ? 'ETIMEDOUT' : 'ECONNECTION', reply, timedOut ? 'greeting-timeout' : undefined);
}

/**
 * STARTTLS when offered. Opportunistic: a refused STARTTLS leaves a plaintext session, as Postfix
 * does at security level "may". Required: not offered or refused ends the connection.
 */
async function secureSession(wire: Wire, extensions: Extensions, options: ConnectOptions): Promise<{ extensions: Extensions; secure: boolean }> {
  const required = options.tls === 'required';
  if (!extensions.starttls) {
    if (required) throw new ConnectError('ETLS', localReply(451, '4.7.4', 'TLS failure: TLS is required, but the server does not offer STARTTLS', 'STARTTLS'), 'tls-failed');
    return { extensions, secure: false };
  }
  wire.write('STARTTLS\r\n');
  const answer = (await wire.next('STARTTLS')).reply;
  if (answer.origin === 'local') throw new ConnectError(answer.text.startsWith('timeout') ? 'ETIMEDOUT' : 'ECONNECTION', answer);
  if (answer.code !== 220) {
    if (required) throw new ConnectError('ETLS', localReply(451, '4.7.4', `TLS failure: TLS is required, but the server refused STARTTLS: ${answer.code} ${answer.text}`, 'STARTTLS'), 'tls-failed');
    return { extensions, secure: false };
  }
  const raw = wire.detach();
  if (wire.failed) throw new ConnectError('EPROTOCOL', wire.lost('STARTTLS'));
  wire.attach(await startTls(raw, options));
  return { extensions: await hello(wire, options.localName), secure: true };
}

function openSocket(options: ConnectOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: options.host, port: options.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectError('ETIMEDOUT', localReply(451, '4.4.2', `timeout: no connection within ${options.timeouts.connect} ms`, 'CONNECT'), 'connect-timeout'));
    }, options.timeouts.connect);
    socket.once('error', (err) => {
      clearTimeout(timer);
      const refused = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      reject(new ConnectError('ECONNECTION', localReply(451, '4.4.1', `connection failed: ${err.message}`, 'CONNECT'), refused ? 'connect-refused' : undefined));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/** EHLO, or HELO for a server that does not know EHLO (no extensions then). */
async function hello(wire: Wire, localName: string): Promise<Extensions> {
  wire.write(`EHLO ${localName}\r\n`);
  const ehlo = await wire.next('EHLO');
  if (ok(ehlo.reply)) return parseExtensions(ehlo.lines.slice(1).map((l) => l.slice(4)));
  if (ehlo.reply.origin === 'remote' && ehlo.reply.code >= 500) {
    wire.write(`HELO ${localName}\r\n`);
    const helo = await wire.next('EHLO');
    if (ok(helo.reply)) return parseExtensions([]);
    throw new ConnectError('EPROTOCOL', helo.reply);
  }
  throw new ConnectError(ehlo.reply.origin === 'local' ? 'ETIMEDOUT' : 'EPROTOCOL', ehlo.reply);
}

function parseExtensions(lines: readonly string[]): Extensions {
  const keywords = new Set(lines.map((l) => (l.split(/[ =]/)[0] ?? '').toUpperCase()));
  return {
    pipelining: keywords.has('PIPELINING'),
    eightBitMime: keywords.has('8BITMIME'),
    size: keywords.has('SIZE'),
    dsn: keywords.has('DSN'),
    smtputf8: keywords.has('SMTPUTF8'),
    starttls: keywords.has('STARTTLS'),
  };
}

/** Opportunistic TLS accepts any certificate, as Postfix does at security level "may". */
function startTls(socket: Socket, options: ConnectOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({
      socket,
      rejectUnauthorized: false,
      ...(isIP(options.servername) === 0 ? { servername: options.servername } : {}),
    });
    const fail = (err: Error): void => {
      secure.destroy();
      reject(new ConnectError('ETLS', localReply(451, '4.7.5', `TLS failure: ${err.message}`, 'STARTTLS'), 'tls-failed'));
    };
    const timedOut = (): void => fail(new Error('handshake timed out'));
    secure.setTimeout(options.timeouts.command);
    secure.on('timeout', timedOut);
    secure.once('error', fail);
    secure.once('secureConnect', () => {
      secure.off('error', fail);
      secure.off('timeout', timedOut);
      resolve(secure);
    });
  });
}

class Connection implements ClientConnection {
  readonly secure: boolean;
  readonly remoteIp: string;
  readonly localIp: string | undefined;
  readonly #wire: Wire;
  readonly #ext: Extensions;
  readonly #timeouts: ConnectOptions['timeouts'];
  #quit = false;

  constructor(wire: Wire, extensions: Extensions, secure: boolean, timeouts: ConnectOptions['timeouts']) {
    this.#wire = wire;
    this.#ext = extensions;
    this.#timeouts = timeouts;
    this.secure = secure;
    this.remoteIp = wire.socket.remoteAddress ?? '';
    this.localIp = wire.socket.localAddress;
  }

  get closed(): boolean { return this.#quit || this.#wire.failed; }

  async send(envelope: Envelope, body: Readable): Promise<SendResult> {
    try {
      return await this.#transaction(envelope, body);
    } finally {
      // A body not (fully) sent must still be closed: it may hold a spool file open.
      body.destroy();
    }
  }

  async #transaction(envelope: Envelope, body: Readable): Promise<SendResult> {
    const wire = this.#wire;
    if (this.closed) return { kind: 'message-refused', reply: wire.lost('MAIL'), healthy: false };
    const mail = `MAIL FROM:<${envelope.sender}>${this.#mailParams(envelope)}\r\n`;
    const rcpts = envelope.recipients.map((r) => `RCPT TO:<${r}>\r\n`);
    let mailReply: SmtpReply;
    const rcptReplies: SmtpReply[] = [];
    let dataReply: SmtpReply | undefined;
    if (this.#ext.pipelining) {
      wire.write(`${mail}${rcpts.join('')}DATA\r\n`);
      mailReply = (await wire.next('MAIL')).reply;
      for (let i = 0; i < rcpts.length; i++) rcptReplies.push((await wire.next('RCPT')).reply);
      dataReply = (await wire.next('DATA')).reply;
    } else {
      wire.write(mail);
      mailReply = (await wire.next('MAIL')).reply;
      if (ok(mailReply)) {
        for (const rcpt of rcpts) {
          wire.write(rcpt);
          rcptReplies.push((await wire.next('RCPT')).reply);
        }
        if (rcptReplies.some(ok)) {
          wire.write('DATA\r\n');
          dataReply = (await wire.next('DATA')).reply;
        }
      }
    }
    const accepted = ok(mailReply) && rcptReplies.some(ok);
    if (dataReply?.code === 354 && !accepted) {
      // The server opened DATA for a transaction that has no recipient: end it empty.
      wire.write('.\r\n');
      await wire.next('DATA');
    }
    if (!ok(mailReply)) return { kind: 'message-refused', reply: mailReply, healthy: this.#healthyAfter(mailReply) };
    // A connection lost during RCPT stays lost: that reply is the message's verdict.
    const lost = rcptReplies.find((r) => r.origin === 'local');
    if (!accepted && lost) return { kind: 'message-refused', reply: lost, healthy: false };
    if (!accepted) return { kind: 'transaction', replies: rcptReplies, healthy: this.#healthyAfter(rcptReplies.at(-1) as SmtpReply) };
    if (dataReply && ok(dataReply)) wire.protocolError(`a ${dataReply.code} reply to DATA, which must be 354 before the message`);
    const verdict = lost ?? (dataReply?.code === 354 ? await this.#sendBody(body) : wire.failed ? wire.lost('DATA') : (dataReply as SmtpReply));
    // Recipients the server refused keep their own reply; the rest share the message's fate.
    const replies = rcptReplies.map((r) => (ok(r) || r.origin === 'local' ? verdict : r));
    if (!ok(verdict) && replies.every((r) => r === verdict)) return { kind: 'message-refused', reply: verdict, healthy: this.#healthyAfter(verdict) };
    return { kind: 'transaction', replies, healthy: this.#healthyAfter(verdict) };
  }

  async reset(): Promise<boolean> {
    if (this.closed) return false;
    this.#wire.write('RSET\r\n');
    return ok((await this.#wire.next('MAIL')).reply);
  }

  quit(): Promise<void> {
    const socket = this.#wire.socket;
    const closed = socket.destroyed ? Promise.resolve() : new Promise<void>((resolve) => socket.once('close', () => resolve()));
    if (this.closed) {
      socket.destroy();
      return closed;
    }
    this.#quit = true;
    this.#wire.expectReply();
    socket.end('QUIT\r\n');
    // The server answers 221 and closes; one that does not is cut off.
    cutOffLater(socket, 5_000);
    return closed;
  }

  close(): void {
    this.#quit = true;
    // Recorded before the socket's close event would blame the server for our own cut.
    this.#wire.fail('4.4.2', () => 'connection closed by Tern (the transaction passed its deadline, or shutdown)');
    this.#wire.socket.destroy();
  }

  #healthyAfter(reply: SmtpReply): boolean {
    return !this.closed && reply.origin === 'remote' && reply.code !== 421;
  }

  #mailParams(envelope: Envelope): string {
    let params = '';
    if (this.#ext.size) params += ` SIZE=${envelope.size}`;
    if (envelope.eightBit && this.#ext.eightBitMime) params += ' BODY=8BITMIME';
    if (this.#ext.smtputf8 && [envelope.sender, ...envelope.recipients].some((a) => /[^\x00-\x7f]/.test(a))) params += ' SMTPUTF8';
    if (this.#ext.dsn && envelope.ret) params += ` RET=${envelope.ret}`;
    if (this.#ext.dsn && envelope.envid) params += ` ENVID=${xtext(envelope.envid)}`;
    return params;
  }

  /**
   * The message, dot-stuffed, then the terminator, corked into as few writes as the socket's
   * buffer allows. A body that cannot be read aborts the connection: the server must never
   * see a terminator after a partial message.
   */
  async #sendBody(body: Readable): Promise<SmtpReply> {
    const wire = this.#wire;
    const socket = wire.socket;
    let atLineStart = true;
    let tail: Buffer = Buffer.from('\r\n');
    socket.cork();
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (chunk.length === 0) continue;
        if (wire.failed) break;
        const flowing = socket.write(stuffDots(chunk, atLineStart));
        atLineStart = chunk[chunk.length - 1] === 0x0a;
        tail = chunk.length >= 2 ? chunk.subarray(-2) : Buffer.from([tail[1] as number, chunk[0] as number]);
        if (!flowing) {
          socket.uncork();
          wire.sendingBody = true;
          await drained(socket);
          wire.sendingBody = false;
          socket.cork();
        }
      }
    } catch (err) {
      socket.uncork();
      wire.fail('4.3.0', () => `local error reading the message: ${(err as Error).message}`);
      socket.destroy();
      return (await wire.next('DATA')).reply;
    }
    if (wire.failed) {
      socket.uncork();
      return (await wire.next('DATA')).reply;
    }
    const endsWithCrlf = tail[0] === 0x0d && tail[1] === 0x0a;
    wire.expectReply();
    socket.write(endsWithCrlf ? '.\r\n' : '\r\n.\r\n');
    socket.uncork();
    // The server may scan the message before it answers; giving up early would deliver it twice.
    socket.setTimeout(this.#timeouts.data ?? this.#timeouts.command);
    const verdict = (await wire.next('DATA')).reply;
    socket.setTimeout(this.#timeouts.command);
    return verdict;
  }
}

const DOT = Buffer.from('.');

/** RFC 5321 §4.5.2: a line that starts with "." gets one more. */
export function stuffDots(chunk: Buffer, atLineStart: boolean): Buffer {
  const lead = atLineStart && chunk[0] === 0x2e;
  let at = chunk.indexOf('\n.');
  if (at === -1) return lead ? Buffer.concat([DOT, chunk]) : chunk;
  const parts: Buffer[] = lead ? [DOT] : [];
  let from = 0;
  for (; at !== -1; at = chunk.indexOf('\n.', at + 1)) {
    parts.push(chunk.subarray(from, at + 1), DOT);
    from = at + 1;
  }
  parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/** RFC 3461 xtext: "+" and "=" and anything outside printable ASCII as +HH. */
function xtext(value: string): string {
  return value.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
