import { generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { SmtpServer, type SmtpHooks, type SmtpServerOptions } from '../../src/ingress/smtp-server.ts';
import { tempDir } from '../support/daemon.ts';
import { until } from '../support/smtp-client.ts';

/** What the data hook saw, per message. */
interface Seen { body: string; sizeExceeded: boolean; from: string; to: string[]; ret?: string; envid?: string; orcpt?: string; notify?: readonly string[]; secure: boolean; user?: string }

async function serve(t: { teardown(fn: () => unknown): void }, overrides: Partial<SmtpServerOptions> = {}, hooks: Partial<SmtpHooks> = {}): Promise<{ port: number; seen: Seen[]; server: SmtpServer }> {
  const seen: Seen[] = [];
  const server = new SmtpServer({ name: 'mx.test', banner: 'Tern', size: 1000, maxRecipients: 3, maxClients: 5, socketTimeout: 2000, authOffered: () => true, ...overrides }, {
    auth: (u, p) => (u === 'alice' && p === 's3cret' ? 'alice' : { code: 535, text: '5.7.8 Authentication credentials invalid' }),
    mailFrom: async () => undefined,
    rcptTo: (a) => (a.address.startsWith('bad') ? { code: 553, text: '5.1.3 Bad recipient' } : undefined),
    data: async (stream, session) => {
      const parts: Buffer[] = [];
      for await (const c of stream) parts.push(c as Buffer);
      const env = session.envelope;
      const rcpt = env.rcptTo[0];
      seen.push({
        body: Buffer.concat(parts).toString('latin1'), sizeExceeded: stream.sizeExceeded, from: env.mailFrom ? env.mailFrom.address : '?', to: env.rcptTo.map((r) => r.address),
        ...(env.dsn.ret ? { ret: env.dsn.ret } : {}), ...(env.dsn.envid ? { envid: env.dsn.envid } : {}),
        ...(rcpt?.dsn?.orcpt ? { orcpt: rcpt.dsn.orcpt } : {}), ...(rcpt?.dsn?.notify ? { notify: rcpt.dsn.notify } : {}),
        secure: session.secure, ...(session.user ? { user: session.user } : {}),
      });
      return stream.sizeExceeded ? { code: 552, text: '5.3.4 too big' } : '2.0.0 Ok: queued';
    },
    ...hooks,
  });
  await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  return { port: (server.server.address() as { port: number }).port, seen, server };
}

/**
 * A raw client: writes exactly the given pieces (each its own write, a tick apart) and gathers
 * every reply line until the server closes the session (after QUIT), or for `waitMs` at most.
 */
async function talk(port: number, pieces: (string | Buffer)[], waitMs = 300): Promise<string[]> {
  const socket = connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (c) => (text += c.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve) => socket.once('connect', resolve));
  for (const piece of pieces) {
    socket.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const quits = pieces.some((p) => p.toString().includes('QUIT'));
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, quits ? 5_000 : waitMs))]);
  socket.destroy();
  return text.split('\r\n').filter(Boolean);
}

const codes = (lines: string[]): string[] => lines.filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3));
const SESSION = 'EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\n';

t.test('a message split at every byte arrives whole, unstuffed, terminator found', async (t) => {
  const { port, seen } = await serve(t);
  const data = 'Subject: x\r\n\r\n..starts with a dot\r\nline\r\n..\r\n.\r\n';
  for (let cut = 1; cut < data.length; cut++) {
    const replies = await talk(port, [SESSION, data.slice(0, cut), data.slice(cut), 'QUIT\r\n']);
    t.same(codes(replies), ['220', '250', '250', '250', '354', '250', '221'], `cut at ${cut}`);
  }
  t.equal(seen.length, data.length - 1);
  t.ok(seen.every((m) => m.body === 'Subject: x\r\n\r\n.starts with a dot\r\nline\r\n.\r\n'), 'dot lines unstuffed, the CRLF before the terminator kept');
});

t.test('only CRLF.CRLF ends the message: bare LF or CR dots are content (no smuggling)', async (t) => {
  const { port, seen } = await serve(t);
  const replies = await talk(port, [SESSION, 'a\n.\nMAIL FROM:<evil@x.test>\r\nb\r.\rRCPT TO:<x@y.test>\r\nc\r\n.\r\n', 'QUIT\r\n']);
  t.same(codes(replies), ['220', '250', '250', '250', '354', '250', '221']);
  t.equal(seen.length, 1, 'one message, nothing smuggled');
  t.equal(seen[0]?.body, 'a\n.\nMAIL FROM:<evil@x.test>\r\nb\r.\rRCPT TO:<x@y.test>\r\nc\r\n');
});

