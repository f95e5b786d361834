/**
 * A session past EHLO (and STARTTLS): transactions, RSET, QUIT.
 *
 * It is written for the one job a relay has: many messages over few connections. With
 * PIPELINING (RFC 2920) a transaction costs two socket writes — MAIL, every RCPT and DATA in
 * one, the dot-stuffed message and its terminator in the other — where a general-purpose client
 * (nodemailer, which Tern used first) made about seven, and stuffed dots a byte at a time.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { cutOffLater } from '../../lib/net.ts';
import { isSuccess as ok, type SmtpCommand, type SmtpReply } from '../../model/reply.ts';
import { QUIT_GRACE_MS } from '../limits.ts';
import { stuffDots } from './dot-stuffing.ts';
import { mailParams, rcptParams, type Extensions } from './params.ts';
import type { ClientConnection, Envelope, SendResult, Timeouts, TlsInfo } from './types.ts';
import type { Wire } from './wire.ts';

const CRLF = Buffer.from('\r\n');

export class Connection implements ClientConnection {
  readonly tls: TlsInfo | undefined;
  readonly remoteIp: string;
  readonly localIp: string | undefined;
  readonly #wire: Wire;
  readonly #ext: Extensions;
  readonly #timeouts: Timeouts;
  #quit = false;

  constructor(wire: Wire, extensions: Extensions, tls: TlsInfo | undefined, timeouts: Timeouts) {
    this.#wire = wire;
    this.#ext = extensions;
    this.#timeouts = timeouts;
    this.tls = tls;
    this.remoteIp = wire.socket.remoteAddress ?? '';
    this.localIp = wire.socket.localAddress;
  }

  get secure(): boolean { return this.tls !== undefined; }
  get closed(): boolean { return this.#quit || this.#wire.failed; }

  async send(envelope: Envelope, body: Readable): Promise<SendResult> {
    try {
      return await this.#transaction(envelope, body);
    } finally {
      // A body not (fully) sent must still be closed: it may hold a spool file open.
      body.destroy();
    }
  }

  /** The next reply, within the command deadline. */
  #reply(command: SmtpCommand): Promise<SmtpReply> {
    return this.#wire.next(command, this.#timeouts.command).then((r) => r.reply);
  }

  async #transaction(envelope: Envelope, body: Readable): Promise<SendResult> {
    const wire = this.#wire;
    if (this.closed) return { kind: 'message-refused', reply: wire.lost('MAIL'), healthy: false };
    const mail = `MAIL FROM:<${envelope.sender}>${mailParams(this.#ext, envelope)}\r\n`;
    const rcpts = envelope.recipients.map((r, i) => `RCPT TO:<${r}>${rcptParams(this.#ext, envelope.recipientDsn?.[i])}\r\n`);
    const { mailReply, rcptReplies, dataReply } = this.#ext.pipelining ? await this.#pipelined(mail, rcpts) : await this.#stepwise(mail, rcpts);
    const accepted = ok(mailReply) && rcptReplies.some(ok);
    if (dataReply?.code === 354 && !accepted) {
      // The server opened DATA for a transaction that has no recipient: end it empty.
      wire.write('.\r\n');
      await this.#reply('DATA');
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

  /** MAIL, every RCPT and DATA in one write; their replies read in order. */
  async #pipelined(mail: string, rcpts: readonly string[]): Promise<Replies> {
    this.#wire.write(`${mail}${rcpts.join('')}DATA\r\n`);
    const mailReply = await this.#reply('MAIL');
    const rcptReplies: SmtpReply[] = [];
    for (let i = 0; i < rcpts.length; i++) rcptReplies.push(await this.#reply('RCPT'));
    return { mailReply, rcptReplies, dataReply: await this.#reply('DATA') };
  }

  /** Each command after the reply to the last; no DATA when no recipient is left. */
  async #stepwise(mail: string, rcpts: readonly string[]): Promise<Replies> {
    this.#wire.write(mail);
    const mailReply = await this.#reply('MAIL');
    const rcptReplies: SmtpReply[] = [];
    if (!ok(mailReply)) return { mailReply, rcptReplies, dataReply: undefined };
    for (const rcpt of rcpts) {
      this.#wire.write(rcpt);
      rcptReplies.push(await this.#reply('RCPT'));
    }
    if (!rcptReplies.some(ok)) return { mailReply, rcptReplies, dataReply: undefined };
    this.#wire.write('DATA\r\n');
    return { mailReply, rcptReplies, dataReply: await this.#reply('DATA') };
  }

  async reset(): Promise<boolean> {
    if (this.closed) return false;
    this.#wire.write('RSET\r\n');
    return ok(await this.#reply('MAIL'));
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
    cutOffLater(socket, QUIT_GRACE_MS);
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

  /**
   * The message, dot-stuffed, then the terminator, corked into as few writes as the socket's
   * buffer allows. A body that cannot be read aborts the connection: the server must never
   * see a terminator after a partial message.
   */
  async #sendBody(body: Readable): Promise<SmtpReply> {
    const wire = this.#wire;
    const socket = wire.socket;
    let endsWithCrlf: boolean;
    try {
      endsWithCrlf = await this.#writeBody(socket, body);
    } catch (err) {
      socket.uncork();
      wire.abort(`local error reading the message: ${(err as Error).message}`, '4.3.0');
      return wire.lost('DATA');
    }
    if (wire.failed) {
      socket.uncork();
      return wire.lost('DATA');
    }
    wire.expectReply();
    socket.write(endsWithCrlf ? '.\r\n' : '\r\n.\r\n');
    socket.uncork();
    // The server may scan the message before it answers; giving up early would deliver it twice.
    return (await wire.next('DATA', this.#timeouts.data ?? this.#timeouts.command)).reply;
  }

  /** Writes the stuffed body, corked; true when it ended with CRLF. Left corked. */
  async #writeBody(socket: Socket, body: Readable): Promise<boolean> {
    const wire = this.#wire;
    let atLineStart = true;
    let tail: Buffer = CRLF;
    socket.cork();
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
    return tail[0] === 0x0d && tail[1] === 0x0a;
  }
}

interface Replies { readonly mailReply: SmtpReply; readonly rcptReplies: readonly SmtpReply[]; readonly dataReply: SmtpReply | undefined }

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
