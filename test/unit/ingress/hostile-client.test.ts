/**
 * Issue 16, at the listener: each finding of the attacker's test replayed over loopback against
 * Tern's SmtpServer, asserting what the client sees and what reaches the data hook.
 */
import t from 'tap';
import { DEFAULT_LIMITS } from '../../../src/ingress/smtp-server.ts';
import { Client, listener, manualClock } from './hostile-listener.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

t.test('addresses with control characters or unbalanced brackets get 553 5.1.3; nothing is echoed raw', async (t) => {
  const { port } = await listener(t);
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  for (const bad of ['<a\x00@example.com>', '<a\x01@example.com>', '<a@exa\x7fmple.com>', '<a@b.test', 'a@b.test>', '<<a@b.test>>', '<a@b.test>x', `<${'a'.repeat(300)}@b.test>`]) {
    t.match(await c.command(`MAIL FROM:${bad}`), /^553 5\.1\.3 /, `MAIL FROM:${JSON.stringify(bad)}`);
  }
  t.match(await c.command('MAIL FROM:<a@b.test>'), /^250 /);
  t.match(await c.command('RCPT TO:<r\x00@example.com>'), /^553 5\.1\.3 /, 'RCPT with NUL');
  t.match(await c.command('RCPT TO:<r@example.com\x1b[31m>'), /^553 5\.1\.3 /, 'RCPT with an escape sequence');
  const echoed = await c.command(`RCPT TO:<r@d.test> X${'\x01'.repeat(3)}${'Y'.repeat(500)}`);
  t.match(echoed, /^(501|555) 5\.5\.4 /, 'a parameter with control characters is refused');
  const unsupported = await c.command(`RCPT TO:<r@d.test> ${'Z'.repeat(500)}=1`);
  t.match(unsupported, /^555 5\.5\.4 Error: unsupported parameter Z+\.\.\.$/);
  t.ok(unsupported.length < 200, `the echoed name is capped (${unsupported.length} characters)`);
  t.notOk(c.lines.some((l) => CONTROL.test(l)), 'no reply line carries a control character');
  t.ok(c.lines.every((l) => l.length < 300), 'no reply line echoes a long address back');
  c.destroy();
});

t.test('an EHLO name with control characters is refused (it would reach the Received header)', async (t) => {
  const { port } = await listener(t);
  const c = await Client.open(port);
  t.match(await c.command('EHLO evil\x00.test'), /^501 5\.5\.4 /);
  t.match(await c.command('EHLO good.test'), /^250 /);
  c.destroy();
});

t.test(`40 bad MAIL FROM in a row: ${DEFAULT_LIMITS.errorLimit} refusals, then 421 4.7.0 and the session is closed`, async (t) => {
  const { port } = await listener(t);
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  c.write('MAIL FROM:<a\x00@example.com>\r\n'.repeat(40));
  await c.untilClosed();
  t.equal(c.codes().filter((code) => code === '553').length, DEFAULT_LIMITS.errorLimit, 'answered up to error_limit');
  t.match(c.replies().at(-1), /^421 4\.7\.0 .*Too many errors/);
  t.equal(c.replies().length, 1 + 1 + DEFAULT_LIMITS.errorLimit + 1, 'greeting, EHLO, the refusals, 421: nothing after');
});

t.test('every kind of error counts: syntax, sequence, parameters, unknown commands, hook refusals', async (t) => {
  const { port } = await listener(t, { limits: { errorLimit: 6 } }, { rcptTo: () => ({ code: 550, text: '5.1.1 no such user' }) });
  const c = await Client.open(port);
  for (const line of ['MAIL FROM:<a@b.test>', 'EHLO c.test', 'MAIL FROM a@b.test', 'MAIL FROM:<a@b.test> FOO=1', 'MAIL FROM:<a@b.test>', 'RCPT TO:<r@d.test>', 'DATA', 'BOGUS']) {
    await c.command(line);
  }
  await c.untilClosed();
  t.same(c.codes(), ['220', '503', '250', '501', '555', '250', '550', '503', '500', '421'], 'six errors, then 421');
  t.match(c.replies().at(-1), /^421 4\.7\.0 /);
});

t.test(`a NOOP drip: past junk_command_limit each NOOP is an error, and the session ends with 421`, async (t) => {
  const { port } = await listener(t);
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  const allowed = DEFAULT_LIMITS.junkCommandLimit + DEFAULT_LIMITS.errorLimit;
  for (let i = 0; i < allowed + 5 && !c.closed; i++) await c.command(i % 2 === 0 ? 'NOOP' : 'RSET');
  await c.untilClosed();
  t.equal(c.codes().filter((code) => code === '250').length - 1, allowed, `${allowed} NOOP/RSET answered (100 free, then 20 counted)`);
  t.match(c.replies().at(-1), /^421 4\.7\.0 .*Too many errors/);
});

