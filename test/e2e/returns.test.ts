import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import t from 'tap';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * Asynchronous bounces (docs/bounces.md): Tern sends with a signed VERP return path; a receiver
 * that said 250 later sends a DSN to it, and the webhook gets `delivered` then `failed` with
 * `async: true`, the campaign's KPIs move from delivered to failed; a complaint becomes a
 * `complaint` event and suppresses the address; a forged return path is refused at RCPT. The
 * bounce listener offers STARTTLS with smtp.tls's certificate, as receivers sending DSNs expect.
 */
let world: World;
let tern: RunningTern;
const spool = tempDir();
const keys = tempDir('tern-tls-');
const webhook = new WebhookReceiver('returns');
const DOMAIN = 'bounces.tern.test';

t.before(async () => {
  world = await startWorld();
  const [key, cert] = [join(keys.path, 'tls.key'), join(keys.path, 'tls.crt')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=tern.test'], { stdio: 'ignore' });
  tern = await startTern(testConfig({
    smtp: { tls: { cert, key } },
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
    bounce: { domain: DOMAIN, listen: ['127.0.0.1:0'], secret: 'returns-secret-0123456789' },
    suppression: { enabled: true },
    feedback: { webhook: { url: await webhook.start(), secret: 'returns', max_wait: '20ms' } },
  }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  await webhook.stop();
  spool.remove();
  keys.remove();
});

const returnsPort = (): number => (tern.daemon.returnsAddresses()[0] as { port: number }).port;
const events = (recipient: string, type: string) => webhook.acknowledged.filter((e) => e.recipient === recipient && e.type === type);

/** Send one message and wait for its delivery; the return path the receiver saw. */
async function delivered(to: string, campaign: string): Promise<string> {
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [to], message({ to, headers: [`X-Tern-Meta: {"campaign":"${campaign}"}`] })), /^250 /);
  await until(() => events(to, 'delivered').length === 1, 10_000, `${to} delivered`);
  const got = [...world.sinks.values()].flatMap((s) => s.received).find((m) => m.rcptTo.includes(to));
  return got?.mailFrom ?? '';
}

const dsn = (to: string, returnPath: string) => [
  'From: Mail Delivery System <MAILER-DAEMON@mx1.a.test>',
  `To: ${returnPath}`,
  'Subject: Undelivered Mail Returned to Sender',
  'MIME-Version: 1.0',
  'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain',
  '',
  `<${to}>: host mx1.a.test said: 550 5.1.1 User unknown (in reply to RCPT TO command)`,
  '',
  '--b1',
  'Content-Type: message/delivery-status',
  '',
  'Reporting-MTA: dns; mx1.a.test',
  '',
  `Final-Recipient: rfc822; ${to}`,
  'Action: failed',
  'Status: 5.1.1',
  'Diagnostic-Code: smtp; 550 5.1.1 User unknown',
  '',
  '--b1--',
  '',
].join('\r\n');

const arf = (to: string, returnPath: string) => [
  'From: feedback@fbl.a.test',
  `To: ${returnPath}`,
  'Subject: complaint',
  'MIME-Version: 1.0',
  'Content-Type: multipart/report; report-type=feedback-report; boundary="b2"',
  '',
  '--b2',
  'Content-Type: text/plain',
  '',
  'This is an abuse report.',
  '',
  '--b2',
  'Content-Type: message/feedback-report',
  '',
  'Feedback-Type: abuse',
  'Version: 1',
  `Original-Rcpt-To: ${to}`,
  '',
  '--b2--',
  '',
].join('\r\n');

t.test('a DSN after the 250: delivered, then failed with async: true, and the KPIs move', async (t) => {
  const returnPath = await delivered('later@a.test', 'c-async');
  t.match(returnPath, /^bounce\+[0-9A-Z]{26}\.0\.[0-9a-f]{12}@bounces\.tern\.test$/, 'the receiver saw a signed VERP return path');
  t.match(await sendMail(returnsPort(), '', [returnPath], dsn('later@a.test', returnPath)), /^250 2\.0\.0 Ok: returned message received/);
  const failed = await until(() => events('later@a.test', 'failed')[0], 10_000, 'the async failed event');
  t.match(failed, { async: true, cause: 'bounce', status: 'failed', meta: { campaign: 'c-async' }, response: { code: 550, enhanced: '5.1.1', text: /User unknown/ }, bounce: { reason: 'userunknown', type: 'hard', failure: 'User unknown' } });
  t.not(failed.id, events('later@a.test', 'delivered')[0]?.id, 'an id of its own: a receiver that drops duplicates keeps both');
  const kpis = await until(async () => {
    const k = (await (await adminFetch(tern.adminPort, '/api/v1/campaigns/c-async')).json()) as { delivered: number; failed: { total: number } };
    return k.failed.total === 1 && k;
  }, 5_000, 'the KPIs');
  t.match(kpis, { relayed: 1, delivered: 0, failed: { total: 1, hard: 1 }, in_progress: 0 });
});

t.test('a complaint: a complaint event, counted in the KPIs, and the address suppressed', async (t) => {
  const returnPath = await delivered('complainer@a.test', 'c-fbl');
  t.match(await sendMail(returnsPort(), '', [returnPath], arf('complainer@a.test', returnPath)), /^250 /);
  const complaint = await until(() => events('complainer@a.test', 'complaint')[0], 10_000, 'the complaint event');
  t.match(complaint, { status: 'sent', feedback_type: 'abuse', meta: { campaign: 'c-fbl' } });
  t.match(await (await adminFetch(tern.adminPort, '/api/v1/campaigns/c-fbl')).json(), { delivered: 1, complaints: 1 });
  const { client } = await RawSmtp.open(tern.smtpPort);
  await client.command('EHLO client.test');
  await client.command('MAIL FROM:<news@campaign.test>');
  t.match(await client.command('RCPT TO:<complainer@a.test>'), /^550 5\.7\.1 Recipient <complainer@a\.test> is suppressed for campaign\.test/);
  client.close();
});

t.test('a forged return path is refused at RCPT, and counted', async (t) => {
  const returnPath = await delivered('forged@a.test', 'c-forged');
  const forged = returnPath.replace(/\.[0-9a-f]{12}@/, '.000000000000@');
  t.match(await sendMail(returnsPort(), '', [forged], dsn('forged@a.test', forged)), /^550 5\.1\.1 No such return address/);
  t.match(await sendMail(returnsPort(), '', ['someone@a.test'], dsn('forged@a.test', 'x')), /^550 5\.1\.1 /, 'another domain too');
  const metrics = await (await adminFetch(tern.adminPort, '/metrics')).text();
  t.match(metrics, /^tern_returns_total\{result="forged"\} 2$/m);
  t.match(metrics, /^tern_returns_total\{result="failed"\} 1$/m);
  t.match(metrics, /^tern_returns_total\{result="complaint"\} 1$/m);
  t.same(events('forged@a.test', 'failed'), [], 'no event');
});

/** Microsoft's JMRP: no feedback-report part, the complainer in the returned original's headers. */
const jmrp = (to: string, returnPath: string) => [
  'From: staff@hotmail.com',
  `To: ${returnPath}`,
  'Subject: complaint about message from 192.0.2.222',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b3"',
  '',
  '--b3',
  'Content-Type: message/rfc822',
  'Content-Disposition: inline',
  '',
  `X-HmXmrOriginalRecipient: ${to}`,
  `To: ${to}`,
  'From: news@campaign.test',
  'Subject: Our news',
  '',
  'Hello.',
  '',
  '--b3--',
  '',
].join('\r\n');

/** One message over STARTTLS (certificate not checked: a sender of DSNs rarely does). */
function sendOverTls(port: number, to: string, body: string): Promise<{ secure: boolean; response: string }> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({ host: '127.0.0.1', port, requireTLS: true, tls: { rejectUnauthorized: false }, logger: false });
    conn.once('error', reject);
    conn.connect(() => conn.send({ from: '', to: [to] }, body, (err, info) => {
      const secure = conn.secure;
      conn.quit();
      if (err) reject(err);
      else resolve({ secure, response: info.response });
    }));
  });
}

t.test('the bounce listener offers STARTTLS; a complaint in Microsoft\'s JMRP format, sent over it, is a complaint', async (t) => {
  const { client } = await RawSmtp.open(returnsPort());
  t.match(await client.command('EHLO mx.hotmail.test'), /250[ -]STARTTLS/, 'STARTTLS offered with smtp.tls');
  client.close();
  const returnPath = await delivered('jmrp@a.test', 'c-jmrp');
  const sent = await sendOverTls(returnsPort(), returnPath, jmrp('jmrp@a.test', returnPath));
  t.match(sent, { secure: true, response: /^250 2\.0\.0 Ok: returned message received/ });
  const complaint = await until(() => events('jmrp@a.test', 'complaint')[0], 10_000, 'the complaint event');
  t.match(complaint, { status: 'sent', feedback_type: 'abuse', meta: { campaign: 'c-jmrp' } });
});
