import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createClassifier, defaultRules, qualifyMessage, readBounceMessage } from '../../src/bounce/index.ts';
import { loadMessageLabels, measureMessages, MESSAGES_DIR } from '../support/message-agreement.ts';

/**
 * Whole bounce, complaint and auto-reply messages (../shared/data/bounce-emails: sisimai's
 * set-of-emails, BSD-2, labels from sisimai's tests) read and qualified as `tern classify
 * --message` does. The labels are one decoder's expectations, noisy: an agreement score, printed,
 * with floors under it, not an all-must-pass table.
 */
const classify = createClassifier(defaultRules());
const read = (file: string) => qualifyMessage(readFileSync(join(MESSAGES_DIR, file)), classify);
const pct = (x: number, of: number): string => `${((100 * x) / Math.max(1, of)).toFixed(1)}%`;

t.test('agreement with the labelled messages, by kind', async (t) => {
  const a = measureMessages(classify, loadMessageLabels());
  const lines = [
    `bounce messages (${MESSAGES_DIR}): ${a.rows} labelled recipients`,
    `found ${pct(a.found, a.rows)}; kind ${pct(a.kind, a.rows)}; hard/soft ${pct(a.hardSoft.agree, a.hardSoft.of)} of ${a.hardSoft.of}; reason ${pct(a.reason.agree, a.reason.of)} of ${a.reason.of}`,
    ...Object.entries(a.perKind).map(([kind, k]) => `  ${kind}: ${k.rows} rows; hard/soft ${pct(k.hardSoft, k.hardSoftOf)}; reason ${pct(k.reason, k.reasonOf)}`),
  ];
  t.comment(lines.join('\n'));
  t.ok(a.found / a.rows >= 0.98, `a recipient found for ${pct(a.found, a.rows)} of the labels (floor 98%)`);
  t.ok(a.hardSoft.agree / a.hardSoft.of >= 0.92, `hard/soft ${pct(a.hardSoft.agree, a.hardSoft.of)} (floor 92%)`);
  t.ok(a.reason.agree / a.reason.of >= 0.75, `reason ${pct(a.reason.agree, a.reason.of)} (floor 75%)`);
});

t.test('each kind, read as the standards and the MTAs write it', async (t) => {
  t.match(read('lhost-qmail-01.eml'), [{ kind: 'nonstandard', recipient: 'kijitora@example.ne.jp', status: '5.5.0', reply_code: 550, reason: 'userunknown', type: 'hard' }], 'qmail prose, with its (#5.5.0)');
  t.match(read('lhost-postfix-03.eml'), [{ kind: 'dsn', recipient: 'kijitora@example.net', status: '5.0.0', reply_code: 550, reason: 'filtered', type: 'soft' }], 'user unknown after DATA: a filter, not a bad address');
  const complaint = read('arf-16.eml');
  t.equal(complaint.length, 7, 'a feedback report with seven Original-Rcpt-To');
  t.match(complaint[0], { kind: 'arf', recipient: 'kijitora@example.com', reason: 'feedback', feedback_type: 'abuse' });
  const auto = read('rfc3834-02.eml');
  t.match(auto, [{ kind: 'autoreply', reason: 'vacation', type: 'ignored' }], 'an automatic reply is not a bounce');
});

