import { createHash, sign as cryptoSign, type KeyObject } from 'node:crypto';
import type { HeaderField } from '../model/headers.ts';
import { canonicalHeaders, MessageHasher, parseHeaderFields, relaxedHeader } from './canonical.ts';
import { keysFor, type DkimKey } from './keys.ts';

/** Fields signed when present; From and Subject are over-signed so none can be added later. */
const SIGNED_FIELDS = [
  'from', 'reply-to', 'subject', 'date', 'message-id', 'to', 'cc', 'mime-version', 'content-type',
  'content-transfer-encoding', 'in-reply-to', 'references', 'list-id', 'list-unsubscribe',
  'list-unsubscribe-post', 'feedback-id',
] as const;
const OVERSIGNED = ['from', 'subject'] as const;

export interface SignRequest {
  /** The header block exactly as stored (fields with CRLF, no blank line). */
  readonly header: string;
  /** base64 SHA-256 of the relaxed body. */
  readonly bodyHash: string;
  /** Signature time, epoch seconds. */
  readonly time: number;
}

/** One message on its way through the signer: fed as it is stored, signed at its end. */
export interface MessageSigning {
  /** The message's bytes, in order, exactly as stored. */
  write(chunk: Buffer): void;
  /** DKIM-Signature header lines to put on top of the message ("" when no key signs for it). */
  finish(): Promise<string>;
}

export interface Signer {
  /** Start a message received at `receivedAt` (ms; t= is taken from it). */
  begin(receivedAt: number): MessageSigning;
  /** DKIM-Signature header lines (CRLF-terminated) to put on top of the message; "" for none. */
  sign(request: SignRequest): Promise<string>;
  /** Replace the key set (reload); requests already started finish with the old keys. */
  setKeys(keys: readonly DkimKey[]): void;
  readonly keyCount: number;
}

/**
 * The body hash is computed on the event loop as the message arrives (a 10 KB body is ~25 µs);
 * RSA and Ed25519 signing run in libuv's thread pool (crypto.sign with a callback), on another
 * core. A worker thread doing all of it cost more than it saved: posting each message across
 * and waking the loop for the answer took as much event-loop time as the hashing had
 * (docs/performance.md).
 */
export function createSigner(initial: readonly DkimKey[], onSigned?: (algorithm: DkimKey['algorithm'], seconds: number) => void): Signer {
  let keys = [...initial];
  async function sign(request: SignRequest): Promise<string> {
    const current = keys;
    if (current.length === 0) return '';
    const fields = parseHeaderFields(request.header);
    const chosen = keysFor(current, fromDomain(fields));
    if (chosen.length === 0) return '';
    const names = signedNames(fields);
    const headerData = canonicalHeaders(fields, names);
    const lines = await Promise.all(chosen.map((key) => (onSigned ? timed(key, () => signOne(key, names, headerData, request)) : signOne(key, names, headerData, request))));
    return lines.join('');
  }
  async function timed(key: DkimKey, signing: () => Promise<string>): Promise<string> {
    const started = performance.now();
    const line = await signing();
    onSigned?.(key.algorithm, (performance.now() - started) / 1000);
    return line;
  }
  return {
    get keyCount() { return keys.length; },
    setKeys(next) { keys = [...next]; },
    sign,
    begin(receivedAt) {
      const hasher = new MessageHasher();
      return {
        write: (chunk) => hasher.write(chunk),
        finish() {
          hasher.end();
          return sign({ header: hasher.header ?? '', bodyHash: hasher.bodyHash(), time: Math.floor(receivedAt / 1000) });
        },
      };
    },
  };
}

function signedNames(fields: readonly HeaderField[]): string[] {
  const names: string[] = [];
  for (const name of SIGNED_FIELDS) {
    const count = fields.filter((f) => f.name === name).length;
    const extra = (OVERSIGNED as readonly string[]).includes(name) ? 1 : 0;
    for (let i = 0; i < count + extra; i++) names.push(name);
  }
  return names;
}

async function signOne(key: DkimKey, names: readonly string[], headerData: string, request: SignRequest): Promise<string> {
  // The header is folded before signing: the verifier canonicalizes it as received, folds and all.
  const unsigned = foldTags([
    'v=1', `a=${key.algorithm}`, 'c=relaxed/relaxed', `d=${key.domain}`, `s=${key.selector}`, `t=${request.time}`,
    `h=${names.join(':')}`, `bh=${request.bodyHash}`, 'b=',
  ]);
  const data = Buffer.from(headerData + relaxedHeader(unsigned).replace(/\r\n$/, ''), 'latin1');
  const signature = (await signData(key.algorithm, key.privateKey, data)).toString('base64');
  // Whitespace inside b= is ignored by verifiers (the whole value is removed before hashing).
  return `${unsigned}${signature.replace(/(.{1,72})/g, '\r\n\t$1')}\r\n`;
}

/**
 * "DKIM-Signature: tag; tag; ..." folded under 78 columns: between tags, after the colons of
 * h=, and inside base64 values (RFC 6376 allows FWS in all three places).
 */
function foldTags(tags: readonly string[]): string {
  const lines: string[] = [];
  let line = 'DKIM-Signature:';
  const add = (piece: string, separator: string): void => {
    if (line.length + separator.length + piece.length > 76 && line.trim() !== '') {
      lines.push(line);
      line = `\t${piece}`;
    } else {
      line += separator + piece;
    }
  };
  tags.forEach((tag, i) => {
    const last = i === tags.length - 1;
    const text = last ? tag : `${tag};`;
    if (tag.startsWith('h=')) {
      const parts = text.split(/(?<=:)/);
      parts.forEach((part, k) => add(part, k === 0 ? ' ' : ''));
    } else if (tag.startsWith('bh=')) {
      const chunks = text.match(/.{1,60}/g) ?? [text];
      chunks.forEach((chunk, k) => add(chunk, k === 0 ? ' ' : ''));
    } else {
      add(text, ' ');
    }
  });
  lines.push(line);
  return lines.join('\r\n');
}

function signData(algorithm: DkimKey['algorithm'], privateKey: KeyObject, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, sig: Buffer): void => (err ? reject(err) : resolve(sig));
    // RFC 8463: Ed25519 signs the SHA-256 digest of the canonical data (PureEdDSA over the hash).
    if (algorithm === 'ed25519-sha256') cryptoSign(null, createHash('sha256').update(data).digest(), privateKey, done);
    else cryptoSign('sha256', data, privateKey, done);
  });
}

/** Domain of the first address in From:, lower-cased. */
export function fromDomain(fields: readonly HeaderField[]): string | undefined {
  const from = fields.find((f) => f.name === 'from');
  if (!from) return undefined;
  const value = from.raw.slice(from.raw.indexOf(':') + 1).replace(/\r\n/g, '');
  const angle = /<[^<>@]*@([^<>\s]+)>/.exec(value);
  const bare = /[^\s<>",]+@([A-Za-z0-9.-]+)/.exec(value);
  const domain = angle?.[1] ?? bare?.[1];
  return domain?.toLowerCase().replace(/\.$/, '');
}