t.test('a delivered message starts the counts again (a long-lived client that RSETs between messages is fine)', async (t) => {
  const { port, delivered } = await listener(t, { limits: { junkCommandLimit: 3, errorLimit: 2 } });
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 4; i++) t.match(await c.command('RSET'), /^250 /);
    await c.command('MAIL FROM:<a@b.test>');
    await c.command('RCPT TO:<r@d.test>');
    await c.command('DATA');
    t.match(await c.command('hello\r\n.'), /^250 /);
  }
  t.equal(delivered.length, 3);
  t.notOk(c.closed, 'still open after 12 RSETs');
  c.destroy();
});

t.test('recipients past max_recipients: 452, and past the overshoot limit each is an error', async (t) => {
  const { port } = await listener(t, { maxRecipients: 2, limits: { recipientOvershootLimit: 3, errorLimit: 2 } });
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  await c.command('MAIL FROM:<a@b.test>');
  for (let i = 0; i < 10 && !c.closed; i++) await c.command(`RCPT TO:<r${i}@d.test>`);
  await c.untilClosed();
  t.same(c.codes().slice(2), ['250', '250', '250', '452', '452', '452', '452', '452', '421'], '2 accepted, 3 overshoots free, 2 counted');
});

t.test('concurrent sessions per client address: over the limit 421 4.7.0, and a slot frees when one leaves', async (t) => {
  const { port } = await listener(t, { limits: { clientConnectionLimit: 2 } });
  const first = await Client.open(port);
  const second = await Client.open(port);
  const third = await Client.open(port);
  await third.untilClosed();
  t.match(third.lines[0], /^421 4\.7\.0 mx\.test Too many connections from your address$/);
  t.match(first.lines[0], /^220 /);
  first.destroy();
  let fourth = await Client.open(port);
  for (const until = Date.now() + 5_000; fourth.lines[0]?.startsWith('421') && Date.now() < until;) fourth = await Client.open(port);
  t.match(fourth.lines[0], /^220 /, 'admitted once the first left');
  second.destroy();
  fourth.destroy();
});

t.test('clients the policy trusts (allow_networks) are exempt from the per-address limits', async (t) => {
  const { port } = await listener(t, { limits: { clientConnectionLimit: 1 }, exemptFromClientLimits: () => true });
  const clients = [await Client.open(port), await Client.open(port), await Client.open(port)];
  t.ok(clients.every((c) => c.lines[0]?.startsWith('220 ')), 'all three admitted');
  for (const c of clients) c.destroy();
});

t.test('connection rate per client address: past the rate 421 4.7.0 until the minute has passed', async (t) => {
  const clock = manualClock();
  const { port } = await listener(t, { now: clock.now, limits: { clientConnectionRate: 3 } });
  for (let i = 0; i < 3; i++) {
    const c = await Client.open(port);
    t.match(c.lines[0], /^220 /, `connection ${i + 1}`);
    c.destroy();
  }
  const refused = await Client.open(port);
  await refused.untilClosed();
  t.match(refused.lines[0], /^421 4\.7\.0 .*Too many connections from your address, try again later/);
  clock.advance(30_000);
  const stillRefused = await Client.open(port);
  t.match(stillRefused.lines[0], /^421 4\.7\.0 /, 'half a minute later, still refused');
  clock.advance(31_000);
  const admitted = await Client.open(port);
  t.match(admitted.lines[0], /^220 /, 'a minute after the first, admitted');
  admitted.destroy();
});

t.test('failed AUTH is counted per client address across sessions; the address is locked out for the window', async (t) => {
  const clock = manualClock();
  const { port } = await listener(t, { now: clock.now, limits: { authFailureLimit: 4, authFailureWindow: 600_000 } });
  const fail = async (): Promise<Client> => {
    const c = await Client.open(port);
    await c.command('EHLO c.test');
    t.match(await c.command(`AUTH PLAIN ${b64('\0alice\0wrong')}`), /^535 5\.7\.8 /);
    t.match(await c.command(`AUTH PLAIN ${b64('\0alice\0guess')}`), /^535 5\.7\.8 /);
    return c;
  };
  (await fail()).destroy();
  (await fail()).destroy();
  const locked = await Client.open(port);
  await locked.command('EHLO c.test');
  t.match(await locked.command(`AUTH PLAIN ${b64('\0alice\0s3cret')}`), /^421 4\.7\.0 .*Too many failed authentications/, 'even the right password is refused');
  await locked.untilClosed();
  clock.advance(600_001);
  const later = await Client.open(port);
  await later.command('EHLO c.test');
  t.match(await later.command(`AUTH PLAIN ${b64('\0alice\0s3cret')}`), /^235 2\.7\.0 /, 'after the window, AUTH works again');
  later.destroy();
});

