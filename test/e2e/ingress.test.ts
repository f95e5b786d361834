import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import t from 'tap';
import { tempDir } from '../support/daemon.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { ternsInWorld } from '../support/terns.ts';

const setup = ternsInWorld(t);
const tern = setup.tern;

function receivedBy(rcpt: string) {
  const found = setup.world.sinks.get('127.0.0.2')!.received.filter((m) => m.rcptTo.includes(rcpt));
  return found.length > 0 && found;
}

async function session(port: number): Promise<RawSmtp> {
  const { client } = await RawSmtp.open(port);
  await client.command('EHLO client.test');
  return client;
}

t.test('SIZE is advertised and enforced', async (t) => {
  const d = await tern({ smtp: { max_message_size: '100KB' } });
  const { client } = await RawSmtp.open(d.smtpPort);
  t.match(await client.command('EHLO client.test'), /250[ -]SIZE 100000/);
  t.match(await client.command('MAIL FROM:<a@campaign.test> SIZE=200000'), /^552 5\.3\.4 /, 'declared size over the limit');
  client.close();
  const big = message({ body: `${'x'.repeat(998)}\r\n`.repeat(120) });
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['big@a.test'], big), /^552 5\.3\.4 Message size exceeds/);
  t.equal(setup.world.sinks.get('127.0.0.2')!.received.filter((m) => m.rcptTo.includes('big@a.test')).length, 0);
});

t.test('max_recipients answers 452 4.5.3 past the limit', async (t) => {
  const d = await tern({ smtp: { max_recipients: 2 } });
  const c = await session(d.smtpPort);
  await c.command('MAIL FROM:<a@campaign.test>');
  t.match(await c.command('RCPT TO:<r1@a.test>'), /^250 /);
  t.match(await c.command('RCPT TO:<r2@a.test>'), /^250 /);
  t.match(await c.command('RCPT TO:<r3@a.test>'), /^452 4\.5\.3 /);
  c.close();
});

t.test('bad addresses and commands get clear errors with enhanced codes', async (t) => {
  const d = await tern();
  const c = await session(d.smtpPort);
  t.match(await c.command('MAIL FROM:<not an address>'), /^(501|553) 5\.1\.7 /);
  t.match(await c.command('MAIL FROM:<ok@campaign.test>'), /^250 2\.1\.0 /);
  t.match(await c.command('RCPT TO:<no-domain>'), /^(501|553) 5\.1\.3 /);
  t.match(await c.command('RCPT TO:<x@[127.0.0.1]>'), /^553 5\.1\.3 .*address literals/);
  t.match(await c.command('RCPT TO:<x@-bad-.test>'), /^(501|553) 5\.1\.3 /);
  t.match(await c.command('RCPT TO:'), /^501 /);
  t.match(await c.command('FROBNICATE'), /^500 5\.5\.2 /);
  t.match(await c.command('DATA'), /^503 /, 'DATA without a valid recipient');
  c.close();
});

t.test('broken X-Tern-Meta is refused at DATA with 554 5.6.0', async (t) => {
  const d = await tern();
  const cases: [string, RegExp][] = [
    ['X-Tern-Meta: {"campaign": ', /^554 5\.6\.0 X-Tern-Meta is not valid JSON/],
    ['X-Tern-Meta: [1,2]', /^554 5\.6\.0 X-Tern-Meta must be a JSON object/],
    ['X-Tern-Meta: {"validity":"soon"}', /^554 5\.6\.0 X-Tern-Meta "validity" must be a duration/],
  ];
  for (const [header, expected] of cases) {
    t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['meta@a.test'], message({ headers: [header] })), expected, header);
  }
  const twice = message({ headers: ['X-Tern-Meta: {}', 'X-Tern-Meta: {}'] });
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['meta@a.test'], twice), /^554 5\.6\.0 X-Tern-Meta appears more than once/);
  const folded = message({ headers: ['X-Tern-Meta: {"campaign":', ' "c1", "validity": "2h"}'] });
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['folded@a.test'], folded), /^250 /, 'a folded header is unfolded before parsing');
});

t.test('bare LF line endings are normalised to CRLF before the message is stored', async (t) => {
  const d = await tern();
  const c = await session(d.smtpPort);
  await c.command('MAIL FROM:<a@campaign.test>');
  await c.command('RCPT TO:<barelf@a.test>');
  await c.command('DATA');
  // "\n.\n" is not the end of DATA (that would be SMTP smuggling); only CRLF.CRLF is.
  t.match(await c.data('From: a@campaign.test\nSubject: bare\n\nline one\n.\nline two\n\r\n.\r\n'), /^250 /);
  c.close();
  const [got] = await until(() => receivedBy('barelf@a.test'));
  const text = got!.data.toString('latin1');
  t.notMatch(text, /[^\r]\n/, 'no bare LF left');
  t.match(text, /Subject: bare\r\n\r\nline one\r\n\.\r\nline two\r\n\r\n$/);
});