t.test('what is not a bounce, or is hostile, is read without harm', async (t) => {
  t.match(readBounceMessage(Buffer.from('Subject: hello\r\nFrom: a@b.test\r\n\r\nJust saying hi.\r\n')), [{ kind: 'unknown', recipient: '' }]);
  t.match(readBounceMessage(Buffer.alloc(0)), [{ kind: 'unknown' }], 'empty');
  t.match(readBounceMessage(Buffer.from('Subject: re: lunch\r\nFrom: a@b.test\r\n\r\nPlease write to bob@example.org about lunch.\r\n')), [{ kind: 'unknown', recipient: '' }], 'a person writing back names an address but no failure: not a bounce');
  t.match(readBounceMessage(Buffer.from('\x00\xff\xfe garbage without any header\n')), [{ kind: 'unknown' }]);
  // Multiparts nested past any sense, and more parts than any bounce has: bounded, not recursed for ever.
  let nested = 'Just text.';
  for (let i = 0; i < 50; i++) nested = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${nested}\r\n--b${i}--\r\n`;
  t.match(readBounceMessage(Buffer.from(nested)), [{ kind: 'unknown' }], 'fifty levels of multipart');
  const wide = `Content-Type: multipart/mixed; boundary="w"\r\n\r\n${'--w\r\nContent-Type: text/plain\r\n\r\nx\r\n'.repeat(5_000)}--w--\r\n`;
  t.match(readBounceMessage(Buffer.from(wide)), [{ kind: 'unknown' }], 'five thousand parts');
});

t.test("providers' own formats: Microsoft JMRP, Amazon SES notifications, Apple Mail's unsubscribe", async (t) => {
  t.match(read('arf-22.eml'), [{ kind: 'arf', recipient: 'kijitora@example.com', reason: 'feedback', feedback_type: 'abuse' }], 'JMRP: the complainer is the returned original\'s X-HmXmrOriginalRecipient');
  t.match(read('lhost-amazonses-11.eml'), [{ kind: 'arf', recipient: 'complaint@simulator.amazonses.com', feedback_type: 'abuse' }], 'an SES Complaint, its JSON line broken by Sendmail at 990 characters');
  t.match(read('lhost-amazonses-13.eml'), [{ recipient: 'complaint@simulator.amazonses.com', reason: 'delivered', status: '2.6.0', reply_code: 250, action: 'delivered' }], 'an SES Delivery is no bounce');
  t.match(read('arf-26.eml'), [{ kind: 'arf', recipient: 'example@icloud.com', feedback_type: 'opt-out' }], "Apple Mail's one-click unsubscribe is an opt-out, not an auto-reply");

  const ses = (note: object, footer = '\r\n--\r\nIf you wish to stop receiving notifications from this topic, ...\r\n'): Buffer =>
    Buffer.from(`From: no-reply@sns.amazonaws.com\r\nSubject: AWS Notification Message\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n${JSON.stringify(note)}${footer}`);
  const bounce = ses({
    notificationType: 'Bounce',
    bounce: {
      bounceType: 'Permanent',
      bouncedRecipients: [
        { emailAddress: 'gone@example.net', action: 'failed', status: '5.1.1', diagnosticCode: 'smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table' },
        { emailAddress: 'full@example.net', action: 'failed', status: '5.2.2', diagnosticCode: 'smtp; 552 5.2.2 Mailbox full' },
      ],
    },
  });
  t.match(qualifyMessage(bounce, classify), [
    { kind: 'nonstandard', recipient: 'gone@example.net', status: '5.1.1', reply_code: 550, reason: 'userunknown', type: 'hard' },
    { kind: 'nonstandard', recipient: 'full@example.net', status: '5.2.2', reply_code: 552, reason: 'mailboxfull', type: 'soft' },
  ], 'an SES Bounce: each bounced recipient through the same classifier');
  t.match(qualifyMessage(ses({ eventType: 'Complaint', complaint: { complainedRecipients: [{ emailAddress: 'a@example.org' }, { emailAddress: 'b@example.org' }], complaintFeedbackType: 'not-spam' } }), classify),
    [{ kind: 'arf', recipient: 'a@example.org', feedback_type: 'not-spam' }, { kind: 'arf', recipient: 'b@example.org' }], 'event publishing says eventType; the feedback type is kept');

  const broken = Buffer.from('Subject: AWS Notification Message\r\n\r\n{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"x@example.org"}\r\n');
  t.match(readBounceMessage(broken), [{ kind: 'unknown' }], 'a notification cut short is not guessed at');
  t.match(readBounceMessage(ses({ notificationType: 'Complaint', complaint: { complainedRecipients: 'not a list' } })), [{ kind: 'unknown' }], 'a notification of the wrong shape names nobody');
  const deep = Buffer.from(`Subject: x\r\n\r\n{"notificationType":"Bounce","bounce":${'{"a":'.repeat(200_000)}`);
  t.match(readBounceMessage(deep), [{ kind: 'unknown' }], 'an object that never closes, beyond the scanned length');
});