t.test('an empty message, a lone ".\\r" line, and commands pipelined after the dot', async (t) => {
  const { port, seen } = await serve(t);
  const replies = await talk(port, ['EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\n', '.\rx\r\n.\r\nQUIT\r\n']);
  t.same(codes(replies), ['220', '250', '250', '250', '354', '250', '250', '250', '354', '250', '221']);
  t.same(seen.map((m) => m.body), ['', '\rx\r\n']);
});

t.test('commands out of order, bad syntax and limits get enhanced codes', async (t) => {
  const { port } = await serve(t);
  const replies = await talk(port, [
    'MAIL FROM:<a@b.test>\r\n', 'EHLO\r\n', 'EHLO c.test\r\n', 'RCPT TO:<r@d.test>\r\n', 'DATA\r\n', 'MAIL FROM:<a@b.test> SIZE=5000\r\n',
    'MAIL FROM:<a@b.test> FOO=1\r\n', 'MAIL FROM:<a@b.test> BODY=9BIT\r\n', 'MAIL FROM a@b.test\r\n', 'MAIL FROM:<a@b.test>\r\n', 'MAIL FROM:<a@b.test>\r\n',
    'DATA\r\n', 'RCPT TO:\r\n', 'RCPT TO:<bad@d.test>\r\n', 'RCPT TO:<r1@d.test> NOTIFY=NEVER,SUCCESS\r\n', 'RCPT TO:<r1@d.test>\r\n',
    'RCPT TO:<r2@d.test>\r\n', 'RCPT TO:<r3@d.test>\r\n', 'RCPT TO:<r4@d.test>\r\n', 'FROBNICATE\r\n', `NOOP ${'x'.repeat(5000)}\r\n`, 'VRFY x\r\n', 'RSET\r\n', 'DATA\r\n', 'NOOP\r\n', 'QUIT\r\n',
  ]);
  t.same(codes(replies), ['220', '503', '501', '250', '503', '503', '552', '555', '501', '501', '250', '503', '503', '501', '553', '501', '250', '250', '250', '452', '500', '500', '252', '250', '503', '250', '221']);
  t.match(replies.join('\n'), /552 5\.3\.4 /);
  t.match(replies.join('\n'), /452 4\.5\.3 /);
  t.match(replies.join('\n'), /500 5\.5\.2 Error: command not recognized/);
});

t.test('DSN, BODY and SMTPUTF8 parameters reach the envelope; xtext is decoded', async (t) => {
  const { port, seen } = await serve(t);
  await talk(port, ['EHLO c.test\r\nMAIL FROM:<a@b.test> RET=hdrs ENVID=id+2B1 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<r@d.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;r+40d.test\r\nDATA\r\n', 'x\r\n.\r\nQUIT\r\n']);
  t.match(seen[0], { ret: 'HDRS', envid: 'id+1', orcpt: 'rfc822;r@d.test', notify: ['FAILURE', 'DELAY'] });
});

t.test('an oversized message is read to the end and flagged; the session goes on', async (t) => {
  const { port, seen } = await serve(t);
  const replies = await talk(port, [SESSION, `${'y'.repeat(3000)}\r\n.\r\n`, 'NOOP\r\nQUIT\r\n']);
  t.same(codes(replies).slice(-3), ['552', '250', '221']);
  t.equal(seen[0]?.sizeExceeded, true);
});

t.test('a data hook that answers before the message ends is answered after the dot', async (t) => {
  const { port } = await serve(t, {}, { data: async () => ({ code: 452, text: '4.3.1 Insufficient system storage' }) });
  const replies = await talk(port, [SESSION, 'part one\r\n', 'part two\r\n.\r\nNOOP\r\nQUIT\r\n']);
  t.same(codes(replies), ['220', '250', '250', '250', '354', '452', '250', '221']);
});

t.test('pipelined commands wait for a slow hook, in order', async (t) => {
  const { port } = await serve(t, {}, { mailFrom: () => new Promise((resolve) => setTimeout(() => resolve(undefined), 50)) });
  const replies = await talk(port, [`EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n`], 300);
  t.same(codes(replies), ['220', '250', '250', '250', '354', '250', '221']);
});

t.test('AUTH PLAIN and LOGIN, cancel, wrong password; not offered or allowed when the policy says no', async (t) => {
  const { port } = await serve(t);
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const replies = await talk(port, [
    'EHLO c.test\r\n', `AUTH PLAIN ${b64('\0alice\0wrong')}\r\n`, 'AUTH PLAIN\r\n', '*\r\n', 'AUTH LOGIN\r\n', `${b64('alice')}\r\n`, `${b64('s3cret')}\r\n`, 'AUTH PLAIN x\r\n', 'QUIT\r\n',
  ]);
  t.same(codes(replies), ['220', '250', '535', '334', '501', '334', '334', '235', '503', '221']);
  t.match(replies.join('\n'), /250[ -]AUTH PLAIN LOGIN/);
  const closed = await serve(t, { authOffered: () => false });
  const refused = await talk(closed.port, ['EHLO c.test\r\n', `AUTH PLAIN ${b64('\0alice\0s3cret')}\r\n`, 'QUIT\r\n']);
  t.notMatch(refused.slice(0, 8).join('\n'), /AUTH PLAIN LOGIN/, 'not advertised');
  t.same(codes(refused), ['220', '250', '503', '221']);
});