t.test('clients outside allow_networks must authenticate: no open relay', async (t) => {
  const d = await tern({ smtp: { allow_networks: ['192.0.2.0/24'] } });
  const c = await session(d.smtpPort);
  t.match(await c.command('MAIL FROM:<a@campaign.test>'), /^530 5\.7\.0 Authentication required/);
  t.match(await c.command('RCPT TO:<x@a.test>'), /^(503|530) /);
  c.close();
});

t.test('AUTH is offered only after STARTTLS and then allows relaying', async (t) => {
  const keys = tempDir('tern-tls-');
  setup.keep(keys);
  const key = join(keys.path, 'tls.key');
  const cert = join(keys.path, 'tls.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=tern.test'], { stdio: 'ignore' });
  const d = await tern({ smtp: { allow_networks: ['192.0.2.0/24'], tls: { cert, key }, auth: { users: [{ username: 'campaign', password: 's3cret' }] } } });
  const { client, greeting } = await RawSmtp.open(d.smtpPort);
  void greeting;
  const ehlo = await client.command('EHLO client.test');
  t.match(ehlo, /STARTTLS/);
  t.notMatch(ehlo, /AUTH/, 'no AUTH before TLS');
  t.match(await client.command('AUTH PLAIN AGNhbXBhaWduAHMzY3JldA=='), /^5\d\d /, 'AUTH refused in plaintext');
  client.close();

  const send = (password: string) => new Promise<string>((resolve) => {
    const conn = new SMTPConnection({ host: '127.0.0.1', port: d.smtpPort, tls: { rejectUnauthorized: false }, requireTLS: true, logger: false });
    conn.on('error', (err) => resolve(`error ${err.message}`));
    conn.connect(() => {
      conn.login({ user: 'campaign', pass: password }, (err) => {
        if (err) {
          conn.close();
          return resolve(`login ${err.message}`);
        }
        conn.send({ from: 'a@campaign.test', to: ['authed@a.test'] }, message({ to: 'authed@a.test' }), (e, info) => {
          conn.quit();
          resolve(e ? `send ${e.message}` : info.response);
        });
      });
    });
  });
  t.match(await send('wrong'), /535 5\.7\.8/);
  t.match(await send('s3cret'), /^250 2\.0\.0 Ok: queued as /);
  const [got] = await until(() => receivedBy('authed@a.test'));
  t.match(got!.data.toString(), /with ESMTPSA id /, 'the Received header records TLS and AUTH');
});

t.test('low disk space answers 452 4.3.1 before DATA', async (t) => {
  const d = await tern({ spool: { min_free: '1000TB' } });
  const c = await session(d.smtpPort);
  t.match(await c.command('MAIL FROM:<a@campaign.test>'), /^452 4\.3\.1 Insufficient system storage/);
  c.close();
});

t.test('a client that leaves mid-DATA: nothing is stored, and it is not taken for a spool failure', async (t) => {
  const d = await tern();
  const socket = connect({ port: d.smtpPort, host: '127.0.0.1' });
  let seen = '';
  socket.on('data', (b: Buffer) => (seen += b.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write('EHLO client.test\r\nMAIL FROM:<a@campaign.test>\r\nRCPT TO:<gone@a.test>\r\nDATA\r\n');
  await until(() => seen.includes('354 '), 5_000, 'the 354');
  socket.write('Subject: half\r\n\r\nthe first half of a body');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  await until(() => d.logs.some((l) => /client left during DATA/.test(l.msg)), 5_000, 'the departure logged');
  t.notOk(d.logs.some((l) => /spool write failed/.test(l.msg)), 'not logged as a storage failure');
  await d.stop();
  t.same(readdirSync(join(d.spoolDir, 'seg')).filter((f) => f.endsWith('.log')), [], 'no segment was written');
});

t.test('a spool write failure answers 452 4.3.1 and loses nothing silently', async (t) => {
  const d = await tern();
  // Replace the spool's folders with plain files: creating a segment or message file now fails (ENOTDIR).
  const folders = [join(d.spoolDir, 'seg'), join(d.spoolDir, 'msg')];
  for (const dir of folders) {
    rmSync(dir, { recursive: true });
    writeFileSync(dir, 'not a directory');
  }
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['diskfail@a.test'], message()), /^452 4\.3\.1 /);
  for (const dir of folders) {
    rmSync(dir);
    mkdirSync(dir);
  }
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['diskfail@a.test'], message()), /^250 /, 'accepting again once the disk is back');
  t.ok(d.logs.some((l) => /spool unavailable|spool write failed|spool commit failed/.test(l.msg)), 'the failure is logged');
});
