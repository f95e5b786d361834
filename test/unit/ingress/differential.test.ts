import { SMTPServer } from 'smtp-server';
import t from 'tap';
import { postfixMissing, startPostfix } from '../../support/postfix.ts';
import { Client, listener } from './hostile-listener.ts';

/**
 * The same hostile sessions, replayed against Tern's listener and against smtp-server (the
 * library Tern replaced, kept as an oracle): where the two should agree, the class of every reply
 * (2, 3, 4 or 5) must be the same. Where Tern is deliberately stricter, the case says so and the
 * test holds Tern to the stricter answer.
 */
const SIZE = 100_000;

async function oracle(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const server = new SMTPServer({
    name: 'mx.test', size: SIZE, hideDSN: false, hide8BITMIME: false, hideSMTPUTF8: false, authOptional: true, allowInsecureAuth: true, disabledCommands: ['STARTTLS'], logger: false,
    onAuth: (auth, _session, done) => (auth.username === 'alice' && auth.password === 's3cret' ? done(null, { user: 'alice' }) : done(new Error('Authentication credentials invalid'))),
    onData: (stream, _session, done) => {
      stream.on('data', () => undefined);
      stream.on('end', () => done());
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.server.address() as { port: number }).port;
}

/** Each command's reply class, in order; `null` for a line sent without waiting (DATA content). */
async function replay(port: number, lines: readonly (string | { raw: string })[]): Promise<string[]> {
  const client = await Client.open(port);
  const classes: string[] = [];
  for (const line of lines) {
    if (typeof line !== 'string') {
      client.write(line.raw);
      continue;
    }
    const reply = await client.command(line);
    classes.push(reply[0] as string);
  }
  client.destroy();
  return classes;
}

const ehlo = 'EHLO client.test';
const mail = 'MAIL FROM:<a@b.test>';
const rcpt = 'RCPT TO:<c@d.test>';

/** Sessions where RFC 5321 leaves no room: both servers must answer alike. */
const agree: Record<string, (string | { raw: string })[]> = {
  'a clean transaction': [ehlo, mail, rcpt, 'DATA', '\r\nhello\r\n.', 'QUIT'],
  'RCPT before MAIL': [ehlo, rcpt],
  'DATA before MAIL, DATA before RCPT': [ehlo, 'DATA', mail, 'DATA'],
  'nested MAIL': [ehlo, mail, mail],
  'SIZE over the limit': [ehlo, `MAIL FROM:<a@b.test> SIZE=${SIZE * 10}`],
  'an unknown command': [ehlo, 'XYZZY'],
  'a bad BODY value': [ehlo, 'MAIL FROM:<a@b.test> BODY=9BIT'],
  'a bad NOTIFY value': [ehlo, mail, 'RCPT TO:<c@d.test> NOTIFY=SOMETIMES'],
  'NEVER with another NOTIFY keyword': [ehlo, mail, 'RCPT TO:<c@d.test> NOTIFY=NEVER,SUCCESS'],
  'a bad RET value': [ehlo, 'MAIL FROM:<a@b.test> RET=ALL'],
  'MAIL with no address at all': [ehlo, 'MAIL FROM:'],
  'RCPT with an empty address': [ehlo, mail, 'RCPT TO:<>'],
  'NOOP, RSET, then a fresh transaction': [ehlo, mail, 'NOOP', 'RSET', rcpt, mail, rcpt],
  'AUTH with a bad mechanism': [ehlo, 'AUTH CRAM-SHA9'],
  'AUTH PLAIN with a wrong password': [ehlo, `AUTH PLAIN ${Buffer.from('\0alice\0nope').toString('base64')}`],
  'AUTH PLAIN with the right one': [ehlo, `AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`, mail],
  'an address with a control character': [ehlo, 'MAIL FROM:<a\x01b@b.test>', mail, 'RCPT TO:<c\x00d@d.test>'],
  'HELO then MAIL': ['HELO client.test', mail, rcpt],
  'EHLO resets a transaction': [ehlo, mail, ehlo, rcpt],
};

/** Sessions where Tern is stricter on purpose (docs/security.md): [session, Tern's classes, why]. */
const stricter: Record<string, [(string | { raw: string })[], string[], string]> = {
  'AUTH during a transaction': [[ehlo, mail, `AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`], ['2', '2', '5'], 'RFC 4954 §4: AUTH is not permitted during a mail transaction (503 5.5.1)'],
  'a NUL in the message': [[ehlo, mail, rcpt, 'DATA', { raw: 'Subject: x\r\n\r\nA\0B\r\n' }, '.'], ['2', '2', '2', '3', '5'], 'NUL is no text, even under 8BITMIME (550 5.6.0)'],
  'a line over 998 octets': [[ehlo, mail, rcpt, 'DATA', { raw: `Subject: x\r\n\r\n${'y'.repeat(1200)}\r\n` }, '.'], ['2', '2', '2', '3', '5'], 'RFC 5322 §2.1.1 (550 5.6.0)'],
};

t.test('hostile sessions: Tern and smtp-server answer alike where RFC 5321 leaves no choice', async (t) => {
  const tern = await listener(t, { size: SIZE, maxRecipients: 100 });
  const library = await oracle(t);
  for (const [name, session] of Object.entries(agree)) {
    const [ours, theirs] = [await replay(tern.port, session), await replay(library, session)];
    t.same(ours, theirs, `${name}: ${ours.join(' ')}`);
  }
});

t.test('where Tern is stricter than smtp-server, it is on purpose', async (t) => {
  const tern = await listener(t, { size: SIZE, maxRecipients: 100 });
  const library = await oracle(t);
  for (const [name, [session, expected, why]] of Object.entries(stricter)) {
    const [ours, theirs] = [await replay(tern.port, session), await replay(library, session)];
    t.same(ours, expected, `${name}: Tern ${ours.join(' ')}, smtp-server ${theirs.join(' ')} — ${why}`);
    t.notSame(ours, theirs, `${name}: smtp-server lets it through, Tern does not`);
  }
});

/** Sessions of `agree` that need AUTH, which this Postfix instance does not offer (no SASL). */
const needsAuth = (name: string): boolean => name.startsWith('AUTH');
/** Sessions of `agree` where Postfix 3.7 is looser than Tern and smtp-server, and why Tern is not. */
const postfixLooser: Record<string, string> = {
  'an address with a control character': 'Postfix takes MAIL FROM:<a\\x01b@b.test>; Tern refuses control characters in addresses (553 5.1.3, issue 16): they must not reach a receiver or a log',
};

t.test("hostile sessions: Tern and Postfix's smtpd answer alike too", { skip: postfixMissing() ?? false }, async (t) => {
  const tern = await listener(t, { size: SIZE, maxRecipients: 100 });
  const postfix = await startPostfix([`message_size_limit = ${SIZE}`, 'smtpd_discard_ehlo_keywords = chunking, silent-discard']);
  t.teardown(() => postfix.stop());
  for (const [name, session] of Object.entries(agree)) {
    if (needsAuth(name)) continue;
    const [ours, theirs] = [await replay(tern.port, session), await replay(postfix.port, session)];
    const looser = postfixLooser[name];
    if (looser) t.notSame(ours, theirs, `${name}: Tern ${ours.join(' ')}, Postfix ${theirs.join(' ')} — ${looser}`);
    else t.same(ours, theirs, `${name}: ${ours.join(' ')}`);
  }
  for (const [name, [session, expected, why]] of Object.entries(stricter)) {
    if (needsAuth(name)) continue;
    const [ours, theirs] = [await replay(tern.port, session), await replay(postfix.port, session)];
    t.same(ours, expected, `${name}: Tern ${ours.join(' ')}, Postfix ${theirs.join(' ')} — ${why}`);
  }
});