t.test('idle clients time out with 421; past max clients a connection gets 421', async (t) => {
  const { port } = await serve(t, { socketTimeout: 100, maxClients: 1 });
  const holder = connect(port, '127.0.0.1');
  holder.on('error', () => undefined);
  await new Promise((resolve) => holder.once('connect', resolve));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const second = await talk(port, [], 30);
  t.match(second[0], /^421 4\.3\.2 .*Too many connected clients/);
  const idle: string[] = [];
  holder.on('data', (c) => idle.push(...c.toString('latin1').split('\r\n').filter(Boolean)));
  await new Promise((resolve) => holder.once('close', resolve));
  t.match(idle.at(-1), /^421 4\.4\.2 .*timeout/);
});

t.test('close(): an idle session is told 421 at once; a busy one after its transaction', async (t) => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const { port, server } = await serve(t, {}, { data: async (stream) => { for await (const _ of stream) void _; await gate; return '2.0.0 Ok'; } });
  const open = (): { socket: Socket; lines: string[]; closed: Promise<unknown> } => {
    const socket = connect(port, '127.0.0.1');
    const lines: string[] = [];
    socket.on('data', (c) => lines.push(...c.toString('latin1').split('\r\n').filter(Boolean)));
    socket.on('error', () => undefined);
    return { socket, lines, closed: new Promise((resolve) => socket.once('close', resolve)) };
  };
  const idle = open();
  const busy = open();
  await new Promise((resolve) => setTimeout(resolve, 30));
  busy.socket.write(`${SESSION}x\r\n.\r\n`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const closing = server.close();
  await idle.closed;
  t.match(idle.lines.at(-1), /^421 4\.3\.2 /);
  release();
  await busy.closed;
  t.same(codes(busy.lines).slice(-2), ['250', '421'], 'the message is answered, then the session closed');
  await closing;
});

