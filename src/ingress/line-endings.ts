/**
 * Line ends on their way to the spool: bare LF and bare CR both become CRLF, so what is stored
 * (and signed, and relayed) has one kind of line end. A bare CR left alone would reach receivers
 * that end DATA at `\r.\r` (SMTP smuggling); after this, a dot after it starts a real line and the
 * delivery client stuffs it. A CR at a chunk's end is held until the next byte says whether an
 * LF follows.
 */
const CR = 0x0d;
const LF = 0x0a;
const CR_BUFFER = Buffer.from([CR]);
const CRLF = Buffer.from([CR, LF]);
const EMPTY = Buffer.alloc(0);

export class LineEndings {
  #heldCr = false;

  /** The chunk with proper line ends; the chunk itself when it needs none (the common case). */
  push(chunk: Buffer): Buffer {
    const input = this.#heldCr ? Buffer.concat([CR_BUFFER, chunk]) : chunk;
    this.#heldCr = input.length > 0 && input[input.length - 1] === CR;
    const work = this.#heldCr ? input.subarray(0, input.length - 1) : input;
    const bare = countBare(input, work.length);
    return bare === 0 ? work : fixBare(input, work.length, bare);
  }

  /** The message ended: a CR still held was a bare one. */
  end(): Buffer {
    const held = this.#heldCr;
    this.#heldCr = false;
    return held ? CRLF : EMPTY;
  }
}

/**
 * Bare CRs and LFs in input[0, length). input[length] (a held CR), when there, is what follows a
 * CR at the end; input[-1] was never a CR (a CR at the end of the previous chunk was held and
 * is input[0] now).
 */
function countBare(input: Buffer, length: number): number {
  let bare = 0;
  for (let i = input.indexOf(LF); i !== -1 && i < length; i = input.indexOf(LF, i + 1)) {
    if (i === 0 || input[i - 1] !== CR) bare++;
  }
  for (let i = input.indexOf(CR); i !== -1 && i < length; i = input.indexOf(CR, i + 1)) {
    if (input[i + 1] !== LF) bare++;
  }
  return bare;
}

function fixBare(input: Buffer, length: number, bare: number): Buffer {
  const out = Buffer.allocUnsafe(length + bare);
  let o = 0;
  for (let i = 0; i < length; i++) {
    const byte = input[i] as number;
    if (byte === LF && (i === 0 || input[i - 1] !== CR)) out[o++] = CR;
    out[o++] = byte;
    if (byte === CR && input[i + 1] !== LF) out[o++] = LF;
  }
  return out;
}
