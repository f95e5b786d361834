/**
 * One SMTP session: the command state machine, replies and the per-session limits (error,
 * junk-command and recipient-overshoot counts, the idle timer and the session and DATA deadlines).
 * DATA bytes go to the DataFeed; AUTH lines to the SASL exchange; policy to the hooks.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { cutOffLater, plainAddress } from '../../lib/net.ts';
import type { ClientGate } from './anvil.ts';
import { DataFeed, DataStream } from './data-feed.ts';
import { CUT_OFF_MS, MAX_AUTH_FAILURES_PER_SESSION, MAX_COMMAND_LINE, MAX_PENDING_INPUT, MAX_PENDING_OUTPUT, type SmtpLimits } from './limits.ts';
import { emptyEnvelope, mailParam, parsePath, rcptParams, validHeloName, type SmtpAddress } from './parse.ts';
import { provokedByClient, render, REPLIES, type ReplyEntry, type SmtpRefusal } from './replies.ts';
import { saslExchange, type SaslExchange, type SaslStep } from './sasl.ts';
import type { SmtpHooks, SmtpServerOptions, SmtpSession } from './session.ts';

type Mode = 'command' | 'data' | 'auth' | 'closed';

const EMPTY = Buffer.alloc(0);
const LOCAL_ERROR = render(REPLIES.localError);

export interface ConnectionContext {
  readonly options: SmtpServerOptions;
  readonly limits: SmtpLimits;
  readonly hooks: SmtpHooks;
  readonly secureContext: SecureContext | undefined;
  readonly clients: ClientGate;
  readonly onClosed: () => void;
}

export class Connection {
  readonly #context: ConnectionContext;
  readonly #options: SmtpServerOptions;
  readonly #limits: SmtpLimits;
  readonly #hooks: SmtpHooks;
  readonly #session: SmtpSession;
  #socket: Socket;
  #mode: Mode = 'command';
  #input: Buffer = EMPTY;
  #busy = false;
  /** Said and the session closed once the transaction in flight is answered (shutdown, deadline). */
  #closeWhenAnswered: SmtpRefusal | undefined;
  /** An over-long line is being dropped up to its LF. */
  #skipLine = false;
  /** Client-provoked 4xx/5xx replies since the last delivered message. */
  #errors = 0;
  /** NOOP/RSET/VRFY/HELP since the last delivered message. */
  #junk = 0;
  /** RCPTs refused past max_recipients in this transaction. */
  #overshoot = 0;
  #authFailures = 0;
  #waitingForDrain = false;
  #handshaking = false;
  #sasl: SaslExchange | undefined;
  #data: DataFeed | undefined;
  /** The data hook answered before the message ended: sent once the terminator is read. */
  #earlyAnswer: SmtpRefusal | string | undefined;
  readonly #sessionTimer: NodeJS.Timeout;
  #dataTimer: NodeJS.Timeout | undefined;
  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);

  constructor(socket: Socket, context: ConnectionContext) {
    this.#socket = socket;
    this.#context = context;
    this.#options = context.options;
    this.#limits = context.limits;
    this.#hooks = context.hooks;
    const remote = plainAddress(socket.remoteAddress ?? '');
    this.#session = { remoteAddress: remote, clientHostname: `[${remote}]`, hostNameAppearsAs: '', secure: false, user: undefined, envelope: emptyEnvelope() };
    socket.setNoDelay(true);
    this.#listen(socket);
    this.#sessionTimer = setTimeout(() => this.#deadline(REPLIES.sessionDeadline), this.#limits.sessionDeadline);
    this.#send(render(REPLIES.greeting, { name: this.#options.name, banner: this.#options.banner }));
  }

  /** Server shutdown: 421 now if idle, else once the transaction in flight is answered. */
  shutdown(): void {
    this.#closeAfterTransaction(render(REPLIES.shutdown, { name: this.#options.name }));
    // A TLS handshake the client never finishes must not hold the shutdown for `smtp.timeout`.
    if (this.#handshaking) cutOffLater(this.#socket, CUT_OFF_MS);
  }

  #closeAfterTransaction(reply: SmtpRefusal): void {
    this.#closeWhenAnswered ??= reply;
    if (!this.#busy) this.#closeWith(this.#closeWhenAnswered);
  }

  /**
   * A deadline: a client still sending DATA is told and cut off (nothing is kept); one still in a
   * TLS handshake just cut off (a plaintext reply would be noise in it); a hook at work is waited
   * for, so a message already on disk is answered.
   */
  #deadline(entry: ReplyEntry): void {
    const reply = render(entry, { name: this.#options.name });
    if (this.#handshaking) this.#socket.destroy();
    else if (this.#mode === 'data') this.#closeWith(reply, 'the DATA or session deadline passed');
    else this.#closeAfterTransaction(reply);
  }

  #listen(socket: Socket): void {
    socket.setTimeout(this.#options.socketTimeout);
    socket.on('data', this.#onData);
    socket.on('timeout', () => this.#closeWith(render(REPLIES.timeout, { name: this.#options.name }), 'the client went silent during DATA'));
    socket.on('close', () => this.#closed());
    socket.on('error', () => undefined);
  }

  #closed(why = 'client closed the connection during DATA'): void {
    if (this.#mode === 'closed') return;
    this.#mode = 'closed';
    clearTimeout(this.#sessionTimer);
    clearTimeout(this.#dataTimer);
    this.#data?.abort(new Error(why));
    this.#data = undefined;
    this.#context.onClosed();
  }

  #send(reply: SmtpRefusal, more: readonly string[] = []): void {
    if (this.#mode === 'closed' || this.#socket.destroyed) return;
    if (reply.code >= 400) this.#options.onRefusal?.(reply, this.#session.remoteAddress);
    const lines = [reply.text, ...more];
    this.#socket.write(lines.map((l, i) => `${reply.code}${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
  }

  /** Send a reply; one the client provoked counts, and enough of them end the session. */
  #answer(reply: SmtpRefusal, counted = provokedByClient(reply)): void {
    this.#send(reply);
    if (counted) this.#countError();
  }

  #reply(entry: ReplyEntry, vars?: Readonly<Record<string, string | number>>): void {
    this.#answer(render(entry, vars));
  }

  #countError(): void {
    if (++this.#errors >= this.#limits.errorLimit) this.#tooManyErrors();
  }

  #tooManyErrors(): void {
    this.#closeWith(render(REPLIES.tooManyErrors, { name: this.#options.name }));
  }

  /**
   * `atOnce` (QUIT): close as soon as the reply is with the kernel; close(2) still sends it, then
   * FIN. Waiting for the client's FIN costs a shutdown(2), and with clients that close without
   * reading the 221 (smtp-source does), a connection reset to handle as an error. Not over TLS
   * (close_notify), nor with input unread (reading paused), which would make the close a reset
   * that can discard the reply.
   */
  #closeWith(reply: SmtpRefusal, why?: string, { atOnce = false } = {}): void {
    if (this.#mode === 'closed') return;
    this.#send(reply);
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

  #mayRead(): boolean {
    return !this.#busy && !this.#waitingForDrain && this.#mode !== 'closed' && this.#mode !== 'data';
  }

  /** Handle complete lines, one at a time; an async hook holds the rest until it answers. */
  #pump(): void {
    while (this.#mayRead()) {
      if (this.#socket.writableLength > MAX_PENDING_OUTPUT) return this.#waitForReader();
      const lf = this.#input.indexOf(0x0a);
      if (lf === -1) {
        if (this.#input.length > MAX_COMMAND_LINE) {
          this.#input = EMPTY;
          if (!this.#skipLine) this.#lineTooLong();
          this.#skipLine = true;
        }
        break;
      }
      const end = lf > 0 && this.#input[lf - 1] === 0x0d ? lf - 1 : lf;
      const tooLong = end > MAX_COMMAND_LINE + 1;
      const line = tooLong || this.#skipLine ? '' : this.#input.toString('utf8', 0, end);
      this.#input = this.#input.subarray(lf + 1);
      if (this.#skipLine) this.#skipLine = false;
      else if (tooLong) this.#lineTooLong();
      else this.#line(line);
    }
    if (!this.#busy && !this.#waitingForDrain && this.#socket.isPaused() && this.#mode !== 'closed') this.#socket.resume();
  }

  /** The client is not reading its replies: stop reading its commands until it does. */
  #waitForReader(): void {
    this.#waitingForDrain = true;
    this.#socket.pause();
    this.#socket.once('drain', () => {
      this.#waitingForDrain = false;
      this.#pump();
    });
  }

  #lineTooLong(): void {
    this.#mode = 'command';
    this.#sasl = undefined;
    this.#reply(REPLIES.lineTooLong);
  }

  #line(line: string): void {
    if (this.#mode === 'auth' && this.#sasl) return this.#saslStep(this.#sasl.next(line));
    this.#command(line);
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
        this.#resetTransaction();
        return this.#junkCommand(REPLIES.flushed);
      case 'NOOP':
        return this.#junkCommand(REPLIES.noop);
      case 'VRFY':
        return this.#junkCommand(REPLIES.vrfy);
      case 'HELP':
        return this.#junkCommand(REPLIES.help);
      case 'QUIT':
        return this.#closeWith(render(REPLIES.bye), undefined, { atOnce: true });
      case 'STARTTLS':
        return this.#startTls(rest);
      case 'AUTH':
        return this.#auth(rest);
      default:
        return this.#reply(REPLIES.unknownCommand);
    }
  }

  /** Harmless commands, answered; past junk_command_limit each also counts as an error (a drip to hold the slot). */
  #junkCommand(entry: ReplyEntry): void {
    this.#send(render(entry));
    if (++this.#junk > this.#limits.junkCommandLimit) this.#countError();
  }

  #resetTransaction(): void {
    this.#session.envelope = emptyEnvelope();
    this.#overshoot = 0;
  }

  #hello(verb: string, name: string): void {
    if (!validHeloName(name)) return this.#reply(REPLIES.heloSyntax, { verb });
    this.#session.hostNameAppearsAs = name;
    this.#resetTransaction();
    const greeting = render(REPLIES.ehlo, { name: this.#options.name, client: this.#session.clientHostname });
    if (verb === 'HELO') return this.#send(greeting);
    const features = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN', `SIZE ${this.#options.size}`];
    if (this.#context.secureContext && !this.#session.secure) features.push('STARTTLS');
    if (this.#authAllowed()) features.push('AUTH PLAIN LOGIN');
    this.#send(greeting, features);
  }

  /** EHLO/HELO given (the name cannot be empty), and not undone by STARTTLS. */
  #greeted(): boolean {
    return this.#session.hostNameAppearsAs !== '';
  }

  #authAllowed(): boolean {
    return this.#session.user === undefined && this.#options.authOffered(this.#session);
  }

  #mail(rest: string): void {
    if (!this.#greeted()) return this.#reply(REPLIES.needHelo);
    if (this.#session.envelope.mailFrom) return this.#reply(REPLIES.nestedMail);
    const parsed = parsePath(rest, 'FROM');
    if (!parsed.ok) return parsed.why === 'syntax' ? this.#reply(REPLIES.mailSyntax) : this.#reply(REPLIES.badAddress, { problem: parsed.problem });
    const envelope = emptyEnvelope();
    for (const [key, value] of Object.entries(parsed.args)) {
      const problem = mailParam(envelope, key, value, this.#options.size);
      if (problem) return this.#answer(problem);
    }
    const address: SmtpAddress = { address: parsed.address, args: parsed.args };
    this.#hold(guard(() => this.#hooks.mailFrom(address, this.#session)), (answer) => {
      if (answer) return this.#answer(answer);
      envelope.mailFrom = address;
      this.#session.envelope = envelope;
      this.#overshoot = 0;
      this.#send(render(REPLIES.mailOk));
    });
  }

  #rcpt(rest: string): void {
    const envelope = this.#session.envelope;
    if (!envelope.mailFrom) return this.#reply(REPLIES.needMail);
    const parsed = parsePath(rest, 'TO');
    if (!parsed.ok) return parsed.why === 'syntax' ? this.#reply(REPLIES.rcptSyntax) : this.#reply(REPLIES.badAddress, { problem: parsed.problem });
    if (parsed.address === '') return this.#reply(REPLIES.rcptSyntax);
    if (envelope.rcptTo.length >= this.#options.maxRecipients) {
      // Postfix's overshoot: a client that ignores 452 and keeps going starts to count as erring.
      return this.#answer(render(REPLIES.tooManyRecipients), ++this.#overshoot > this.#limits.recipientOvershootLimit);
    }
    const dsn = rcptParams(parsed.args);
    if ('code' in dsn) return this.#answer(dsn);
    const address: SmtpAddress = { address: parsed.address, args: parsed.args, ...(dsn.notify || dsn.orcpt ? { dsn } : {}) };
    const answer = guard(() => this.#hooks.rcptTo(address, this.#session));
    if (answer) return this.#answer(answer);
    envelope.rcptTo.push(address);
    this.#send(render(REPLIES.rcptOk));
  }

  #dataCommand(): void {
    if (!this.#session.envelope.mailFrom) return this.#reply(REPLIES.needMail);
    if (this.#session.envelope.rcptTo.length === 0) return this.#reply(REPLIES.needRcpt);
    this.#send(render(REPLIES.startData));
    const stream = new DataStream(() => {
      if (this.#mode === 'data') this.#socket.resume();
    });
    this.#data = new DataFeed(stream, { size: this.#options.size, lineLength: this.#limits.lineLength }, () => this.#socket.pause());
    this.#mode = 'data';
    this.#busy = true;
    this.#dataTimer = setTimeout(() => this.#deadline(REPLIES.dataDeadline), this.#limits.dataDeadline);
    const pending = this.#input;
    this.#input = EMPTY;
    Promise.resolve()
      .then(() => this.#hooks.data(stream, this.#session))
      .then((answer) => this.#dataAnswered(answer), () => this.#dataAnswered(LOCAL_ERROR))
      .catch(() => this.#socket.destroy());
    if (pending.length > 0) this.#receive(pending);
  }

  #endData(rest: Buffer): void {
    clearTimeout(this.#dataTimer);
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
    this.#resetTransaction();
    if (typeof answer === 'string') this.#delivered(answer);
    else this.#answer(answer);
    this.#busy = false;
    this.#afterAnswer();
  }

  /** A message accepted: the client is evidently doing useful work, so its counts start again (Postfix's "without delivering mail"). */
  #delivered(text: string): void {
    this.#send({ code: REPLIES.queued.code, text });
    this.#errors = 0;
    this.#junk = 0;
  }

  #afterAnswer(): void {
    if (this.#closeWhenAnswered) return this.#closeWith(this.#closeWhenAnswered);
    this.#pump();
  }

  /** Run a hook that may answer later; commands behind it wait. */
  #hold<T>(result: T | Promise<T>, then: (value: T) => void): void {
    if (!(result instanceof Promise)) return then(result);
    this.#busy = true;
    result
      .then(then, () => this.#answer(LOCAL_ERROR))
      .finally(() => {
        this.#busy = false;
        this.#afterAnswer();
      })
      .catch(() => this.#socket.destroy());
  }

  #startTls(rest: string): void {
    const secureContext = this.#context.secureContext;
    if (!secureContext) return this.#reply(REPLIES.tlsUnavailable);
    if (this.#session.secure) return this.#reply(REPLIES.tlsActive);
    if (rest.trim() !== '') return this.#reply(REPLIES.tlsSyntax);
    // Anything pipelined after STARTTLS was sent in plaintext; it must not count as sent over
    // TLS (RFC 3207 §4.2, the STARTTLS command-injection attack).
    this.#input = EMPTY;
    this.#send(render(REPLIES.tlsReady));
    const raw = this.#socket;
    raw.off('data', this.#onData);
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    this.#busy = true;
    this.#handshaking = true;
    const secure = new TLSSocket(raw, { isServer: true, secureContext });
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
      this.#resetTransaction();
      this.#listen(secure);
      this.#busy = false;
      this.#afterAnswer();
    });
    secure.once('close', () => this.#closed());
  }

  #auth(rest: string): void {
    if (!this.#greeted()) return this.#reply(REPLIES.needHelo);
    if (this.#session.user !== undefined) return this.#reply(REPLIES.alreadyAuthenticated);
    if (!this.#authAllowed()) return this.#reply(REPLIES.authNotEnabled);
    if (this.#session.envelope.mailFrom) return this.#reply(REPLIES.authInTransaction);
    // A password guesser spread over many sessions meets the per-address count here.
    if (this.#context.clients.authLocked(this.#session.remoteAddress)) return this.#closeWith(render(REPLIES.authLockedOut, { name: this.#options.name }));
    const [mechanism = '', initial] = rest.trim().split(/\s+/);
    const exchange = saslExchange(mechanism);
    if (!exchange) return this.#reply(REPLIES.authMechanism);
    this.#sasl = exchange;
    this.#saslStep(exchange.start(initial));
  }

  #saslStep(step: SaslStep): void {
    if (step.kind === 'challenge') {
      this.#mode = 'auth';
      return this.#send(render(step.reply));
    }
    this.#mode = 'command';
    this.#sasl = undefined;
    if (step.kind === 'credentials') return this.#authenticate(step.username, step.password);
    if (step.failure) return this.#authFailed(render(step.reply));
    this.#reply(step.reply);
  }

  #authenticate(username: string, password: string): void {
    this.#hold(guard(() => this.#hooks.auth(username, password, this.#session)), (answer) => {
      if (typeof answer !== 'string') return answer.code === REPLIES.authInvalid.code ? this.#authFailed(answer) : this.#answer(answer);
      this.#session.user = answer;
      this.#send(render(REPLIES.authOk));
    });
  }

  /** A failed AUTH counts as an error, towards the session's AUTH limit, and for the address. */
  #authFailed(reply: SmtpRefusal): void {
    this.#context.clients.authFailed(this.#session.remoteAddress);
    this.#answer(reply);
    if (++this.#authFailures >= MAX_AUTH_FAILURES_PER_SESSION) this.#tooManyErrors();
  }
}

/** A hook that throws is a local error for this command, never a crashed process. */
function guard<T>(call: () => T): T | SmtpRefusal {
  try {
    return call();
  } catch {
    return LOCAL_ERROR;
  }
}