t.test('STARTTLS: commands pipelined after it are discarded; the session restarts under TLS', async (t) => {
  const dir = tempDir('tern-tls-');
  t.teardown(() => dir.remove());
  const key = join(dir.path, 'k.pem');
  writeFileSync(key, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const cert = join(dir.path, 'c.pem');
  execFileSync('openssl', ['req', '-new', '-x509', '-key', key, '-out', cert, '-days', '1', '-subj', '/CN=mx.test']);
  const { port, seen } = await serve(t, { tls: { key: readFileSync(key), cert: readFileSync(cert) } });
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let plain = '';
  const onPlain = (c: Buffer): void => {
    plain += c.toString('latin1');
  };
  socket.on('data', onPlain);
  await until(() => plain.includes('220 mx.test'), 5_000, 'the greeting');
  socket.write('EHLO c.test\r\n');
  await until(() => /\r\n250 [^\r\n]*\r\n$/.test(plain), 5_000, 'the EHLO reply');
  t.match(plain, /250-STARTTLS/);
  socket.write('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n');
  await until(() => plain.includes('Ready to start TLS'), 5_000, 'the STARTTLS reply');
  // A plaintext reply to the injected MAIL would follow the 220 and break the handshake below.
  t.match(plain, /220 2\.0\.0 Ready to start TLS\r\n$/, 'no reply to the injected command');
  socket.off('data', onPlain);
  const secure = tlsConnect({ socket, rejectUnauthorized: false });
  await new Promise((resolve) => secure.once('secureConnect', resolve));
  let text = '';
  secure.on('data', (c) => (text += c.toString('latin1')));
  secure.write(`EHLO c.test\r\nRCPT TO:<r@d.test>\r\n`);
  await until(() => /503 /.test(text), 5_000, 'the reply to RCPT');
  t.match(text, /503 5\.5\.1 Error: need MAIL command/, 'the injected MAIL never happened');
  t.notMatch(text, /STARTTLS/, 'STARTTLS is not offered again');
  secure.write(`MAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\n`);
  await until(() => text.includes('354 '), 5_000, 'the DATA go-ahead');
  secure.write('over tls\r\n.\r\n');
  await until(() => seen[0], 5_000, 'the message');
  t.match(seen[0], { body: 'over tls\r\n', secure: true, from: 'a@b.test' });
  secure.destroy();
});

t.test('a client that drops mid-DATA ends the message stream, never the process', async (t) => {
  let closedEarly = false;
  const { port } = await serve(t, {}, {
    data: async (stream) => {
      await new Promise((resolve) => stream.once('close', resolve));
      closedEarly = !stream.readableEnded;
      return '2.0.0 unused';
    },
  });
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(`${SESSION}half a message`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(closedEarly, 'the hook saw a premature close');
  t.same(codes(await talk(port, ['QUIT\r\n'])), ['220', '221'], 'still serving');
});

t.test('abuse: over-long lines split across writes, error floods, AUTH guessing, throwing hooks, unread replies', async (t) => {
  const { port } = await serve(t, {}, { rcptTo: (a) => { if (a.address.startsWith('boom')) throw new Error('hook bug'); return undefined; } });
  const long = await talk(port, [`NOOP ${'x'.repeat(4200)}`, `${'y'.repeat(100)}RSET\r\n`, 'QUIT\r\n']);
  t.same(codes(long), ['220', '500', '221'], 'the tail of an over-long line is not a command');
  const scan = await talk(port, Array.from({ length: 22 }, (_, i) => `BOGUS${i}\r\n`));
  t.same(codes(scan).slice(-2), ['500', '421'], 'error_limit (20) errors end the session');
  t.equal(codes(scan).filter((c) => c === '500').length, 20);
  const b64 = Buffer.from('\0alice\0wrong').toString('base64');
  const guess = await talk(port, ['EHLO c.test\r\n', ...Array.from({ length: 5 }, () => `AUTH PLAIN ${b64}\r\n`)]);
  t.same(codes(guess).slice(1), ['250', '535', '535', '535', '421'], 'three failed AUTHs end the session');
  const thrown = await talk(port, ['EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<boom@d.test>\r\nQUIT\r\n']);
  t.same(codes(thrown), ['220', '250', '250', '451', '221'], 'a throwing hook is a 451');
  const flood = connect(port, '127.0.0.1');
  flood.on('error', () => undefined);
  await new Promise((resolve) => flood.once('connect', resolve));
  flood.pause();
  // EHLO, not NOOP: NOOPs past junk_command_limit count as errors and would end the session first.
  flood.write('EHLO c.test\r\n'.repeat(1_000_000));
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.ok(flood.writableLength > 1_000_000, `the server stopped reading a client that reads no replies (${flood.writableLength} bytes still queued)`);
  flood.destroy();
});

t.test('a reader whose data listener throws is cut off; the client still gets an answer', async (t) => {
  const { port } = await serve(t, {}, {
    data: (stream) => new Promise((resolve) => {
      stream.on('data', () => {
        throw new Error('reader bug');
      });
      stream.once('close', () => resolve({ code: 451, text: '4.3.0 reader failed' }));
    }),
  });
  t.same(codes(await talk(port, [SESSION, 'x\r\n.\r\nQUIT\r\n'])), ['220', '250', '250', '250', '354', '451', '221']);
});

t.test('a reader that starts late and throws on buffered data is cut off too', async (t) => {
  // Data that arrived before the reader listened is buffered, and Readable emits it from
  // process.nextTick, outside the push() that received it.
  const { port } = await serve(t, {}, {
    data: (stream) => new Promise((resolve) => {
      stream.once('close', () => resolve({ code: 451, text: '4.3.0 reader failed' }));
      setTimeout(() => stream.on('data', () => {
        throw new Error('late reader bug');
      }), 50);
    }),
  });
  t.same(codes(await talk(port, [SESSION, 'x\r\n'.repeat(100), '.\r\nQUIT\r\n'])), ['220', '250', '250', '250', '354', '451', '221']);
});

t.test('reusePort: a second listener of this process may share the address (shards, ADR 0010); without it the address is taken', async (t) => {
  const options = { name: 'mx.test', banner: 'Tern', size: 1000, maxRecipients: 3, maxClients: 5, socketTimeout: 2000, authOffered: () => true };
  const hooks = { auth: () => 'x', mailFrom: async () => undefined, rcptTo: () => undefined, data: async () => '2.0.0 Ok' };
  const first = new SmtpServer(options, hooks);
  await first.listen(0, '127.0.0.1', true);
  t.teardown(() => first.close());
  const port = (first.server.address() as { port: number }).port;
  const shared = new SmtpServer(options, hooks);
  await shared.listen(port, '127.0.0.1', true);
  t.teardown(() => shared.close());
  t.equal((shared.server.address() as { port: number }).port, port, 'both listen on one port');
  await t.rejects(new SmtpServer(options, hooks).listen(port, '127.0.0.1'), { code: 'EADDRINUSE' }, 'a listener that did not ask to share is refused');
});
