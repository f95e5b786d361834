import type { MessageKind } from '../../model/bounce.ts';
import { stageIn, type Stage } from '../normalize.ts';
import { header, parseFields, parseMessage, textOf, walk, type MimePart } from './mime.ts';
import { addressIn, readProse, replyCodeIn } from './prose.ts';
import { readProviderReport } from './provider-reports.ts';

/**
 * What a bounce, complaint or auto-reply says about each recipient (docs/bounces.md,
 * "Asynchronous bounces"): RFC 3464 delivery status notifications, RFC 5965 feedback reports,
 * providers' own report formats (provider-reports.ts), RFC 3834 auto-replies, and the prose
 * bounces MTAs write instead of a DSN (prose.ts).
 */
export type { MessageKind } from '../../model/bounce.ts';

export interface FoundRecipient {
  readonly kind: MessageKind;
  /** The recipient the report is about ("" when the message names none). */
  readonly recipient: string;
  /** The enhanced status code the message gives (DSN Status, or one found in the text). */
  readonly status?: string;
  readonly replyCode?: number;
  /** The receiver's words: a DSN's Diagnostic-Code, or the prose about this recipient. */
  readonly text: string;
  /** DSN Action: failed, delayed, delivered, relayed, expanded. */
  readonly action?: string;
  /** ARF Feedback-Type: abuse, fraud, virus, opt-out, not-spam, auth-failure, other. */
  readonly feedbackType?: string;
  /** The command the reply answered, when the message says. */
  readonly stage?: Stage;
}


/** Every recipient a message reports on; one `unknown` entry when it is none of the kinds above. */
export function readBounceMessage(raw: Buffer): FoundRecipient[] {
  const message = parseMessage(raw);
  const parts = [...walk(message)];
  const feedback = parts.find((p) => p.type === 'message/feedback-report');
  if (feedback) return readArf(feedback, parts);
  const status = parts.find((p) => p.type === 'message/delivery-status' || p.type === 'message/global-delivery-status');
  const fromDsn = status ? readDsn(status, parts) : [];
  if (fromDsn.length > 0) return fromDsn;
  const fromProvider = readProviderReport(message, parts);
  if (fromProvider.length > 0) return fromProvider;
  if (!looksLikeBounce(message) && isAutoReply(message)) return [{ kind: 'autoreply', recipient: addressIn(header(message, 'from') ?? ''), text: header(message, 'subject') ?? '' }];
  const human = humanText(message);
  // Prose names addresses for many reasons; only a bounce's says a delivery failed.
  const prose = looksLikeBounce(message) || FAILURE_WORDS.test(human) ? readProse(human, excluded(message)) : [];
  if (prose.length > 0) return prose.map((p) => ({ kind: 'nonstandard', ...p }));
  return [{ kind: 'unknown', recipient: '', text: header(message, 'subject') ?? '' }];
}

function readDsn(status: MimePart, parts: readonly MimePart[]): FoundRecipient[] {
  const groups = textOf(status).replace(/\r\n/g, '\n').split(/\n\s*\n/).map(parseFields).filter((g) => g.size > 0);
  const perRecipient = groups.filter((g) => g.has('final-recipient') || g.has('original-recipient'));
  const prose = humanTextOf(parts);
  return perRecipient.map((g) => {
    const recipient = addressIn(first(g, 'final-recipient') ?? first(g, 'original-recipient') ?? '');
    const diagnostic = (first(g, 'diagnostic-code') ?? '').replace(/^\s*(smtp|x-[\w-]+|unix)\s*;\s*/i, '');
    const statusCode = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(first(g, 'status') ?? '')?.[1];
    // Without a Diagnostic-Code, the human-readable part's words about this recipient say why.
    const paragraph = readProse(prose, new Set()).find((p) => p.recipient === recipient)?.text ?? '';
    const text = diagnostic || paragraph;
    const code = replyCodeIn(text);
    // The command answered is often said only in the human-readable part, about this recipient
    // ("<addr>: host ... said: 550 ... (in reply to end of DATA command)").
    const stage = stageIn(text) ?? stageIn(paragraph);
    return {
      kind: 'dsn', recipient, text,
      ...(stage ? { stage } : {}),
      ...(statusCode ? { status: statusCode } : {}),
      ...(code ? { replyCode: code } : {}),
      ...(first(g, 'action') ? { action: (first(g, 'action') as string).toLowerCase() } : {}),
    } satisfies FoundRecipient;
  });
}

