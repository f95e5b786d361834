/**
 * What the listener and the policy (src/ingress/server.ts) share: the session a hook sees, the
 * hooks themselves, and the listener's options.
 */
import type { DataStream } from './data-feed.ts';
import type { SmtpLimits } from './limits.ts';
import type { SessionEnvelope, SmtpAddress } from './parse.ts';
import type { SmtpRefusal } from './replies.ts';

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

type Answer<T> = T | Promise<T>;

export interface SmtpHooks {
  /** A user name on success; may answer later (password hashing runs off the event loop). */
  auth(username: string, password: string, session: SmtpSession): Answer<SmtpRefusal | string>;
  mailFrom(address: SmtpAddress, session: SmtpSession): Answer<SmtpRefusal | undefined>;
  rcptTo(address: SmtpAddress, session: SmtpSession): SmtpRefusal | undefined;
  /**
   * The success text ("2.0.0 Ok: queued as ...") or a refusal, once the message is dealt with.
   * The hook must refuse a stream with `sizeExceeded` or `refusal` set: its content was withheld.
   */
  data(stream: DataStream, session: SmtpSession): Promise<SmtpRefusal | string>;
}

export interface SmtpServerOptions {
  readonly name: string;
  readonly banner: string;
  readonly size: number;
  readonly maxRecipients: number;
  readonly maxClients: number;
  /** smtp.timeout: the idle timer, restarted by every read. */
  readonly socketTimeout: number;
  /** smtp.limits; any left out take DEFAULT_LIMITS. */
  readonly limits?: Partial<SmtpLimits>;
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** AUTH is offered when this says so (for instance only after STARTTLS). */
  readonly authOffered: (session: SmtpSession) => boolean;
  /**
   * Clients the per-address limits (connections, connection rate, AUTH failures) do not apply
   * to: smtp.allow_networks, as Postfix exempts $mynetworks (smtpd_client_event_limit_exceptions).
   */
  readonly exemptFromClientLimits?: (address: string) => boolean;
  /** Sees every 4xx/5xx reply sent, connection refusals included (counted and logged by ingress). */
  readonly onRefusal?: (reply: SmtpRefusal, remoteAddress: string) => void;
  /** Epoch milliseconds; injectable so tests can move the per-address windows on. */
  readonly now?: () => number;
}
