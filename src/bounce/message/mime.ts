import libmime from 'libmime';
import charset from 'libmime/lib/charset.js';
import libqp from 'libqp';

/**
 * Just enough MIME to read bounces: header fields (unfolded, RFC 2047 words decoded), the
 * content type and its parameters, transfer encodings undone, multiparts split into parts,
 * message/rfc822 and message/delivery-status kept as text. Bounded: at most MAX_PARTS parts and
 * MAX_DEPTH levels, so a hostile message cannot make it work without end.
 */
export interface MimePart {
  readonly headers: ReadonlyMap<string, readonly string[]>;
  readonly type: string;
  readonly params: Readonly<Record<string, string>>;
  /** The body with its transfer encoding undone (still in its charset). */
  readonly body: Buffer;
  readonly parts: readonly MimePart[];
}

const MAX_PARTS = 200;
const MAX_DEPTH = 8;

export function parseMessage(raw: Buffer): MimePart {
  const budget = { parts: MAX_PARTS };
  return parsePart(raw, 0, budget, 'text/plain');
}

/** A header field's first value, or undefined. */
export function header(part: Pick<MimePart, 'headers'>, name: string): string | undefined {
  return part.headers.get(name.toLowerCase())?.[0];
}

/** A text part's body as a string, in its charset (latin1 when unknown). */
export function textOf(part: MimePart): string {
  const name = part.params.charset ?? 'utf-8';
  try {
    return charset.decode(part.body, name);
  } catch {
    return part.body.toString('latin1');
  }
}

/** Every part, depth first, the part itself included. */
export function* walk(part: MimePart): Generator<MimePart> {
  yield part;
  for (const child of part.parts) yield* walk(child);
}

/** Header fields of a header block (also a delivery-status group): unfolded, lower-case names. */
export function parseFields(text: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const line of text.replace(/\r\n/g, '\n').replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    const value = decodeWords(line.slice(colon + 1).trim());
    fields.set(name, [...(fields.get(name) ?? []), value]);
  }
  return fields;
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

function parsePart(raw: Buffer, depth: number, budget: { parts: number }, defaultType: string): MimePart {
  budget.parts -= 1;
  const split = headerEnd(raw);
  const headers = parseFields(raw.subarray(0, split.at).toString('latin1'));
  const rawBody = raw.subarray(split.bodyAt);
  const contentType = headers.get('content-type')?.[0];
  const parsed = contentType ? libmime.parseHeaderValue(contentType) : { value: defaultType, params: {} };
  const type = parsed.value.toLowerCase() || defaultType;
  const params = Object.fromEntries(Object.entries(parsed.params).map(([k, v]) => [k.toLowerCase(), v]));
  const body = undoTransferEncoding(rawBody, headers.get('content-transfer-encoding')?.[0]);
  let parts: MimePart[] = [];
  if (type.startsWith('multipart/') && params.boundary && depth < MAX_DEPTH) {
    const childType = type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
    parts = splitMultipart(body, params.boundary).flatMap((piece) => (budget.parts > 0 ? [parsePart(piece, depth + 1, budget, childType)] : []));
  } else if (type === 'message/rfc822' && depth < MAX_DEPTH && budget.parts > 0) {
    parts = [parsePart(body, depth + 1, budget, 'text/plain')];
  }
  return { headers, type, params, body, parts };
}

function headerEnd(raw: Buffer): { at: number; bodyAt: number } {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return { at: crlf, bodyAt: crlf + 4 };
  if (lf !== -1) return { at: lf, bodyAt: lf + 2 };
  // No blank line: all header (or, when the first line is no field, all body).
  return /^[\x21-\x39\x3b-\x7e]+:/.test(raw.subarray(0, 200).toString('latin1')) ? { at: raw.length, bodyAt: raw.length } : { at: 0, bodyAt: 0 };
}

function undoTransferEncoding(body: Buffer, encoding: string | undefined): Buffer {
  switch (encoding?.trim().toLowerCase()) {
    case 'base64':
      return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
    case 'quoted-printable':
      return libqp.decode(body.toString('latin1'));
    default:
      return body;
  }
}

function splitMultipart(body: Buffer, boundary: string): Buffer[] {
  const text = body.toString('latin1');
  const delimiter = `--${boundary}`;
  const pieces: Buffer[] = [];
  let at = text.indexOf(delimiter);
  while (at !== -1) {
    const lineEnd = text.indexOf('\n', at);
    if (lineEnd === -1) break;
    if (text.startsWith(`${delimiter}--`, at)) break;
    const next = text.indexOf(`\n${delimiter}`, lineEnd);
    const end = next === -1 ? text.length : next;
    pieces.push(Buffer.from(text.slice(lineEnd + 1, end).replace(/\r$/, ''), 'latin1'));
    at = next === -1 ? -1 : next + 1;
  }
  return pieces;
}
