import { crc32 } from 'node:zlib';

/**
 * A segment is a sequence of records: a 16-byte header — "TSG1", envelope length (u32 BE), body
 * length (u32 BE), CRC-32 of envelope ‖ body (u32 BE) — then the envelope JSON, then the body.
 * The CRC tells a complete record from the torn tail of a batch that was never acknowledged.
 */
export const RECORD_HEADER = 16;
const MAGIC = 0x54534731; // "TSG1"

export function encodeRecord(envelopeJson: Buffer, body: Buffer): Buffer {
  const header = Buffer.alloc(RECORD_HEADER);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt32BE(envelopeJson.length, 4);
  header.writeUInt32BE(body.length, 8);
  header.writeUInt32BE(crc32(body, crc32(envelopeJson)), 12);
  return Buffer.concat([header, envelopeJson, body]);
}

export interface ScannedRecord {
  readonly envelopeJson: Buffer;
  readonly envelopeOffset: number;
  readonly bodyOffset: number;
  readonly bodyLength: number;
}

export interface ScanResult {
  readonly records: ScannedRecord[];
  /** Where valid records end; bytes after it (a torn unacknowledged batch, or damage) are ignored. */
  readonly validEnd: number;
}

export function scanSegment(bytes: Buffer): ScanResult {
  const records: ScannedRecord[] = [];
  let at = 0;
  while (at + RECORD_HEADER <= bytes.length && bytes.readUInt32BE(at) === MAGIC) {
    const envelopeLength = bytes.readUInt32BE(at + 4);
    const bodyLength = bytes.readUInt32BE(at + 8);
    const envelopeOffset = at + RECORD_HEADER;
    const bodyOffset = envelopeOffset + envelopeLength;
    const end = bodyOffset + bodyLength;
    if (end > bytes.length) break;
    const envelopeJson = bytes.subarray(envelopeOffset, bodyOffset);
    if (crc32(bytes.subarray(bodyOffset, end), crc32(envelopeJson)) !== bytes.readUInt32BE(at + 12)) break;
    records.push({ envelopeJson, envelopeOffset, bodyOffset, bodyLength });
    at = end;
  }
  return { records, validEnd: at };
}
