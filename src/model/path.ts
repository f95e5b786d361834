import type { SiteName } from './ids.ts';
import type { Rate } from '../lib/units.ts';
import type { SmtpReply } from './reply.ts';

/**
 * A delivery path: the (source address, site) pair that limits hold for — or (source, site,
 * domain) when a domain has rules of its own. Shaping decides its settings; delivery obeys them
 * and reports back what receivers did. Shared here so neither stage imports the other.
 */
/**
 * Outbound TLS, named as Postfix's smtp_tls_security_level (docs/tls.md): none (never STARTTLS),
 * may (STARTTLS when offered, certificate not checked, plaintext when it cannot be had), encrypt
 * (TLS or no delivery, certificate not checked), verify (TLS with a certificate that chains to a
 * trusted CA and names the MX host, or no delivery).
 */
export const TLS_LEVELS = ['none', 'may', 'encrypt', 'verify'] as const;
export type TlsLevel = (typeof TLS_LEVELS)[number];
/** Tern's first names for the levels, still accepted in configuration and rules files. */
export const TLS_ALIASES = { opportunistic: 'may', required: 'encrypt', disabled: 'none' } as const satisfies Record<string, TlsLevel>;
/** A level, or one of its old names (configuration turns those into levels; hand-built settings may not). */
export type TlsPolicy = TlsLevel | keyof typeof TLS_ALIASES;

export function tlsLevel(policy: TlsPolicy): TlsLevel {
  return policy in TLS_ALIASES ? TLS_ALIASES[policy as keyof typeof TLS_ALIASES] : (policy as TlsLevel);
}

/** Everything delivery needs to know about one path, immutable. Rates: undefined means unlimited. */
export interface PathSettings {
  readonly max_connections: number;
  readonly max_messages_per_connection: number;
  readonly max_message_rate: Rate | undefined;
  readonly max_connection_rate: Rate | undefined;
  readonly max_recipients_per_message: number;
  readonly connect_timeout: number;
  readonly greeting_timeout: number;
  readonly idle_timeout: number;
  readonly tls: TlsPolicy;
}

/** Why a path takes no mail now: paused (mail waits) or failing (mail fails), until when, and who said so. */
export interface PathHold {
  readonly kind: 'pause' | 'fail';
  readonly until: number;
  readonly rule: string;
  /** The receiver's reply that triggered the rule; what the held or failed mail records. */
  readonly reply: SmtpReply;
}

/** Connection-level failures: Tern saw them, no receiver said them. */
export const CONNECTION_EVENTS = ['connect-timeout', 'connect-refused', 'greeting-timeout', 'tls-failed', 'dropped'] as const;
export type ConnectionEvent = (typeof CONNECTION_EVENTS)[number];

/** What delivery tells shaping after each connection attempt and transaction. */
export type PathObservation =
  | { readonly kind: 'delivered'; readonly recipients: number }
  /** A receiver's non-2xx reply, once per distinct reply per transaction; recipients 0: it refused a connection. */
  | { readonly kind: 'reply'; readonly reply: SmtpReply; readonly recipients: number }
  | { readonly kind: 'event'; readonly event: ConnectionEvent; readonly detail: string };

/** The levels in use when an observation was made: what a relative adaptive change is taken from. */
export interface PathLevels {
  /** Connections open (past the greeting) on the path, the one that failed not included. */
  readonly connections: number;
  /** Messages sent on the connection the observation came from before it. */
  readonly sentOnConnection: number;
  /** Set when `connections` is the most open at once since this time (a refused connection's level), not the count at the time. */
  readonly peakFrom?: number;
}

/** Sessions past the greeting on a path, in every shard: open now, and a number that grows with each one opened. */
export interface PathSessions {
  readonly open: number;
  readonly opened: number;
  /** When the last one got past its greeting (ms): a receiver that greeted us a moment ago is there. */
  readonly openedAt: number;
}

/** A path's identity and live settings, as delivery holds it. */
export interface PathHandle {
  readonly key: string;
  readonly site: SiteName;
  readonly source: string;
  readonly domain: string | undefined;
  readonly provider: string | undefined;
  settings(): PathSettings;
  hold(): PathHold | undefined;
  /**
   * The path's sessions in every shard, as last heard from the coordinator (ADR 0010). Absent
   * (or undefined before the first word) where the pool's own sessions are all there are.
   */
  sessions?(): PathSessions | undefined;
}

/** A batch request to the one owner of grants; delivery asks it before connecting and sending. */
export interface GrantRequest { readonly path: string; readonly kind: 'connection' | 'message'; readonly count: number }

/** `retryAt`: when to ask again for the rest; absent means after a connection is released. */
export interface Grant { readonly granted: number; readonly retryAt?: number }

/**
 * The one owner of a node's grants (src/shaping/limiter.ts in one process; src/cluster's fleet
 * limiter when nodes share Redis): asked in batches, answering at once.
 */
export interface LimiterPort {
  /** A path's limits from now on. */
  configure(path: string, settings: PathSettings): void;
  acquire(requests: readonly GrantRequest[]): Grant[];
  release(path: string, connections: number): void;
  /** Message grants handed out and not used go back. */
  refund(path: string, messages: number): void;
  /** Connections leased on the path now (by this node). */
  leases(path: string): number;
  /** Drop an idle path's state. */
  forget(path: string): void;
  /**
   * Where limits are shared by a fleet: the path's connections fleet-wide per this node's own
   * (at least 1), the factor from this node's levels to the fleet's. Absent: 1, a node alone.
   */
  scale?(path: string): number;
}
