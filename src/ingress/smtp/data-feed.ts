/**
 * DATA: the message as it arrives (DataStream), and the scanner that unstuffs it and finds its
 * end (DataFeed). The feed also judges what the wire carries: a message over the size limit, with
 * a NUL octet or with a line over the line limit is read to its end but not passed on, and the
 * stream says why, so the data hook can refuse it before anything is stored.
 */
import { Readable } from 'node:stream';
import { REPLIES, render, type SmtpRefusal } from './replies.ts';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const NUL = 0x00;
const CR_BUFFER = Buffer.from('\r');

/** The message as it arrives, unstuffed; `sizeExceeded` once it passed the size limit. */
export class DataStream extends Readable {
  sizeExceeded = false;
  /** Set (and the rest withheld) when the content must be refused: a NUL, an over-long line. */
  refusal: SmtpRefusal | undefined;
  bytes = 0;
  readonly #resume: () => void;

  constructor(resume: () => void) {
    super();
    this.#resume = resume;
    // The reader sees an abort as a premature close; an 'error' nobody listens to would crash.
    this.on('error', () => undefined);
  }

  override _read(): void {
    this.#resume();
  }

  /**
   * A reader's 'data' listener that throws ends that reader, not the process. Readable emits
   * 'data' from push() or, when it had to buffer, later from process.nextTick: catching it here
   * covers both.
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data') return super.emit(event, ...args);
    try {
      return super.emit(event, ...args);
    } catch (err) {
      this.destroy(err as Error);
      return false;
    }
  }
}

export interface DataLimits {
  /** smtp.max_message_size */
  readonly size: number;
  /** smtp.limits.line_length: octets per line, CRLF excluded. */
  readonly lineLength: number;
}

/**
 * Unstuffs dots at line starts and finds the terminating CRLF.CRLF, whatever the TCP
 * segmentation. Only a line start (the beginning, or just after CRLF) is special, and a dot there
 * is held until the next bytes say what it is: the terminator, or a stuffed dot to drop. The
 * CRLF before the terminator belongs to the message. Bare LF and bare CR never start a line, so
 * `\n.\n` and `\r.\r` are content (the rewriter turns them into proper line ends later).
 */
export class DataFeed {
  readonly #stream: DataStream;
  readonly #limits: DataLimits;
  readonly #pause: () => void;
  #lineStart = true;
  /** 0: nothing held; 1: a dot at a line start; 2: a dot and CR at a line start. */
  #held = 0;
  #lastWasCr = false;
  #discarding = false;
  /** Octets of the current line seen in earlier chunks (LF to LF; a stuffed dot not counted). */
  #lineBytes = 0;

  constructor(stream: DataStream, limits: DataLimits, pause: () => void) {
    this.#stream = stream;
    this.#limits = limits;
    this.#pause = pause;
  }

  /** The bytes after the terminator once it is found, else undefined. */
  feed(chunk: Buffer): Buffer | undefined {
    let from = 0;
    let i = 0;
    let lineFrom = 0;
    while (i < chunk.length) {
      if (this.#held === 1) {
        if (chunk[i] === CR) {
          this.#held = 2;
          from = ++i;
          continue;
        }
        this.#dropStuffedDot();
        continue;
      }
      if (this.#held === 2) {
        if (chunk[i] === LF) {
          this.#held = 0;
          this.#finish();
          return chunk.subarray(i + 1);
        }
        this.#dropStuffedDot();
        this.#emit(CR_BUFFER);
        continue;
      }
      if (this.#lineStart) {
        this.#lineStart = false;
        if (chunk[i] === DOT) {
          this.#emit(chunk.subarray(from, i));
          this.#held = 1;
          from = ++i;
        }
        continue;
      }
      const lf = chunk.indexOf(LF, i);
      if (lf === -1) {
        this.#lastWasCr = chunk[chunk.length - 1] === CR;
        break;
      }
      const crlf = lf > 0 ? chunk[lf - 1] === CR : this.#lastWasCr;
      this.#lineEnded(this.#lineBytes + lf - lineFrom - (crlf ? 1 : 0));
      lineFrom = lf + 1;
      this.#lineStart = crlf;
      this.#lastWasCr = false;
      i = lf + 1;
    }
    this.#lineGoesOn(chunk.length - lineFrom);
    this.#emit(chunk.subarray(from, chunk.length));
    return undefined;
  }

  /** The hook answered early: read on to the terminator without keeping anything. */
  discard(): void {
    this.#discarding = true;
  }

  abort(err: Error): void {
    this.#stream.destroy(err);
  }

  /** The held dot was a stuffed one: dropped, and the line goes on without it. */
  #dropStuffedDot(): void {
    this.#held = 0;
    this.#lineStart = false;
    this.#lineBytes--;
  }

  #lineEnded(length: number): void {
    this.#lineBytes = 0;
    if (length > this.#limits.lineLength) this.#refuse(render(REPLIES.longLine, { limit: this.#limits.lineLength }));
  }

  /** A line not ended in this chunk: judged already once it cannot fit even if a CR comes next. */
  #lineGoesOn(bytes: number): void {
    this.#lineBytes += bytes;
    if (this.#lineBytes > this.#limits.lineLength + 1) this.#refuse(render(REPLIES.longLine, { limit: this.#limits.lineLength }));
  }

  #refuse(why: SmtpRefusal): void {
    this.#stream.refusal ??= why;
  }

  #emit(bytes: Buffer): void {
    if (bytes.length === 0 || this.#discarding) return;
    this.#stream.bytes += bytes.length;
    // memchr: a NUL could end a line early in a C receiver downstream (and is no 8BITMIME text).
    if (bytes.indexOf(NUL) !== -1) this.#refuse(render(REPLIES.nulInMessage));
    if (this.#stream.bytes > this.#limits.size) this.#stream.sizeExceeded = true;
    // A destroyed stream's reader is gone (it threw, or gave up): the client is read to the dot.
    if (this.#stream.sizeExceeded || this.#stream.refusal || this.#stream.destroyed) return;
    if (!this.#stream.push(bytes)) this.#pause();
  }

  #finish(): void {
    if (!this.#stream.destroyed) this.#stream.push(null);
  }
}
