/**
 * What the SMTP client promises its callers (the pool, tests, the bench): options in, a
 * ClientConnection or a ConnectError out, and SmtpReply values for everything a server said or
 * failed to say.
 */
import type { Readable } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { Clock } from '../../lib/clock.ts';
import type { TlsInfo } from '../../model/outcome.ts';
import type { ConnectionEvent, TlsPolicy } from '../../model/path.ts';
import { localReply, type SmtpReply } from '../../model/reply.ts';
import type { TlsFailureType } from '../../model/tls-policy.ts';
import type { TlsaRecord } from '../../model/dane.ts';

export type { TlsInfo } from '../../model/outcome.ts';

export interface Timeouts {
  /** Deadline for the TCP connection. */
  readonly connect: number;
  /** Deadline for the greeting, from the moment the connection opened. */
  readonly greeting: number;
  /** Deadline for each reply to a command (and for the TLS handshake), from when we wait for it. */
  readonly command: number;
  /** Deadline for the reply to the end of a message (RFC 5321: 10 min); the command one when absent. */
  readonly data?: number;
}

export interface ConnectOptions {
  readonly host: string;
  /** The MX host name: sent as SNI, and the name a `verify` certificate must carry. */
  readonly servername: string;
  readonly port: number;
  readonly localName: string;
  readonly localAddress?: string;
  /** none, may, encrypt, verify (docs/tls.md); the old names are read as their levels. */
  readonly tls: TlsPolicy;
  /**
   * A TLS context whose CAs replace Node's default trust store (delivery.tls_ca_file), built once
   * by the caller: parsing a bundle for every connection would cost more than the handshake.
   */
  readonly trust?: SecureContext;
  /**
   * DANE (RFC 7672): the MX host's DNSSEC-validated TLSA records. Present: TLS is required
   * whatever the level; non-empty: the certificate chain must match them (not a CA, not the
   * level's check); empty (records, none usable): TLS without a check.
   */
  readonly dane?: readonly TlsaRecord[];
  /** Every one a deadline: a server that trickles bytes does not stretch it. */
  readonly timeouts: Timeouts;
  /** Aborted: stop waiting for the greeting now, as if its timeout had passed (a session tarpitted). */
  readonly giveUpGreeting?: AbortSignal;
  /** Where deadlines come from; the system clock when absent. */
  readonly clock?: Clock;
}

/** DSN parameters for one RCPT (RFC 3461): NOTIFY keywords, and ORCPT as stored, "type;address" decoded. */
export interface RecipientDsn {
  readonly notify?: readonly string[];
  readonly orcpt?: string;
}

export interface Envelope {
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly size: number;
  readonly eightBit: boolean;
  readonly envid?: string;
  readonly ret?: string;
  /** Parallel to recipients: each one's DSN parameters, sent where the server offers DSN. */
  readonly recipientDsn?: readonly (RecipientDsn | undefined)[];
}

export type SendResult =
  | { readonly kind: 'transaction'; readonly replies: readonly SmtpReply[]; readonly healthy: boolean }
  | { readonly kind: 'message-refused'; readonly reply: SmtpReply; readonly healthy: boolean };

export interface ClientConnection {
  /** True when the session runs over TLS. */
  readonly secure: boolean;
  /** The TLS session negotiated; undefined for a plaintext session. */
  readonly tls: TlsInfo | undefined;
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
  /** A TLS failure: why, in RFC 8460's terms (a receiver's policy reports it). */
  readonly tlsFailure: TlsFailureType | undefined;
  constructor(code: string, reply: SmtpReply, event?: ConnectionEvent, tlsFailure?: TlsFailureType) {
    super(reply.text);
    this.code = code;
    this.reply = reply;
    this.event = event;
    this.tlsFailure = tlsFailure;
  }
}

/** The reply to record for a failed connect, whatever was thrown. */
export function connectFailure(err: unknown): SmtpReply {
  if (err instanceof ConnectError) return err.reply;
  return localReply(451, '4.4.1', `connection failed: ${(err as Error).message}`, 'CONNECT');
}
