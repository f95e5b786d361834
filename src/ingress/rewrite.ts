import { splitHeaderFields } from '../model/headers.ts';
import { LineEndings } from './line-endings.ts';

export interface HeaderFacts {
  /** Unfolded values of every X-Tern-Meta header (removed from the output). */
  readonly metaValues: string[];
  readonly messageId?: string;
}

export interface RewriteOptions {
  readonly maxHeaderBytes: number;
  /** Header lines to put first (Received, and Message-ID when missing), given what was found. */
  readonly prepend: (facts: HeaderFacts) => string;
}

const CRLF_CRLF = Buffer.from('\r\n\r\n');
/** Stands before the message, so that a message starting with CRLF (no header) is found by the same search. */
const VIRTUAL_START = Buffer.from('\r\n');

/**
 * The DATA stream on its way to the spool: buffers only the header block, removes X-Tern-Meta,
 * prepends Tern's headers, and turns bare LF and bare CR into CRLF everywhere (line-endings.ts)
 * so that what is stored (and later signed) is exactly what goes on the wire. Everything after
 * the header block streams. Plain calls in and out (write/end in, `output` out): a Transform here
 * cost more event-loop time per message than the rewriting itself.
 *
 * The header block's end is searched for in each new chunk plus the 3 bytes before it, never
 * from the start again: 512 KiB of header in 1 KiB chunks costs what it costs in one chunk.
 */
export class MessageRewriter {
  #header: Buffer[] = [];
  #headerBytes = 0;
  /** The last 3 bytes of the header so far (a CRLFCRLF may straddle chunks). */
  #tail: Buffer = VIRTUAL_START;
  #inBody = false;
  readonly #lines = new LineEndings();
  #facts: HeaderFacts = { metaValues: [] };
  #problem: string | undefined;
  #bytesOut = 0;
  readonly #options: RewriteOptions;
  readonly #output: (piece: Buffer) => void;

  /** `output` receives the rewritten message, piece by piece, in order. */
  constructor(options: RewriteOptions, output: (piece: Buffer) => void) {
    this.#options = options;
    this.#output = output;
  }

  get facts(): HeaderFacts { return this.#facts; }
  /** Set when the message must be refused (header block too large). */
  get problem(): string | undefined { return this.#problem; }
  get bytesOut(): number { return this.#bytesOut; }

  write(chunk: Buffer): void {
    if (this.#problem) return;
    this.#take(this.#lines.push(chunk));
  }

  /** The message ended (the DATA dot). */
  end(): void {
    if (this.#problem) return;
    this.#take(this.#lines.end());
    if (!this.#inBody && !this.#problem) {
      // No blank line at all: the whole message is a header block with an empty body.
      const joined = Buffer.concat(this.#header);
      const trimmed = joined.subarray(0, joined.length - trailingNewlineLength(joined));
      this.#finishHeader(trimmed, Buffer.alloc(0));
    }
  }

  /** Normalised bytes: straight out in the body; in the header, kept until the blank line. */
  #take(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#inBody) return this.#emit(chunk);
    const found = blankLineIn(this.#tail, chunk);
    const before = this.#headerBytes;
    this.#header.push(chunk);
    this.#headerBytes += chunk.length;
    // `found` is relative to this chunk: negative when the CRLFCRLF began in the bytes before it.
    const at = found === undefined ? -1 : before + found;
    if ((found === undefined ? this.#headerBytes : at + 2) > this.#options.maxHeaderBytes) return this.#tooLarge();
    if (found === undefined) {
      this.#tail = lastBytes(this.#tail, chunk, 3);
      return;
    }
    // Most messages arrive in one chunk: no copy of it just to cut it in two.
    const joined = this.#header.length === 1 ? chunk : Buffer.concat(this.#header);
    this.#finishHeader(joined.subarray(0, Math.max(0, at + 2)), joined.subarray(at + 4));
  }

  #tooLarge(): void {
    this.#problem = `header section larger than ${this.#options.maxHeaderBytes} bytes`;
    this.#header = [];
  }

  #finishHeader(headerBlock: Buffer, rest: Buffer): void {
    this.#header = [];
    this.#inBody = true;
    const { fields: lines, bodyLines } = splitHeaderFields(headerBlock.toString('latin1'));
    const metaValues: string[] = [];
    let messageId: string | undefined;
    const kept: string[] = [];
    for (const field of lines) {
      const value = unfold(field.raw.slice(field.raw.indexOf(':') + 1));
      if (field.name === 'x-tern-meta') {
        metaValues.push(Buffer.from(value, 'latin1').toString('utf8'));
        continue;
      }
      if (field.name === 'message-id' && messageId === undefined) messageId = value.trim();
      kept.push(field.raw);
    }
    this.#facts = { metaValues, ...(messageId === undefined ? {} : { messageId }) };
    const head = this.#options.prepend(this.#facts) + kept.map((f) => `${f}\r\n`).join('') + '\r\n';
    this.#emit(Buffer.from(head, 'latin1'));
    // Lines that were not header fields start the body, as Postfix's cleanup treats them.
    if (bodyLines.length > 0) this.#emit(Buffer.from(bodyLines.map((l) => `${l}\r\n`).join('') + '\r\n', 'latin1'));
    if (rest.length > 0) this.#emit(rest);
  }

  #emit(buffer: Buffer): void {
    if (buffer.length === 0) return;
    this.#bytesOut += buffer.length;
    this.#output(buffer);
  }
}

function trailingNewlineLength(buf: Buffer): number {
  return buf.length >= 2 && buf[buf.length - 2] === 0x0d && buf[buf.length - 1] === 0x0a ? 2 : 0;
}

function unfold(value: string): string {
  return value.replace(/\r?\n(?=[ \t])/g, '').trim();
}

/**
 * Where the header's blank line (CRLFCRLF) starts, relative to `chunk`; negative when it began
 * in `tail` (the last bytes before the chunk); undefined when there is none yet. Only the few
 * bytes around the seam are copied, never the chunk.
 */
function blankLineIn(tail: Buffer, chunk: Buffer): number | undefined {
  if (tail.length > 0) {
    const seam = Buffer.concat([tail, chunk.subarray(0, 3)]);
    const inSeam = seam.indexOf(CRLF_CRLF);
    if (inSeam !== -1 && inSeam < tail.length) return inSeam - tail.length;
  }
  const inChunk = chunk.indexOf(CRLF_CRLF);
  return inChunk === -1 ? undefined : inChunk;
}

/** The last `n` bytes of tail followed by chunk, copied (the chunk is not kept alive by them). */
function lastBytes(tail: Buffer, chunk: Buffer, n: number): Buffer {
  if (chunk.length >= n) return Buffer.from(chunk.subarray(chunk.length - n));
  const both = Buffer.concat([tail, chunk]);
  return Buffer.from(both.subarray(Math.max(0, both.length - n)));
}
