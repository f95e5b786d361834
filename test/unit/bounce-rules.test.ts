import t from 'tap';
import { createClassifier, defaultRules } from '../../src/bounce/index.ts';
import type { Stage } from '../../src/bounce/normalize.ts';

/**
 * The default rules over replies as the big receivers document them (Google, Microsoft,
 * Yahoo/AOL, Apple, Orange, GoDaddy, Comcast, GMX/Web.de, Mimecast, Proofpoint) and blocklist
 * texts (Spamhaus, Barracuda, SpamCop, ...). Each rule's `source` in default-rules.yaml says where
 * its text comes from.
 */
const SAMPLES: readonly [reply: string, reason: string, stage?: Stage][] = [
 ['550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient\'s email address for typos or\n550 5.1.1 https://support.google.com/mail/?p=NoSuchUser', 'userunknown'],
 ['421-4.7.0 Our system has detected an unusual rate of unsolicited mail originating from your IP address.', 'blocked'],
 ['550-5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.', 'spamdetected'],
 ['550-5.7.26 Unauthenticated email from example.com is not accepted due to domain\'s DMARC policy.', 'authfailure'],
 ['550 5.7.27 Your email has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with SPF.', 'authfailure'],
 ['450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.', 'speeding'],
 ['550-5.2.1 The email account that you tried to reach is disabled.', 'suspend'],
 ['452-4.2.2 The email account that you tried to reach is over quota.', 'mailboxfull'],
 ['550-5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP.', 'requireptr'],
 ['550-5.7.1 This message is not RFC 5322 compliant because it has duplicate headers.', 'notcompliantrfc'],
 ['550 5.4.5 Daily user sending quota exceeded.', 'speeding'],
 ['550 5.7.606 Access denied, banned sending IP [1.2.3.4]. To request removal from this list please visit https://sender.office.com/', 'blocked'],
 ['550 5.7.1 Unfortunately, messages from [1.2.3.4] weren\'t sent. Please contact your Internet service provider since part of their network is on our block list (S3150).', 'blocked'],
 ['550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.', 'blocked'],
 ['550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains.', 'rejected'],
 ['451 4.7.650 The mail server [1.2.3.4] has been temporarily rate limited due to IP reputation. (S775)', 'badreputation'],
 ['550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).', 'userunknown', 'rcpt'],
 ['550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', 'userunknown'],
 ['552 5.2.2 mailbox full', 'mailboxfull'],
 ['550 5.7.1 Service unavailable, Client host [1.2.3.4] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/1.2.3.4 (AS3130)', 'blocked'],
 ['550 SC-001 (BAY004-MC4F3) Unfortunately, messages from 1.2.3.4 weren\'t sent. Please contact your Internet service provider since part of their network is on our block list.', 'badreputation'],
 ['550 DY-001 (SNT004-MC1F1) Unfortunately, messages from 1.2.3.4 weren\'t sent.', 'blocked'],
 ['550 5.7.515 Access denied, sending domain EXAMPLE.COM doesn\'t meet the required authentication level.', 'authfailure'],
 ['451 4.7.500 Server busy. Please try again later from [1.2.3.4]. (AS761)', 'systemerror'],
 ['421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', 'badreputation'],
 ['553 5.7.2 [TSS09] All messages from 1.2.3.4 will be permanently deferred; Retrying will NOT succeed.', 'blocked'],
 ['421 4.7.0 [TS01] Messages from 1.2.3.4 temporarily deferred due to user complaints', 'badreputation'],
 ['421 4.7.1 [TS03] All messages from 1.2.3.4 permanently deferred; Retrying will NOT succeed.', 'blocked'],
 ['553 5.7.1 [BL21] Connections will not be accepted from 1.2.3.4, because the ip is in Spamhaus\'s list', 'blocked'],
 ['554 delivery error: dd This user doesn\'t have a yahoo.com account (x@yahoo.com) [0] - mta1.mail.bf1.yahoo.com', 'userunknown'],
 ['552 1 Requested mail action aborted, mailbox full', 'mailboxfull'],
 ['554 5.7.9 Message not accepted for policy reasons. See https://senders.yahooinc.com/error-codes', 'policyviolation'],
 ['550 5.7.0 Blocked - see https://support.apple.com/en-us/HT204137', 'blocked'],
 ['550 5.1.1 unknown or illegal alias: x@icloud.com', 'userunknown'],
 ['552 5.2.2 <x@icloud.com>: user is over quota', 'mailboxfull'],
 ['554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137', 'policyviolation'],
 ['421 4.7.0 Messages to x@icloud.com deferred due to excessive volume. Try again later', 'speeding'],
 ['421 mwinf5c79 ME Service refuse. Veuillez essayer plus tard. OFR004_201 [201]', 'blocked'],
 ['550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]', 'userunknown'],
 ['552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]', 'mailboxfull'],
 ['421 mwinf5c79 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR005_104 [104]', 'toomanyconn'],
 ['554 p3plibsmtp01.prod.phx3.secureserver.net bizsmtp IB104 Connection refused. This IP address is listed on the Spamhaus Block List (SBL).', 'blocked'],
 ['552 5.2.0 This message has been rejected due to content judged to be spam by the internet community IB212', 'spamdetected'],
 ['421 Temporarily rejected. Reverse DNS for this IP failed. IB108', 'requireptr'],
 ['421 4.1.0 1.2.3.4 Throttled - try again later. Please see http://postmaster.comcast.net/smtp-error-codes.php#RL000001', 'speeding'],
 ['554 5.7.1 1.2.3.4 Comcast block for spam. Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000000', 'blocked'],
 ['550 5.1.1 <x@comcast.net> Not our Customer', 'userunknown'],
 ['554-gmx.net (mxgmx104) Nemesis ESMTP Service not available 554-No SMTP service 554-IP address is block listed. 554 For explanation visit https://postmaster.gmx.net/en/case?c=r0201', 'blocked'],
 ['550 Requested action not taken: mailbox unavailable', 'userunknown', 'rcpt'],
 ['552 Mailbox quota exceeded', 'mailboxfull'],
 ['550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550', 'userunknown', 'rcpt'],
 ['451 Internal resources are temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451', 'badreputation'],
 ['554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554', 'virusdetected'],
 ['550 Administrative prohibition - envelope blocked - https://community.mimecast.com/docs/DOC-1369#550', 'rejected'],
 ['421 Account service is temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#421', 'toomanyconn'],
 ['550 Rejected by header based Blocked Senders - block policy for Header From - https://community.mimecast.com/docs/DOC-1369#550', 'rejected'],
 ['554 5.7.1 Blocked by policy', 'policyviolation'],
 ['553 5.7.1 <x@example.com>... Relaying denied', 'norelaying'],
 ['521 5.7.1 Blocked - see https://ipcheck.proofpoint.com/?ip=1.2.3.4', 'blocked'],
 ['554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using b.barracudacentral.org; http://www.barracudanetworks.com/reputation/?pr=1&ip=1.2.3.4', 'blocked'],
 ['550 5.7.1 Rejected: 1.2.3.4 listed at bl.spamcop.net', 'blocked'],
 ['554 5.7.1 Client host rejected: cannot find your reverse hostname, [1.2.3.4]', 'requireptr'],
 ['550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table', 'userunknown'],
 ['554 5.7.1 <x@example.com>: Relay access denied', 'norelaying'],
 ['452 4.2.2 Quota exceeded', 'mailboxfull'],
 ['421 4.7.0 Too many connections from your host', 'toomanyconn'],
 ['450 4.7.1 Client host rejected: Please try again slower', 'speeding'],
 ['550 5.7.1 Sender address rejected: Domain not found', 'rejected'],
 ['550 5.7.23 The message was rejected because of Sender Policy Framework violation', 'authfailure'],
 ['554 5.6.0 Mail message is malformed. Not accepted.', 'notcompliantrfc'],
 ['550 5.7.1 Message rejected: virus detected (Eicar-Test-Signature)', 'virusdetected'],
 ['550 5.7.1 Your message was rejected because it appears to be spam', 'spamdetected'],
 ['500 5.5.1 Command unrecognized', 'syntaxerror'],
 ['451 4.3.0 Temporary local problem - please try later', 'systemerror'],
];

const classify = createClassifier(defaultRules());

t.test('documented provider replies get the documented reason', async (t) => {
  for (const [reply, reason, stage] of SAMPLES) {
    const got = classify({ text: reply, ...(stage ? { stage } : {}) });
    t.equal(got.reason, reason, `${reply.slice(0, 90)}${stage ? ` at ${stage}` : ''} → ${reason} (rule ${got.rule})`);
  }
});

t.test('documented 5xx rate limits are retried; 4xx deferrals too', async (t) => {
  t.match(classify({ text: '550 5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.' }), { reason: 'speeding', retry: true });
  t.match(classify({ text: '421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints' }), { reason: 'badreputation', retry: true, type: 'ignored' });
  t.match(classify({ text: '550 5.4.5 Daily user sending quota exceeded.' }), { reason: 'speeding', retry: false }, 'a daily quota is not worth retrying within the validity period');
});
