/**
 * AUTH PLAIN and LOGIN (RFC 4954, 4616) as a small exchange: the connection hands it each line
 * the client sends while AUTH is in progress, and acts on the step it returns. Checking the
 * credentials is the policy's (the auth hook); this file only gets them off the wire.
 */
import { base64 } from './parse.ts';
import { REPLIES, type ReplyEntry } from './replies.ts';

export type SaslStep =
  /** Send this 334 and pass the client's next line to `next`. */
  | { readonly kind: 'challenge'; readonly reply: ReplyEntry }
  | { readonly kind: 'credentials'; readonly username: string; readonly password: string }
  /** `failure`: counts as a failed AUTH (garbage is how guessers probe); else a plain refusal. */
  | { readonly kind: 'refused'; readonly reply: ReplyEntry; readonly failure: boolean };

const ABORT = '*';
const aborted: SaslStep = { kind: 'refused', reply: REPLIES.authAborted, failure: false };
const badBase64: SaslStep = { kind: 'refused', reply: REPLIES.authBadBase64, failure: true };

export interface SaslExchange {
  /** The first step, given the initial response on the AUTH line, if any. */
  start(initial: string | undefined): SaslStep;
  next(line: string): SaslStep;
}

/** The exchange for a mechanism name, or undefined for one Tern does not offer. */
export function saslExchange(mechanism: string): SaslExchange | undefined {
  switch (mechanism.toUpperCase()) {
    case 'PLAIN':
      return plainExchange();
    case 'LOGIN':
      return loginExchange();
    default:
      return undefined;
  }
}

/** PLAIN: one response, "authzid NUL authcid NUL password" in base64. */
function plainExchange(): SaslExchange {
  const respond = (line: string): SaslStep => {
    if (line === ABORT) return aborted;
    const decoded = base64(line);
    if (decoded === undefined) return badBase64;
    const parts = decoded.split('\0');
    if (parts.length !== 3) return { kind: 'refused', reply: REPLIES.authBadUserdata, failure: false };
    return { kind: 'credentials', username: parts[1] as string, password: parts[2] as string };
  };
  return {
    start: (initial) => (initial === undefined ? { kind: 'challenge', reply: REPLIES.authPlainChallenge } : respond(initial)),
    next: respond,
  };
}

/** LOGIN: the user name, then the password, each in base64 after its own 334. */
function loginExchange(): SaslExchange {
  let username: string | undefined;
  const respond = (line: string): SaslStep => {
    if (line === ABORT) return aborted;
    const decoded = base64(line);
    if (decoded === undefined) return badBase64;
    if (username === undefined) {
      username = decoded;
      return { kind: 'challenge', reply: REPLIES.authPassword };
    }
    return { kind: 'credentials', username, password: decoded };
  };
  return {
    start: (initial) => (initial === undefined ? { kind: 'challenge', reply: REPLIES.authUsername } : respond(initial)),
    next: respond,
  };
}
