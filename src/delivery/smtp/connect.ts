/**
 * Opening a session: the TCP connection, the greeting, EHLO and, at the path's TLS level,
 * STARTTLS. Each phase has a deadline (ConnectOptions.timeouts) that starts with it.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { systemClock, type Clock } from '../../lib/clock.ts';
import { tlsLevel, type TlsLevel } from '../../model/path.ts';
import { isSuccess as ok, localReply, type SmtpReply } from '../../model/reply.ts';
import { startTls } from './tls.ts';
import type { Extensions } from './params.ts';
import { Connection } from './transaction.ts';
import { ConnectError, type ClientConnection, type ConnectOptions, type TlsInfo } from './types.ts';
import { REPLY_OVERFLOW, Wire } from './wire.ts';

interface Session { readonly extensions: Extensions; readonly tls: TlsInfo | undefined }

export async function connectClient(options: ConnectOptions): Promise<ClientConnection> {
  const clock = options.clock ?? systemClock;
  // DANE hosts need TLS whatever the path's level; its check is DANE's (tls.ts).
  const level: TlsLevel = options.dane ? 'encrypt' : tlsLevel(options.tls);
  const wire = new Wire(await openSocket(options, clock), clock, options.timeouts.command);
  try {
    await greeting(wire, options);
    const extensions = await hello(wire, options);
    const session = level === 'none' ? { extensions, tls: undefined } : await secureSession(wire, extensions, options, level);
    if (wire.failed) throw new ConnectError('EPROTOCOL', wire.lost('EHLO'));
    return new Connection(wire, session.extensions, session.tls, options.timeouts);
  } catch (err) {
    wire.socket.destroy();
    throw err;
  }
}

function openSocket(options: ConnectOptions, clock: Clock): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: options.host, port: options.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    const deadline = clock.at(clock.now() + options.timeouts.connect, () => {
      socket.destroy();
      reject(new ConnectError('ETIMEDOUT', localReply(451, '4.4.2', `timeout: no connection within ${options.timeouts.connect} ms`, 'CONNECT'), 'connect-timeout'));
    });
    socket.once('error', (err) => {
      deadline.cancel();
      const refused = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      reject(new ConnectError('ECONNECTION', localReply(451, '4.4.1', `connection failed: ${err.message}`, 'CONNECT'), refused ? 'connect-refused' : undefined));
    });
    socket.once('connect', () => {
      deadline.cancel();
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/** The 220, within the greeting deadline, or sooner if the pool gives up on a tarpit. */
async function greeting(wire: Wire, options: ConnectOptions): Promise<void> {
  const giveUp = (): void => wire.abort('timeout: Greeting never received (while other sessions to this host were greeted)');
  options.giveUpGreeting?.addEventListener('abort', giveUp, { once: true });
  if (options.giveUpGreeting?.aborted) giveUp();
  const answer = await wire.next('CONNECT', options.timeouts.greeting);
  options.giveUpGreeting?.removeEventListener('abort', giveUp);
  if (answer.reply.code !== 220) throw greetingFailure(answer.reply);
}

function greetingFailure(reply: SmtpReply): ConnectError {
  const code = failureCode(reply);
  return new ConnectError(code, reply, code === 'ETIMEDOUT' ? 'greeting-timeout' : undefined);
}

/**
 * A server's refusal or a protocol error: EPROTOCOL; a reply past a cap: EOVERFLOW; a missed
 * deadline: ETIMEDOUT; a lost connection: ECONNECTION.
 */
function failureCode(reply: SmtpReply): string {
  if (reply.origin === 'remote' || reply.text.startsWith('protocol error')) return 'EPROTOCOL';
  if (reply.text.startsWith(REPLY_OVERFLOW)) return 'EOVERFLOW';
  return reply.text.startsWith('timeout') ? 'ETIMEDOUT' : 'ECONNECTION';
}

/** EHLO, or HELO for a server that does not know EHLO (no extensions then). */
async function hello(wire: Wire, options: ConnectOptions): Promise<Extensions> {
  wire.write(`EHLO ${options.localName}\r\n`);
  const ehlo = await wire.next('EHLO', options.timeouts.command);
  if (ok(ehlo.reply)) return parseExtensions(ehlo.lines.slice(1).map((l) => l.slice(4)));
  if (ehlo.reply.origin === 'remote' && ehlo.reply.code >= 500) {
    wire.write(`HELO ${options.localName}\r\n`);
    const helo = await wire.next('EHLO', options.timeouts.command);
    if (ok(helo.reply)) return parseExtensions([]);
    throw new ConnectError('EPROTOCOL', helo.reply);
  }
  throw new ConnectError(failureCode(ehlo.reply), ehlo.reply);
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

/**
 * STARTTLS when offered. may: not offered or refused leaves a plaintext session, as Postfix does
 * at security level "may". encrypt, verify: either ends the connection, a deferral (4.7.4).
 */
async function secureSession(wire: Wire, extensions: Extensions, options: ConnectOptions, level: TlsLevel): Promise<Session> {
  const required = level !== 'may';
  if (!extensions.starttls) {
    if (required) throw tlsRequired(level, 'the server does not offer STARTTLS');
    return { extensions, tls: undefined };
  }
  wire.write('STARTTLS\r\n');
  const answer = (await wire.next('STARTTLS', options.timeouts.command)).reply;
  if (answer.origin === 'local') throw new ConnectError(failureCode(answer), answer);
  if (answer.code !== 220) {
    if (required) throw tlsRequired(level, `the server refused STARTTLS: ${answer.code} ${answer.text}`);
    return { extensions, tls: undefined };
  }
  const raw = wire.detach();
  if (wire.failed) throw new ConnectError('EPROTOCOL', wire.lost('STARTTLS'));
  const secure = await startTls(raw, options, level);
  wire.attach(secure.socket);
  // RFC 3207 §4.2: everything learnt before TLS is forgotten, the extensions first.
  return { extensions: await hello(wire, options), tls: secure.info };
}

function tlsRequired(level: TlsLevel, why: string): ConnectError {
  return new ConnectError('ETLS', localReply(451, '4.7.4', `TLS failure: TLS is required (level ${level}), but ${why}`, 'STARTTLS'), 'tls-failed', 'starttls-not-supported');
}