/** RFC 5965: one complaint per Original-Rcpt-To, else about the To of the returned original. */
function readArf(report: MimePart, parts: readonly MimePart[]): FoundRecipient[] {
  const fields = parseFields(textOf(report));
  const original = parts.find((p) => p.type === 'message/rfc822' || p.type === 'text/rfc822-headers');
  const originalTo = original ? header(original.parts[0] ?? { headers: parseFields(textOf(original)) }, 'to') : undefined;
  const named = [...(fields.get('original-rcpt-to') ?? []), ...(fields.get('removal-recipient') ?? [])].map(addressIn).filter(Boolean);
  const recipients = named.length > 0 ? [...new Set(named)] : [addressIn(originalTo ?? '')];
  const type = (first(fields, 'feedback-type') ?? 'other').toLowerCase();
  return recipients.map((recipient) => ({ kind: 'arf', recipient, text: `feedback ${type}`, feedbackType: type }));
}

/** A reply code or enhanced status, or the words bounces use for a failure. */
const FAILURE_WORDS = /(^|[\s(#:"'<\[-])[45]\d\d[\s-]|(^|[\s(#\[])[45]\.\d{1,3}\.\d{1,3}\b|undeliver|not (be )?delivered|could not (be )?deliver|delivery (to .{1,100})?(has )?failed|failed permanently|permanent (error|failure)|unable to deliver|rejected|refused|does not exist|unknown (user|recipient)|user unknown|no such (user|mailbox)|mailbox (is )?(full|unavailable)|over quota|quota exceeded|mail loop|loop (alert|detected)|duplicated message-id/i;

/**
 * MTAs mark their bounces Auto-Submitted too (RFC 3464 asks them to): a message from a mailer
 * daemon or titled as a delivery failure is a bounce, whatever else it says.
 */
function looksLikeBounce(message: MimePart): boolean {
  if (/mailer-daemon|postmaster|mail delivery (sub)?system|mail-daemon/i.test(header(message, 'from') ?? '')) return true;
  return /undeliver|deliver(y|ed)? (status|fail|notification|report)|returned mail|failure notice|mail delivery failed|non-?delivery|could not be delivered|delivery has failed|rejected|bounce/i.test(header(message, 'subject') ?? '');
}

/** RFC 3834 and the common older marks of an automatic reply. */
function isAutoReply(message: MimePart): boolean {
  const auto = header(message, 'auto-submitted')?.toLowerCase() ?? '';
  if (auto.startsWith('auto-replied')) return true;
  if (header(message, 'x-autoreply') || header(message, 'x-autorespond') || /^auto[_-]?reply$/i.test(header(message, 'precedence') ?? '')) return true;
  return /^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|abwesenheit|absence|r[ée]ponse automatique)\b/i.test(header(message, 'subject') ?? '');
}

/** The human-readable text of a message: its text parts outside any returned original. */
function humanText(message: MimePart): string {
  return humanTextOf([...walk(message)]);
}

function humanTextOf(parts: readonly MimePart[]): string {
  const inside = new Set<MimePart>();
  for (const p of parts) if (p.type === 'message/rfc822' || p.type === 'text/rfc822-headers') for (const q of walk(p)) inside.add(q);
  const texts = parts.filter((p) => !inside.has(p) && p.parts.length === 0 && (p.type === 'text/plain' || p.type === 'text/html'));
  const plain = texts.filter((p) => p.type === 'text/plain');
  return (plain.length > 0 ? plain : texts).map((p) => (p.type === 'text/html' ? stripHtml(textOf(p)) : textOf(p))).join('\n');
}

function stripHtml(html: string): string {
  return html.replace(/<(script|style)[\s\S]*?<\/\1>/gi, '').replace(/<br\s*\/?>|<\/(p|div|tr|li|h\d)>/gi, '\n').replace(/<[^>]+>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').replace(/&nbsp;/g, ' ');
}

/** Addresses a bounce names that are not the failed recipient: its own sender and addressee. */
function excluded(message: MimePart): Set<string> {
  return new Set(['from', 'to', 'return-path', 'reply-to'].flatMap((h) => (header(message, h) ?? '').split(',').map(addressIn)).filter(Boolean));
}

function first(fields: ReadonlyMap<string, readonly string[]>, name: string): string | undefined {
  return fields.get(name)?.[0];
}

