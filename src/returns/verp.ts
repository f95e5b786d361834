import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseQueueId, type QueueId } from '../model/ids.ts';

/**
 * VERP return paths (docs/bounces.md, "Asynchronous bounces"): `bounce+<queue id>.<recipient
 * index>.<signature>@<bounce.domain>`. A DSN or complaint sent back to it names the message it is
 * about; the signature (HMAC-SHA256 with bounce.secret, 12 hex digits) means nobody can make up
 * one that is accepted.
 */
const PREFIX = 'bounce+';
const SIGNATURE_CHARS = 12;

export function returnPath(queueId: QueueId, index: number, secret: string, domain: string): string {
  return `${PREFIX}${queueId}.${index}.${sign(`${queueId}.${index}`, secret)}@${domain}`;
}

/** The message a return path's local part names, or undefined when it is not one Tern signed. */
export function readReturnPath(localPart: string, secret: string): { queueId: QueueId; index: number } | undefined {
  const m = /^bounce\+([0-9A-Za-z]{26})\.(\d{1,6})\.([0-9a-f]{12})$/i.exec(localPart);
  if (!m) return undefined;
  const queueId = parseQueueId((m[1] as string).toUpperCase());
  if (!queueId) return undefined;
  const expected = Buffer.from(sign(`${queueId}.${Number(m[2])}`, secret));
  const given = Buffer.from((m[3] as string).toLowerCase());
  return given.length === expected.length && timingSafeEqual(given, expected) ? { queueId, index: Number(m[2]) } : undefined;
}

function sign(text: string, secret: string): string {
  return createHmac('sha256', secret).update(text).digest('hex').slice(0, SIGNATURE_CHARS);
}
