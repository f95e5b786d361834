import { createHash, type Hash } from 'node:crypto';
import { splitHeaderFields, type HeaderField } from '../model/headers.ts';

/**
 * DKIM relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), streaming: the message is fed in as it
 * arrives, so signing never re-reads or buffers the body. Only the header block is kept, because
 * the signature covers header fields chosen later. A plain object, not a stream: ingress feeds it
 * each stored piece by a plain call, on the event loop.
 */
export class MessageHasher {
  readonly #hash: Hash = createHash('sha256');
  #header: Buffer[] = [];
  #headerText: string | undefined;
  #scanned = 0;
  /** The last, incomplete line, waiting for its CRLF. */
  #partial: Buffer = EMPTY;
  /** Empty lines seen but not hashed yet: trailing ones at the end of the body never are. */
  #emptyLines = 0;

  /** The header block as written (without the blank line), once the body has started. */
  get header(): string | undefined { return this.#headerText; }

  /** base64 SHA-256 of the relaxed-canonical body; valid after end(). */
  bodyHash(): string {
    return this.#hash.copy().digest('base64');
  }

  write(chunk: Buffer): void {
    if (this.#headerText !== undefined) {
      this.#body(chunk);
      return;
    }
    this.#header.push(chunk);
    const joined = this.#header.length === 1 ? chunk : Buffer.concat(this.#header);
    const end = joined.indexOf('\r\n\r\n', Math.max(0, this.#scanned - 3));
    this.#scanned = joined.length;
    if (end === -1) {
      // Copied: the caller may reuse its buffer once write() returns.
      this.#header = [Buffer.from(joined)];
      return;
    }
    this.#header = [];
    this.#headerText = joined.subarray(0, end + 2).toString('latin1');
    this.#body(joined.subarray(end + 4));
  }

  end(): void {
    if (this.#headerText === undefined) this.#headerText = Buffer.concat(this.#header).toString('latin1');
    // A body that does not end with CRLF is hashed as if it did (RFC 6376 §3.4.4).
    if (this.#partial.length > 0) this.#lines(Buffer.concat([this.#partial, CRLF]));
    this.#partial = EMPTY;
  }

  /** Complete lines are canonicalized a chunk at a time; the incomplete tail waits. */
  #body(chunk: Buffer): void {
    const data = this.#partial.length > 0 ? Buffer.concat([this.#partial, chunk]) : chunk;
    const last = data.lastIndexOf(CRLF);
    if (last === -1) {
      this.#partial = Buffer.from(data);
      return;
    }
    // Copied: the caller may reuse its buffer once write() returns.
    this.#partial = Buffer.from(data.subarray(last + 2));
    this.#lines(data.subarray(0, last + 2));
  }

  /** `lines` ends with CRLF. */
  #lines(lines: Buffer): void {
    const canonical = relaxedBody(lines);
    let end = canonical.length;
    let trailing = 0;
    while (endsWithEmptyLine(canonical, end)) {
      end -= 2;
      trailing++;
    }
    if (end === 0) {
      this.#emptyLines += trailing;
      return;
    }
    if (this.#emptyLines > 0) this.#hash.update(CRLF.toString('latin1').repeat(this.#emptyLines), 'latin1');
    this.#hash.update(canonical.subarray(0, end));
    this.#emptyLines = trailing;
  }
}

const EMPTY = Buffer.alloc(0);

/** Whether bytes [0, end) end with a line that is only CRLF. */
function endsWithEmptyLine(data: Buffer, end: number): boolean {
  if (end < 2 || data[end - 1] !== 0x0a || data[end - 2] !== 0x0d) return false;
  return end === 2 || (end >= 4 && data[end - 3] === 0x0a && data[end - 4] === 0x0d);
}
const CRLF = Buffer.from('\r\n');

/**
 * Relaxed body canonicalization of complete lines: whitespace runs become one space, and
 * whitespace before a line end goes. Most bodies need neither, and are hashed as they are.
 */
function relaxedBody(lines: Buffer): Buffer {
  if (lines.indexOf(0x09) === -1 && lines.indexOf('  ') === -1 && lines.indexOf(' \r\n') === -1) return lines;
  const text = lines.toString('latin1').replace(/[ \t]+/g, ' ').replace(/ \r\n/g, '\r\n');
  return Buffer.from(text, 'latin1');
}

/** Header fields of a block Tern wrote itself (so every line is a field or a continuation). */
export function parseHeaderFields(block: string): HeaderField[] {
  return splitHeaderFields(block).fields;
}

/** Relaxed header canonicalization of one field, with its CRLF. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).trim().toLowerCase();
  const value = raw.slice(colon + 1).replace(/\r\n/g, '').replace(/[ \t]+/g, ' ').trim();
  return `${name}:${value}\r\n`;
}

/**
 * The canonical header data for an h= list: each name takes the next instance from the bottom
 * (RFC 6376 §5.4.2); a name with no instance left (over-signing) contributes nothing.
 */
export function canonicalHeaders(fields: readonly HeaderField[], names: readonly string[]): string {
  const used = new Set<number>();
  let out = '';
  for (const name of names) {
    for (let i = fields.length - 1; i >= 0; i--) {
      if (!used.has(i) && fields[i]?.name === name) {
        used.add(i);
        out += relaxedHeader((fields[i] as HeaderField).raw);
        break;
      }
    }
  }
  return out;
}
