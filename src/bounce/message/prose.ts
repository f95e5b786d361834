/**
 * The bounces MTAs write as prose instead of (or beside) a DSN: qmail's "<addr>:" paragraphs,
 * Exim's indented addresses with "SMTP error from remote mail server", Sendmail's transcripts,
 * Gmail's and Yahoo's sentences. Whatever the wording, each names the failed address and then
 * says why, often quoting the receiver's reply: the text from an address to the next blank line
 * (or the next address) is what is said about it, and a reply quoted elsewhere applies to all.
 */
export interface ProseRecipient {
  readonly recipient: string;
  readonly text: string;
  readonly status?: string;
  readonly replyCode?: number;
}

/** Where the returned original message starts, in the wordings MTAs use. */
const ORIGINAL = [
  /^[ \t]*-+ ?(this is a copy of|below this line is a copy|original message|the original message|a copy of the original|returned message|undelivered message|message headers follow|headers of the original|unsent message)/im,
  /^[ \t]*-+ ?(begin|start of) (original|returned|bounced) message/im,
  /^[ \t]*(original message headers|the headers of the original|your message reads)\b/im,
  /^(return-path|received|dkim-signature|x-received):[ \t]/im,
  /^content-type: message\/rfc822/im,
];
const ADDRESS = /<?([^\s<>"'(),;:@[\]]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)>?/gi;
const NOT_RECIPIENTS = /^(postmaster|mailer-daemon|mail-daemon|mailer_daemon|noreply|no-reply|bounce[s]?|abuse)@/i;
const MAX_RECIPIENTS = 50;
const MAX_TEXT = 1_000;

export function readProse(text: string, excluded: ReadonlySet<string>): ProseRecipient[] {
  const body = cutOriginal(text.replace(/\r\n?/g, '\n'));
  const lines = body.split('\n');
  const blocks = new Map<string, string[]>();
  let current: string[] | undefined;
  let blank = 0;
  for (const line of lines) {
    const found = recipientOf(line, excluded);
    if (found && !blocks.has(found)) {
      current = [line.trim()];
      blocks.set(found, current);
      blank = 0;
      if (blocks.size >= MAX_RECIPIENTS) break;
      continue;
    }
    if (!current) continue;
    if (line.trim() === '') {
      // One blank line may sit between an address and its reason (Exim); two end the paragraph.
      blank += 1;
      if (blank >= 2 || current.length > 2) current = undefined;
      continue;
    }
    blank = 0;
    current.push(line.trim());
  }
  // A reply quoted once for the whole message (Gmail: "The response from the remote server was:").
  const quoted = lines.find((l) => /^\s*[45]\d\d[ -][245]?\.?\d/.test(l) || /^\s*[45]\d\d[ -]\S/.test(l))?.trim();
  return [...blocks].map(([recipient, said]) => {
    let words = said.join(' ').replace(/\s+/g, ' ').trim();
    if (!/\b[45]\d\d\b/.test(words) && quoted) words = `${words} ${quoted}`;
    if (!/\b[45]\d\d\b/.test(words)) words = `${words} ${summary(body)}`.trim();
    words = words.slice(0, MAX_TEXT);
    const status = statusIn(words);
    const code = replyCodeIn(words);
    return { recipient, text: words, ...(status ? { status } : {}), ...(code ? { replyCode: code } : {}) };
  });
}

/** The first reply code (4xx/5xx) in a text. */
export function replyCodeIn(text: string): number | undefined {
  const m = /(?:^|[\s(:;"'])([45][0-5]\d)(?=[\s-]|$)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The first enhanced status code in a text, qmail's "(#5.5.0)" included. */
function statusIn(text: string): string | undefined {
  return /\b([45]\.\d{1,3}\.\d{1,3})\b/.exec(text)?.[1] ?? /\(#([45]\.\d\.\d{1,3})\)/.exec(text)?.[1];
}

/** The first address in a text, lower-case, without its angle brackets. */
export function addressIn(text: string): string {
  return (new RegExp(ADDRESS.source, 'i').exec(text)?.[1] ?? '').toLowerCase().replace(/\.$/, '');
}

function cutOriginal(text: string): string {
  let end = text.length;
  for (const marker of ORIGINAL) {
    const m = marker.exec(text);
    if (m && m.index > 0 && m.index < end) end = m.index;
  }
  return text.slice(0, end);
}

/** The address a line introduces, when it is about one: not the bounce's own parties or a role account. */
function recipientOf(line: string, excluded: ReadonlySet<string>): string | undefined {
  for (const m of line.matchAll(ADDRESS)) {
    const address = (m[1] as string).toLowerCase().replace(/\.$/, '');
    if (excluded.has(address) || NOT_RECIPIENTS.test(address)) continue;
    return address;
  }
  return undefined;
}

/** The sentences of a prose bounce that say why, when no paragraph names the reason: its first lines. */
function summary(body: string): string {
  return body.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 12).join(' ');
}
