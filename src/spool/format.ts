/**
 * A message file is the body bytes, then the envelope as JSON, then a fixed 32-byte trailer
 * "TERN1:<body length, 16 hex>:<envelope length, 8 hex>\n". The trailer is written last, so a
 * file without one was never completed (the rename makes that impossible, but recovery checks).
 */
export const TRAILER_LENGTH = 32;
const TRAILER = /^TERN1:([0-9a-f]{16}):([0-9a-f]{8})\n$/;

export function encodeTrailer(bodyLength: number, envelopeLength: number): Buffer {
  const text = `TERN1:${bodyLength.toString(16).padStart(16, '0')}:${envelopeLength.toString(16).padStart(8, '0')}\n`;
  return Buffer.from(text, 'latin1');
}

export function decodeTrailer(bytes: Buffer): { bodyLength: number; envelopeLength: number } | undefined {
  const match = TRAILER.exec(bytes.toString('latin1'));
  if (!match) return undefined;
  return { bodyLength: parseInt(match[1] as string, 16), envelopeLength: parseInt(match[2] as string, 16) };
}
