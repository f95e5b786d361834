/**
 * The only file that knows nodemailer's SMTPConnection and its error shape. Everything past it
 * sees SmtpReply values: a remote reply when the server said something, a local one otherwise.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Readable } from 'node:stream';
import { localReply, parseReply, type SmtpCommand, type SmtpReply } from '../model/reply.ts';

interface NodemailerError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  recipient?: string;
  rejectedErrors?: NodemailerError[];
}

export interface ConnectOptions {
  readonly host: string;
  readonly servername: string;
  readonly port: number;
  readonly localName: string;
  readonly localAddress?: string;
  readonly tls: 'opportunistic' | 'disabled';
  readonly timeouts: { readonly connect: number; readonly greeting: number; readonly command: number };
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
  quit(): void;
  close(): void;
  readonly closed: boolean;
}

const COMMAND_OF: Record<string, SmtpCommand> = {
  CONN: 'CONNECT', 'MAIL FROM': 'MAIL', 'RCPT TO': 'RCPT', DATA: 'DATA', STARTTLS: 'STARTTLS', EHLO: 'EHLO', HELO: 'EHLO',
};

/**
 * A reply for a nodemailer error. `phase` says whether a session was already established:
 * nodemailer labels a socket closing mid-transaction with command "CONN" too.
 */
export function replyFromError(err: NodemailerError, phase: 'connect' | 'transaction'): SmtpReply {
  const labelled = err.command ? COMMAND_OF[err.command] : undefined;
  const command: SmtpCommand = phase === 'connect' ? (labelled ?? 'CONNECT') : labelled && labelled !== 'CONNECT' ? labelled : 'DATA';
  if (err.responseCode && err.response) return parseReply(err.response, { command, origin: 'remote' });
  const code = err.code ?? 'ESOCKET';
  if (code === 'ETIMEDOUT') return localReply(451, '4.4.2', `timeout: ${err.message}`, command);
  if (code === 'ETLS') return localReply(451, '4.7.5', `TLS failure: ${err.message}`, command);
  if (phase === 'connect') return localReply(451, '4.4.1', `connection failed: ${err.message}`, command);
  return localReply(451, '4.4.2', `connection lost: ${err.message}`, command);
}

export function connectClient(options: ConnectOptions): Promise<ClientConnection> {
  const conn = new SMTPConnection({
    host: options.host,
    port: options.port,
    name: options.localName,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    ignoreTLS: options.tls === 'disabled',
    opportunisticTLS: true,
    // Opportunistic TLS accepts any certificate, as Postfix does at security level "may".
    tls: { rejectUnauthorized: false, servername: options.servername },
    connectionTimeout: options.timeouts.connect,
    greetingTimeout: options.timeouts.greeting,
    socketTimeout: options.timeouts.command,
    allowInternalNetworkInterfaces: true,
    logger: false,
  });
  let closed = false;
  conn.on('end', () => {
    closed = true;
  });
  conn.on('error', () => {
    closed = true;
  });
  return new Promise<ClientConnection>((resolve, reject) => {
    const onError = (err: NodemailerError): void => {
      closed = true;
      conn.close();
      reject(err);
    };
    conn.once('error', onError);
    conn.connect(() => {
      conn.off('error', onError);
      const socket = (conn as unknown as { _socket?: { remoteAddress?: string; localAddress?: string } })._socket;
      resolve(wrap(conn, socket?.remoteAddress ?? options.host, socket?.localAddress, () => closed, () => {
        closed = true;
      }));
    });
  });
}

function wrap(conn: SMTPConnection, remoteIp: string, localIp: string | undefined, isClosed: () => boolean, markClosed: () => void): ClientConnection {
  return {
    secure: conn.secure,
    remoteIp,
    localIp,
    get closed() {
      return isClosed();
    },
    send(envelope, body) {
      return new Promise<SendResult>((resolve) => {
        conn.send(
          {
            from: envelope.sender,
            to: [...envelope.recipients],
            size: envelope.size,
            use8BitMime: envelope.eightBit,
            ...(envelope.envid || envelope.ret ? { dsn: { ...(envelope.envid ? { envid: envelope.envid } : {}), ...(envelope.ret ? { ret: envelope.ret } : {}) } } : {}),
          },
          body,
          (err, info) => resolve(err ? resultFromError(err as NodemailerError, envelope.recipients, isClosed()) : resultFromInfo(info, envelope.recipients)),
        );
      });
    },
    reset() {
      return new Promise<boolean>((resolve) => {
        if (isClosed()) return resolve(false);
        conn.reset((err) => resolve(!err));
      });
    },
    quit() {
      markClosed();
      conn.quit();
    },
    close() {
      markClosed();
      conn.close();
    },
  };
}

function resultFromInfo(info: { accepted: string[]; rejected: string[]; rejectedErrors?: NodemailerError[]; response: string }, recipients: readonly string[]): SendResult {
  const dataReply = parseReply(info.response, { command: 'DATA' });
  const rejected = indexRejections(info.rejectedErrors ?? []);
  return {
    kind: 'transaction',
    healthy: true,
    replies: recipients.map((r) => rejected.get(r.toLowerCase()) ?? dataReply),
  };
}

function resultFromError(err: NodemailerError, recipients: readonly string[], closed: boolean): SendResult {
  const rejected = indexRejections(err.rejectedErrors ?? []);
  const healthy = !closed && err.responseCode !== undefined && err.responseCode !== 421;
  if (err.code === 'EENVELOPE' && err.command === 'RCPT TO' && rejected.size > 0) {
    // Every recipient was refused at RCPT: each keeps its own reply.
    const fallback = replyFromError(err, 'transaction');
    return { kind: 'transaction', healthy, replies: recipients.map((r) => rejected.get(r.toLowerCase()) ?? fallback) };
  }
  if (err.command === 'DATA' && rejected.size > 0) {
    const dataReply = replyFromError(err, 'transaction');
    return { kind: 'transaction', healthy, replies: recipients.map((r) => rejected.get(r.toLowerCase()) ?? dataReply) };
  }
  return { kind: 'message-refused', healthy, reply: replyFromError(err, 'transaction') };
}

function indexRejections(errors: readonly NodemailerError[]): Map<string, SmtpReply> {
  const map = new Map<string, SmtpReply>();
  for (const e of errors) if (e.recipient) map.set(e.recipient.toLowerCase(), replyFromError(e, 'transaction'));
  return map;
}
