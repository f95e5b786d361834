/**
 * Every limit the SMTP listener enforces, in one place. `SmtpLimits` are the operator's
 * (`smtp.limits` in tern.yaml, defaults modelled on Postfix's smtpd and named after its
 * parameters); the constants below are protocol guards nobody has needed to tune.
 */

export interface SmtpLimits {
  /** 4xx/5xx replies a client may provoke (without delivering mail) before 421 4.7.0. */
  readonly errorLimit: number;
  /** NOOP/RSET/VRFY/HELP allowed per session (without delivering mail) before each counts as an error. */
  readonly junkCommandLimit: number;
  /** RCPTs past max_recipients (each refused 452) before each also counts as an error. */
  readonly recipientOvershootLimit: number;
  /** Concurrent sessions from one client address; 0 = no limit. */
  readonly clientConnectionLimit: number;
  /** New sessions from one client address per minute; 0 = no limit. */
  readonly clientConnectionRate: number;
  /** Failed AUTH attempts from one client address within `authFailureWindow`; 0 = no limit. */
  readonly authFailureLimit: number;
  readonly authFailureWindow: number;
  /** Milliseconds a whole session may last. */
  readonly sessionDeadline: number;
  /** Milliseconds from 354 to the terminating dot. */
  readonly dataDeadline: number;
  /** Longest DATA line (octets, CRLF excluded) accepted; longer lines refuse the message. */
  readonly lineLength: number;
  /** Largest header block (octets) accepted. */
  readonly headerSize: number;
}

/**
 * The defaults, and the Postfix parameter each is modelled on. error_limit is Postfix's hard
 * limit, 20, not its soft 10: every 4xx/5xx the client provokes counts (a refused recipient
 * included), so a campaign tool sending one message to a batch with a dozen bad addresses must
 * not be cut off; a scanner still meets it within 20 commands, and the count starts again only
 * after a delivered message.
 */
export const DEFAULT_LIMITS: SmtpLimits = {
  errorLimit: 20, // smtpd_hard_error_limit
  junkCommandLimit: 100, // smtpd_junk_command_limit
  recipientOvershootLimit: 1000, // smtpd_recipient_overshoot_limit
  clientConnectionLimit: 50, // smtpd_client_connection_count_limit
  clientConnectionRate: 0, // smtpd_client_connection_rate_limit (0: off, per anvil_rate_time_unit 60s)
  authFailureLimit: 10, // no Postfix equivalent (smtpd_client_auth_rate_limit counts all AUTHs)
  authFailureWindow: 15 * 60_000,
  sessionDeadline: 30 * 60_000, // no Postfix equivalent (smtpd_timeout is per read)
  dataDeadline: 10 * 60_000, // no Postfix equivalent; compare smtpd_timeout
  lineLength: 998, // RFC 5322 §2.1.1; Postfix's line_length_limit (2048) folds instead
  headerSize: 1024 * 1024, // header_size_limit (100 KiB, which Postfix truncates at)
};

/** The window client_connection_rate counts over (Postfix's anvil_rate_time_unit). */
export const RATE_WINDOW_MS = 60_000;
/** A command line, CRLF excluded (RFC 5321 §4.5.3.1.4 says 512; AUTH PLAIN needs more). */
export const MAX_COMMAND_LINE = 4096;
/** Pipelined input held while a hook answers; past this the client is not read. */
export const MAX_PENDING_INPUT = 256 * 1024;
/** Replies a client has not read yet; past this we stop reading its commands. */
export const MAX_PENDING_OUTPUT = 64 * 1024;
/** Failed AUTH attempts in one session before it is closed (a password guesser). */
export const MAX_AUTH_FAILURES_PER_SESSION = 3;
/** A client turned away, or told 421, that does not close its side is cut off after this. */
export const CUT_OFF_MS = 5_000;
/** Longest reverse-path or forward-path, brackets excluded (RFC 5321 §4.5.3.1.3). */
export const MAX_PATH = 256;
/** Client text quoted back in a reply (a parameter name, an address) is cut to this. */
export const MAX_ECHO = 100;
/** How often the per-address counters drop clients that have gone quiet. */
export const CLIENT_SWEEP_MS = 60_000;
