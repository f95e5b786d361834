import { header, textOf, type MimePart } from './mime.ts';
import { addressIn } from './prose.ts';
import type { FoundRecipient } from './read.ts';

/**
 * Reports that mailbox providers send in their own formats rather than RFC 5965 or RFC 3464
 * (docs/bounces.md, "Bounce messages"):
 * - Microsoft's JMRP complaint: the original returned as message/rfc822, the complainer named
 *   in its X-HmXmrOriginalRecipient header;
 * - Amazon SES notifications mailed by SNS: a JSON object (notificationType or eventType
 *   Bounce, Complaint or Delivery) in the text body;
 * - a one-click unsubscribe sent by Apple Mail (X-Apple-Unsubscribe), an opt-out from the
 *   address it comes from.
 * Complaints and opt-outs are reported as kind `arf`: what the campaign side does with them is
 * the same.
 */
export function readProviderReport(message: MimePart, parts: readonly MimePart[]): FoundRecipient[] {
  return readJmrp(parts) ?? readSesNotification(parts) ?? readUnsubscribe(message) ?? [];
}

function readJmrp(parts: readonly MimePart[]): FoundRecipient[] | undefined {
  for (const part of parts) {
    if (part.type !== 'message/rfc822' || !part.parts[0]) continue;
    const recipient = addressIn(header(part.parts[0], 'x-hmxmroriginalrecipient') ?? '');
    if (recipient) return [{ kind: 'arf', recipient, text: 'feedback abuse', feedbackType: 'abuse' }];
  }
  return undefined;
}

function readUnsubscribe(message: MimePart): FoundRecipient[] | undefined {
  if (!/^true$/i.test(header(message, 'x-apple-unsubscribe')?.trim() ?? '')) return undefined;
  const recipient = addressIn(header(message, 'from') ?? '');
  return recipient ? [{ kind: 'arf', recipient, text: 'feedback opt-out', feedbackType: 'opt-out' }] : undefined;
}

interface SesRecipient { emailAddress?: unknown; action?: unknown; status?: unknown; diagnosticCode?: unknown }
interface SesNotification {
  notificationType?: unknown;
  eventType?: unknown;
  bounce?: { bounceType?: unknown; bouncedRecipients?: unknown };
  complaint?: { complainedRecipients?: unknown; complaintFeedbackType?: unknown };
  delivery?: { recipients?: unknown; smtpResponse?: unknown };
}

/** The JSON SES sends for a Bounce, a Complaint or a Delivery, read recipient by recipient. */
function readSesNotification(parts: readonly MimePart[]): FoundRecipient[] | undefined {
  for (const part of parts) {
    if (part.type !== 'text/plain' || part.parts.length > 0) continue;
    const note = sesJsonIn(textOf(part));
    if (!note) continue;
    switch (note.notificationType ?? note.eventType) {
      case 'Complaint': {
        const type = typeof note.complaint?.complaintFeedbackType === 'string' ? note.complaint.complaintFeedbackType.toLowerCase() : 'abuse';
        return listOf<SesRecipient>(note.complaint?.complainedRecipients).map((r) => ({ kind: 'arf', recipient: addressIn(String(r.emailAddress ?? '')), text: `feedback ${type}`, feedbackType: type }));
      }
      case 'Bounce':
        return listOf<SesRecipient>(note.bounce?.bouncedRecipients).map((r) => sesBounced(r, note.bounce?.bounceType));
      case 'Delivery': {
        const reply = typeof note.delivery?.smtpResponse === 'string' ? note.delivery.smtpResponse : '250';
        return listOf<string>(note.delivery?.recipients).map((r) => ({ kind: 'nonstandard', recipient: addressIn(String(r)), text: reply, action: 'delivered', ...codesOf(reply) }));
      }
      default:
        return undefined;
    }
  }
  return undefined;
}

function sesBounced(r: SesRecipient, bounceType: unknown): FoundRecipient {
  const text = typeof r.diagnosticCode === 'string' ? r.diagnosticCode.replace(/^\s*smtp\s*;\s*/i, '') : '';
  const status = typeof r.status === 'string' && /^[245]\.\d{1,3}\.\d{1,3}$/.test(r.status) ? r.status : undefined;
  // SES says Transient for a bounce it will not retry either; the status, when given, decides.
  const action = typeof r.action === 'string' ? r.action.toLowerCase() : bounceType === 'Transient' ? 'delayed' : 'failed';
  return { kind: 'nonstandard', recipient: addressIn(String(r.emailAddress ?? '')), text, action, ...codesOf(text), ...(status ? { status } : {}) };
}

function codesOf(reply: string): { replyCode?: number; status?: string } {
  const m = /^\s*([245]\d\d)(?:[ -]+([245]\.\d{1,3}\.\d{1,3}))?/.exec(reply);
  return m ? { replyCode: Number(m[1]), ...(m[2] ? { status: m[2] } : {}) } : {};
}

function listOf<T>(value: unknown): T[] {
  return Array.isArray(value) ? (value as T[]).filter((v) => v !== null && v !== undefined) : [];
}

/** At most this much text is scanned for the notification's JSON object. */
const MAX_JSON = 256 * 1024;

/**
 * The notification object in an SNS mail body: it starts at `{"notificationType"` (or
 * `{"eventType"`) and is followed by SNS's unsubscribe footer. A relaying Sendmail may have
 * broken its long line at 990 characters with "!" + CRLF + space; that is undone first.
 */
function sesJsonIn(text: string): SesNotification | undefined {
  const start = text.search(/\{\s*"(notificationType|eventType)"\s*:/);
  if (start < 0) return undefined;
  const body = text.slice(start, start + MAX_JSON).replace(/!\r?\n /g, '');
  const end = endOfObject(body);
  if (end < 0) return undefined;
  try {
    const value: unknown = JSON.parse(body.slice(0, end + 1));
    return typeof value === 'object' && value !== null ? (value as SesNotification) : undefined;
  } catch {
    return undefined;
  }
}

/** Index of the brace closing the object that opens at 0, minding strings; -1 if none. */
function endOfObject(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i += 1;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth += 1;
    else if (c === '}' && --depth === 0) return i;
  }
  return -1;
}
