/**
 * Delivery's own limits, named in one place (docs/shaping.md, "What delivery does on its own").
 * The limits an operator sets per path are the MX rules (src/shaping); these are the ones no
 * rule needs to name: how far a pool looks ahead, how it backs off, when it gives up a session.
 */

// Postfix tries at most five MX addresses per attempt (smtp_mx_address_limit); so do we.
export const MAX_ADDRESSES_PER_ATTEMPT = 5;
/** Jobs waiting in one path's pool at most; more wait in the queue, where they cost no memory. */
export const MAX_READY = 1000;
/** ... and at least this many, or two per connection if more, so a small path does not churn. */
export const MIN_READY = 20;
/** Between the two, about this many seconds of the path's own throughput. */
export const READY_SECONDS = 10;
/** Message grants asked for at once when a rate applies. */
export const MESSAGE_GRANT_BATCH = 16;
/** How long a full pool holds mail back in the queue (the queue may put it further back). */
export const HOLD_MIN_MS = 1_000;
export const HOLD_MAX_MS = 15_000;
/**
 * After a connection fails while others to the path work, no new one for this long, doubling
 * while failures go on: a receiver refusing sessions above its limit in words no rule knows is
 * not hammered (adaptive rules lower max_connections for the words they know).
 */
export const REFUSED_BACKOFF_MIN_MS = 2_000;
export const REFUSED_BACKOFF_MAX_MS = 60_000;
/**
 * A session still waiting for its greeting after this long — and many times as long as this
 * path's sessions take to open — while another to the path opened meanwhile is tarpitted: it is
 * given up at once instead of holding a slot for the whole greeting timeout.
 */
export const TARPIT_MIN_MS = 5_000;
export const TARPIT_FACTOR = 20;
/** How far back "connections the receiver took" looks when one is refused. */
export const PEAK_WINDOW_MS = 60_000;

/*
 * The SMTP client's bounds on what a receiver may send it (docs/tls.md, "Outbound client
 * limits"). A receiver is a stranger: without these, one that never ends a reply, or sends it a
 * byte at a time, would hold memory or a connection slot for as long as it liked.
 */
/**
 * Longest reply line. RFC 5321 §4.5.3.1.5 allows 512 octets; Postfix reads up to its
 * line_length_limit (2048). Eight times the RFC leaves room for verbose receivers.
 */
export const MAX_REPLY_LINE = 4 * 1024;
/** Lines in one reply: the longest real EHLO answers have about 20; a reply past this never ends. */
export const MAX_REPLY_LINES = 100;
/** Bytes in one reply, all its lines together. */
export const MAX_REPLY_BYTES = 64 * 1024;
/** How long a server that has answered QUIT may keep the connection open before we cut it. */
export const QUIT_GRACE_MS = 5_000;
