/**
 * Reply reading for one socket, bounded in memory and in time. Replies are matched to waiters in
 * order, which is all pipelining needs. Every reply must answer something sent (the greeting
 * answers the connect): one more would shift every later reply onto the wrong command, so it
 * ends the connection. A lost, timed-out or misbehaving connection answers every waiter, present
 * and future, with a local reply naming the command that was waiting.
 */
import type { Socket } from 'node:net';
import type { Clock, Timer } from '../../lib/clock.ts';
import { localReply, parseReply, type SmtpCommand, type SmtpReply } from '../../model/reply.ts';
import { MAX_REPLY_BYTES, MAX_REPLY_LINE, MAX_REPLY_LINES } from '../limits.ts';

export interface Received {
  readonly reply: SmtpReply;
  /** The reply's lines as received, "250-" prefixes and all (EHLO keywords follow them). */
  readonly lines: readonly string[];
}

interface Waiter {
  readonly command: SmtpCommand;
  readonly resolve: (r: Received) => void;
  deadline: Timer | undefined;
}

interface Failure { readonly enhanced: string; readonly text: (command: SmtpCommand) => string }

const EMPTY = Buffer.alloc(0);
const REPLY_LINE = /^\d{3}(?:[ -]|$)/;
/** How the local reply for a reply past a cap begins (connect.ts gives it the code EOVERFLOW). */
export const REPLY_OVERFLOW = 'reply overflow: ';

/** What a reply that missed its deadline records; the greeting's words are what bounce rules know. */
function deadlineText(command: SmtpCommand, ms: number): string {
  return command === 'CONNECT' ? `timeout: Greeting never received within ${ms} ms` : `timeout: no reply to ${command} within ${ms} ms`;
}

export class Wire {
  socket: Socket;
  readonly #clock: Clock;
  /** The socket's idle timeout: only a message going out is watched by it (replies have deadlines). */
  readonly #idleMs: number;
  #partial: Buffer = EMPTY;
  #lines: string[] = [];
  #replyBytes = 0;
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
    if (this.sendingBody) this.abort(`timeout: the server stopped reading the message for ${this.#idleMs} ms`);
  };

  constructor(socket: Socket, clock: Clock, idleMs: number) {
    this.#clock = clock;
    this.#idleMs = idleMs;
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
    socket.setTimeout(this.#idleMs);
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

  /**
   * The next reply, for `command`. `deadlineMs` starts now and holds however the server paces its
   * bytes: a reply dripped a byte at a time misses it like one never sent.
   */
  next(command: SmtpCommand, deadlineMs?: number): Promise<Received> {
    const early = this.#early.shift();
    if (early) return Promise.resolve(received(early, command));
    if (this.#failure) return Promise.resolve(this.#lost(command));
    return new Promise((resolve) => {
      const waiter: Waiter = { command, resolve, deadline: undefined };
      if (deadlineMs !== undefined) {
        waiter.deadline = this.#clock.at(this.#clock.now() + deadlineMs, () => this.#fail('4.4.2', (c) => deadlineText(c, deadlineMs), true));
      }
      this.#waiters.push(waiter);
    });
  }

  fail(enhanced: string, text: (command: SmtpCommand) => string): void {
    this.#fail(enhanced, text, false);
  }

  /** Fail and hang up: nothing more this server says can be trusted. */
  abort(text: string, enhanced = '4.4.2'): void {
    this.#fail(enhanced, () => text, true);
  }

  protocolError(what: string): void {
    this.abort(`protocol error: ${what}`);
  }

  /** A reply past a cap (MAX_REPLY_*): its own error (EOVERFLOW at connect), so a flood is told from a garbled reply. */
  overflow(what: string): void {
    this.abort(`${REPLY_OVERFLOW}${what}`);
  }

  /** The local reply for a command on this connection once it has failed (or was closed by us). */
  lost(command: SmtpCommand): SmtpReply {
    const f = this.#failure ?? { enhanced: '4.4.2', text: () => 'connection lost: closed' };
    return localReply(451, f.enhanced, f.text(command), command);
  }

  #fail(enhanced: string, text: (command: SmtpCommand) => string, hangUp: boolean): void {
    this.#failure ??= { enhanced, text };
    // What was buffered for a reply that will never finish is dropped at once.
    this.#partial = EMPTY;
    this.#lines = [];
    for (const w of this.#waiters.splice(0)) settle(w, this.#lost(w.command));
    if (hangUp) this.socket.destroy();
  }

  #lost(command: SmtpCommand): Received {
    return { reply: this.lost(command), lines: [] };
  }

  #read(chunk: Buffer): void {
    if (this.failed) return;
    const data = this.#partial.length > 0 ? Buffer.concat([this.#partial, chunk]) : chunk;
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
      const end = nl > start && data[nl - 1] === 0x0d ? nl - 1 : nl;
      if (end - start > MAX_REPLY_LINE) return this.overflow(`a reply line longer than ${MAX_REPLY_LINE} bytes`);
      this.#line(data.toString('utf8', start, end));
      if (this.failed) return;
      start = nl + 1;
    }
    if (data.length - start > MAX_REPLY_LINE) return this.overflow(`a reply line longer than ${MAX_REPLY_LINE} bytes`);
    this.#partial = start < data.length ? Buffer.from(data.subarray(start)) : EMPTY;
  }

  #line(line: string): void {
    if (!REPLY_LINE.test(line)) return this.protocolError(`not an SMTP reply: ${JSON.stringify(line.slice(0, 100))}`);
    this.#lines.push(line);
    this.#replyBytes += line.length + 2;
    if (this.#lines.length > MAX_REPLY_LINES) return this.overflow(`a reply longer than ${MAX_REPLY_LINES} lines`);
    if (this.#replyBytes > MAX_REPLY_BYTES) return this.overflow(`a reply longer than ${MAX_REPLY_BYTES} bytes`);
    if (line[3] === '-') return;
    const lines = this.#lines;
    this.#lines = [];
    this.#replyBytes = 0;
    this.#complete(lines);
  }

  #complete(lines: string[]): void {
    if (this.#outstanding === 0) {
      const said = JSON.stringify(lines.join(' ').slice(0, 100));
      // An idle server may say 421 as it hangs up; anything else unasked is out of step.
      return lines[0]?.startsWith('421') ? this.abort(`the server ended the session: ${said}`) : this.protocolError(`a reply to no command: ${said}`);
    }
    this.#outstanding--;
    const waiter = this.#waiters.shift();
    if (waiter) settle(waiter, received(lines, waiter.command));
    else this.#early.push(lines);
  }
}

function settle(waiter: Waiter, r: Received): void {
  waiter.deadline?.cancel();
  waiter.resolve(r);
}

function received(lines: readonly string[], command: SmtpCommand): Received {
  return { reply: parseReply(lines.join('\r\n'), { command }), lines };
}
