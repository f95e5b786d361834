/**
 * Issue 16, end to end: the real daemon (spool, DKIM-less relay) between a hostile client and a
 * loopback sink, asserting what is relayed on the wire and what the client is told.
 */
import { Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../src/cli/index.ts';
import { tempDir } from '../support/daemon.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { ternsInWorld } from '../support/terns.ts';

const setup = ternsInWorld(t);
const tern = setup.tern;

const relayedTo = (rcpt: string) => setup.world.sinks.get('127.0.0.2')!.received.filter((m) => m.rcptTo.includes(rcpt));

/** One transaction with the body sent exactly as given (no stuffing, no CRLF fixing). */
async function sendRaw(port: number, rcpt: string, raw: string): Promise<string> {
  const { client } = await RawSmtp.open(port);
  try {
    for (const line of ['EHLO client.test', 'MAIL FROM:<a@campaign.test>', `RCPT TO:<${rcpt}>`, 'DATA']) await client.command(line);
    return await client.data(raw);
  } finally {
    client.close();
  }
}

t.test('bare CR is relayed as CRLF: "A\\r.\\r\\n" cannot end DATA at a receiver that honours bare CR', async (t) => {
  const d = await tern();
  t.match(await sendRaw(d.smtpPort, 'barecr@a.test', 'Subject: cr\r\n\r\nA\r.\rMAIL FROM:<evil@x.test>\rB\r.\r\nC\r\n.\r\n'), /^250 /);
  const [got] = await until(() => { const m = relayedTo('barecr@a.test'); return m.length > 0 && m; });
  const text = got!.data.toString('latin1');
  t.notMatch(text, /\r(?!\n)/, 'no bare CR reached the receiver');
  t.match(text, /Subject: cr\r\n\r\nA\r\n\.\r\nMAIL FROM:<evil@x\.test>\r\nB\r\n\.\r\nC\r\n$/, 'the whole message, its dot lines stuffed on the wire and unstuffed by the sink');
});

t.test('NUL in DATA: 550 5.6.0, nothing relayed, and "\\r\\n\\0.\\r\\n" never ended the message', async (t) => {
  const d = await tern();
  const { client } = await RawSmtp.open(d.smtpPort);
  for (const line of ['EHLO client.test', 'MAIL FROM:<a@campaign.test>', 'RCPT TO:<nul@a.test>', 'DATA']) await client.command(line);
  t.match(await client.data('Subject: nul\r\n\r\nA\r\n\0.\r\nRCPT TO:<smuggled@a.test>\r\nB\r\n.\r\n'), /^550 5\.6\.0 Message contains a NUL octet/);
  t.match(await client.command('NOOP'), /^250 /, 'exactly one answer for the message; the session goes on');
  client.close();
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['after-nul@a.test'], message()), /^250 /);
  await until(() => relayedTo('after-nul@a.test').length > 0);
  t.equal(relayedTo('nul@a.test').length + relayedTo('smuggled@a.test').length, 0, 'nothing of it relayed');
});

t.test('a line over smtp.limits.line_length: 550 5.6.0 after the dot, nothing relayed', async (t) => {
  const d = await tern({ smtp: { limits: { line_length: 200 } } });
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['long@a.test'], message({ body: `${'x'.repeat(201)}\r\n` })), /^550 5\.6\.0 Message has a line longer than 200 octets/);
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['fits@a.test'], message({ body: `${'x'.repeat(200)}\r\n` })), /^250 /);
  await until(() => relayedTo('fits@a.test').length > 0);
  t.equal(relayedTo('long@a.test').length, 0);
});

t.test('a header block over smtp.limits.header_size: 554 5.6.0', async (t) => {
  const d = await tern({ smtp: { limits: { header_size: '2KB' } } });
  const big = message({ headers: Array.from({ length: 40 }, (_, i) => `X-Filler-${i}: ${'h'.repeat(60)}`) });
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['bighead@a.test'], big), /^554 5\.6\.0 Message refused: header section larger than 2000 bytes/);
  t.match(await sendMail(d.smtpPort, 'a@campaign.test', ['smallhead@a.test'], message()), /^250 /);
});

t.test('refusals from the policy quote addresses sanitised and capped', async (t) => {
  const d = await tern();
  const { client } = await RawSmtp.open(d.smtpPort);
  await client.command('EHLO client.test');
  const long = `no-domain-${'x'.repeat(200)}`;
  const mail = await client.command(`MAIL FROM:<${long}>`);
  t.match(mail, /^553 5\.1\.7 Bad sender address <no-domain-x+\.\.\.>/);
  t.ok(mail.length < 250, `capped (${mail.length} characters)`);
  t.match(await client.command('MAIL FROM:<a\x01@campaign.test>'), /^553 5\.1\.3 Error: malformed address: control character$/);
  client.close();
});

t.test('tern auth hash → smtp.auth.users[].password → AUTH works; check-config warns of plaintext', async (t) => {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env: {}, cwd: process.cwd() };
  t.equal(await run(['auth', 'hash'], { ...io, stdin: Readable.from(['correct horse\n']) }), 0);
  const hash = out[0] as string;
  t.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/);
  const d = await tern({ smtp: { allow_networks: ['192.0.2.0/24'], auth: { allow_insecure: true, users: [{ username: 'campaign', password: hash }, { username: 'legacy', password: 'plain' }] } } });
  const login = async (user: string, password: string): Promise<string> => {
    const { client } = await RawSmtp.open(d.smtpPort);
    await client.command('EHLO client.test');
    const reply = await client.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
    client.close();
    return reply;
  };
  t.match(await login('campaign', 'correct horse'), /^235 2\.7\.0 /, 'the hashed password');
  t.match(await login('campaign', 'wrong horse'), /^535 5\.7\.8 /);
  t.match(await login('campaign', hash), /^535 5\.7\.8 /, 'the hash itself is not a password');
  t.match(await login('legacy', 'plain'), /^235 /, 'plaintext still accepted');

  const dir = tempDir();
  setup.keep(dir);
  const config = join(dir.path, 'tern.yaml');
  writeFileSync(config, `smtp:\n  auth:\n    users:\n      - { username: campaign, password: "${hash}" }\n      - { username: legacy, password: plain }\n`);
  err.length = 0;
  t.equal(await run(['check-config', '--config', config], io), 0);
  t.same(err, ['warning: smtp.auth.users[1].password: plaintext password for "legacy"; store a hash from `tern auth hash` instead']);
  writeFileSync(config, 'smtp:\n  auth:\n    users:\n      - { username: campaign, password: "$scrypt$garbage" }\n');
  t.equal(await run(['check-config', '--config', config], io), 1, 'a malformed hash is a config error');
});
