import { splitHeaderFields } from '../model/headers.ts';

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

const LF = 0x0a;
const CR = 0x0d;

/**
 * The DATA stream on its way to the spool: buffers only the header block, removes X-Tern-Meta,
 * prepends Tern's headers, and turns bare LF into CRLF everywhere so that what is stored (and
 * later signed) is exactly what goes on the wire. Everything after the header block streams.
 * Plain calls in and out (write/end in, `output` out): a Transform here cost more event-loop time
 * per message than the rewriting itself.
 */
export class MessageRewriter {
  #header: Buffer[] = [];
  #headerBytes = 0;
  #inBody = false;
  #lastWasCr = false;
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
    if (this.#inBody) {
      this.#emit(this.#normalise(chunk));
      return;
    }
    this.#header.push(chunk);
    this.#headerBytes += chunk.length;
    const joined = this.#header.length === 1 ? chunk : Buffer.concat(this.#header);
    const end = findHeaderEnd(joined);
    if (end === undefined) {
      if (this.#headerBytes > this.#options.maxHeaderBytes) {
        this.#problem = `header section larger than ${this.#options.maxHeaderBytes} bytes`;
        this.#header = [];
      } else {
        this.#header = [joined];
      }
      return;
    }
    this.#finishHeader(joined.subarray(0, end.headerEnd), joined.subarray(end.bodyStart));
  }

  /** The message ended (the DATA dot). */
  end(): void {
    if (!this.#inBody && !this.#problem) {
      // No blank line at all: the whole message is a header block with an empty body.
      const joined = Buffer.concat(this.#header);
      const trimmed = joined.subarray(0, joined.length - trailingNewlineLength(joined));
      this.#finishHeader(trimmed, Buffer.alloc(0));
    }
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
    this.#lastWasCr = false;
    // Lines that were not header fields start the body, as Postfix's cleanup treats them.
    if (bodyLines.length > 0) this.#emit(Buffer.from(bodyLines.map((l) => `${l}\r\n`).join('') + '\r\n', 'latin1'));
    if (rest.length > 0) this.#emit(this.#normalise(rest));
  }

  #emit(buffer: Buffer): void {
    this.#bytesOut += buffer.length;
    this.#output(buffer);
  }

  /** Bare LF → CRLF; returns the chunk itself when it needs no change (the common case). */
  #normalise(chunk: Buffer): Buffer {
    let bare = 0;
    let prevCr = this.#lastWasCr;
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      const before = i === 0 ? prevCr : chunk[i - 1] === CR;
      if (!before) bare++;
    }
    this.#lastWasCr = chunk.length > 0 ? chunk[chunk.length - 1] === CR : this.#lastWasCr;
    if (bare === 0) return chunk;
    const out = Buffer.allocUnsafe(chunk.length + bare);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (byte === LF && !(i === 0 ? prevCr : chunk[i - 1] === CR)) out[o++] = CR;
      out[o++] = byte;
    }
    prevCr = false;
    return out;
  }
}

/** End of the header block: the first empty line, CRLF or bare LF. */
function findHeaderEnd(buf: Buffer): { headerEnd: number; bodyStart: number } | undefined {
  if (buf[0] === LF) return { headerEnd: 0, bodyStart: 1 };
  if (buf[0] === CR && buf[1] === LF) return { headerEnd: 0, bodyStart: 2 };
  for (let i = buf.indexOf(LF); i !== -1; i = buf.indexOf(LF, i + 1)) {
    const next = buf[i + 1];
    if (next === LF) return { headerEnd: i + 1, bodyStart: i + 2 };
    if (next === CR && buf[i + 2] === LF) return { headerEnd: i + 1, bodyStart: i + 3 };
  }
  return undefined;
}

function trailingNewlineLength(buf: Buffer): number {
  if (buf.length >= 2 && buf[buf.length - 2] === CR && buf[buf.length - 1] === LF) return 2;
  return buf.length >= 1 && buf[buf.length - 1] === LF ? 1 : 0;
}

function unfold(value: string): string {
  return value.replace(/\r?\n(?=[ \t])/g, '').trim();
}