t.test('an AUTH hook that answers later (a password hash) holds pipelined commands until it does', async (t) => {
  const { port } = await listener(t, {}, { auth: (u, p) => new Promise((resolve) => setImmediate(() => resolve(u === 'alice' && p === 's3cret' ? 'alice' : { code: 535, text: '5.7.8 no' }))) });
  const c = await Client.open(port);
  c.write(`EHLO c.test\r\nAUTH PLAIN ${b64('\0alice\0s3cret')}\r\nMAIL FROM:<a@b.test>\r\n`);
  await c.waitFor(() => c.replies().length >= 4, 'three replies');
  t.same(c.codes(), ['220', '250', '235', '250']);
  c.destroy();
});

t.test('session_deadline ends even a busy, well-behaved session with 421 4.4.2', async (t) => {
  const { port } = await listener(t, { limits: { sessionDeadline: 300 } });
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  const started = Date.now();
  // EHLO: neither junk nor an error, so only the deadline can end this.
  while (!c.closed && Date.now() - started < 5_000) await c.command('EHLO c.test');
  await c.untilClosed();
  t.match(c.replies().at(-1), /^421 4\.4\.2 mx\.test Error: session time limit exceeded$/);
});

t.test('data_deadline ends a DATA phase that never finishes: 421 4.4.2, nothing delivered', async (t) => {
  const { port, delivered } = await listener(t, { limits: { dataDeadline: 300 } });
  const c = await Client.open(port);
  for (const line of ['EHLO c.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<r@d.test>', 'DATA']) await c.command(line);
  // Half a message, then nothing: the idle timer (10 s here) would take far longer.
  c.write('Subject: slow\r\n\r\nhalf a bo');
  await c.untilClosed();
  t.match(c.replies().at(-1), /^421 4\.4\.2 mx\.test Error: DATA time limit exceeded$/);
  t.equal(delivered.length, 0);
});

t.test(`DATA lines: ${DEFAULT_LIMITS.lineLength} octets pass, one more is refused after the dot; the session goes on`, async (t) => {
  const { port, delivered } = await listener(t);
  const send = async (c: Client, body: string): Promise<string> => {
    for (const line of ['MAIL FROM:<a@b.test>', 'RCPT TO:<r@d.test>', 'DATA']) await c.command(line);
    return c.command(`${body}\r\n.`);
  };
  const c = await Client.open(port);
  await c.command('EHLO c.test');
  const max = 'x'.repeat(DEFAULT_LIMITS.lineLength);
  t.match(await send(c, max), /^250 /, 'a line of exactly the limit');
  t.match(await send(c, `.${max}`), /^250 /, 'a stuffed dot does not count');
  t.match(await send(c, `a\n${max}\nb`), /^250 /, 'bare LF lines measured alone');
  t.match(await send(c, `${max}x`), /^550 5\.6\.0 Message has a line longer than 998 octets$/);
  t.match(await send(c, `ok\r\n${'y'.repeat(100_000)}\r\nmore`), /^550 5\.6\.0 /, 'a long line split over many segments');
  t.match(await c.command('NOOP'), /^250 /, 'the session goes on');
  t.same(delivered.map((d) => d.refusal === undefined), [true, true, true, false, false]);
  t.equal(delivered[3]?.body.length, 0, 'nothing of a refused message reaches the hook');
  c.destroy();
});

t.test('NUL in DATA is refused, and "\\r\\n\\0.\\r\\n" is never a terminator', async (t) => {
  const { port, delivered } = await listener(t);
  const c = await Client.open(port);
  for (const line of ['EHLO c.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<r@d.test>', 'DATA']) await c.command(line);
  c.write('Subject: x\r\n\r\nA\r\n\0.\r\nMAIL FROM:<evil@x.test>\r\nB\r\n.\r\n');
  await c.waitFor(() => c.replies().length >= 6, 'the answer to the message');
  t.match(c.replies().at(-1), /^550 5\.6\.0 Message contains a NUL octet$/);
  t.equal(delivered.length, 1, 'one message: the NUL-dot line did not end it');
  t.match(await c.command('RCPT TO:<x@y.test>'), /^503 /, 'the smuggled MAIL was message content, never a command');
  c.destroy();
});
