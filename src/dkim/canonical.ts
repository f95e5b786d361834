import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { splitHeaderFields, type HeaderField } from '../model/headers.ts';

/**
 * DKIM relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), streaming: the body hash is computed
 * as the message goes to disk, so signing never re-reads or buffers the body. Only the header
 * block is kept, because the signature covers header fields chosen later.
 */
export class DkimHasher extends Transform {
  readonly #hash: Hash = createHash('sha256');
  #header: Buffer[] = [];
  #headerText: string | undefined;
  #scanned = 0;
  #partial = '';
  #emptyLines = 0;
  #bodyBytes = 0;

  /** The header block as written (without the blank line), once the body has started. */
  get header(): string | undefined { return this.#headerText; }

  /** base64 SHA-256 of the relaxed-canonical body; valid after the stream ended. */
  bodyHash(): string {
    return this.#hash.copy().digest('base64');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.push(chunk);
    if (this.#headerText !== undefined) {
      this.#body(chunk.toString('latin1'));
      return done();
    }
    this.#header.push(chunk);
    const joined = Buffer.concat(this.#header);
    const end = joined.indexOf('\r\n\r\n', Math.max(0, this.#scanned - 3));
    this.#scanned = joined.length;
    if (end === -1) {
      this.#header = [joined];
      return done();
    }
    this.#header = [];
    this.#headerText = joined.subarray(0, end + 2).toString('latin1');
    this.#body(joined.subarray(end + 4).toString('latin1'));
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.#headerText === undefined) this.#headerText = Buffer.concat(this.#header).toString('latin1');
    if (this.#partial !== '') this.#line(this.#partial);
    this.#partial = '';
    done();
  }

  /** latin1 keeps bytes 1:1, so 8-bit bodies hash exactly as their bytes. */
  #body(text: string): void {
    const lines = (this.#partial + text).split('\r\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) this.#line(line);
  }

  #line(raw: string): void {
    const line = raw.replace(/[ \t]+/g, ' ').replace(/ $/, '');
    if (line === '') {
      this.#emptyLines++;
      return;
    }
    // Empty lines are held back: trailing ones at the end of the body are not hashed.
    const data = '\r\n'.repeat(this.#emptyLines) + line + '\r\n';
    this.#emptyLines = 0;
    this.#bodyBytes += data.length;
    this.#hash.update(data, 'latin1');
  }
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
