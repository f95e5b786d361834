import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import t from 'tap';
import { connectClient, connectFailure, stuffDots, type ConnectOptions } from '../../src/delivery/smtp-client.ts';

/**
 * A scripted SMTP server on loopback that speaks byte for byte what each test says, and keeps
 * everything the client sent, so the tests see the wire itself.
 */
interface Script {
  readonly greeting?: string | null;
  readonly ehlo?: string;
  /** A reply for a command line, or undefined for the default ("250 2.0.0 ok"). */
  readonly reply?: (line: string, socket: Socket) => string | undefined | null;
  readonly dataReply?: string;
  /** Answer the end of a message only after this many ms. */
  readonly dataDelay?: number;
}

async function scripted(script: Script): Promise<{ server: Server; port: number; wire: () => string; writes: string[] }> {
  const received: string[] = [];
  const writes: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    let buffer = '';
    let inData = false;
    if (script.greeting !== null) socket.write(`${script.greeting ?? '220 mx.test ESMTP'}\r\n`);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      const text = chunk.toString('latin1');
      received.push(text);
      buffer += text;
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end === -1) return;
          buffer = buffer.slice(end + 5);
          inData = false;
          const answer = `${script.dataReply ?? '250 2.0.0 queued'}\r\n`;
          if (script.dataDelay) setTimeout(() => socket.write(answer), script.dataDelay);
          else socket.write(answer);
          continue;
        }
        const nl = buffer.indexOf('\r\n');
        if (nl === -1) return;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        const custom = script.reply?.(line, socket);
        if (custom === null) continue;
        const verb = line.slice(0, 4).toUpperCase();
        const answer = custom ?? (verb === 'EHLO' ? (script.ehlo ?? '250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME') : verb === 'DATA' ? '354 go ahead' : verb === 'QUIT' ? '221 bye' : '250 2.0.0 ok');
        socket.write(`${answer}\r\n`);
        writes.push(answer);
        if (verb === 'DATA' && answer.startsWith('354')) inData = true;
        if (verb === 'QUIT') socket.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  }));
  const port = (server.address() as { port: number }).port;
  return { server, port, wire: () => received.join(''), writes };
}

const options = (port: number, overrides: Partial<ConnectOptions> = {}): ConnectOptions => ({
  host: '127.0.0.1',
  servername: 'mx.test',
  port,
  localName: 'tern.test',
  tls: 'opportunistic',
  timeouts: { connect: 1000, greeting: 300, command: 300 },
  ...overrides,
});

const envelope = { sender: 'news@example.com', recipients: ['a@b.test', 'c@b.test'], size: 30, eightBit: false };
const body = (...chunks: string[]) => Readable.from(chunks.map((c) => Buffer.from(c, 'latin1')), { objectMode: false });

t.test('with PIPELINING, a transaction is one write of commands and one of the message', async (t) => {
  const s = await scripted({});
  const conn = await connectClient(options(s.port));
  const result = await conn.send(envelope, body('Subject: x\r\n\r\n', 'hello\r\n'));
  t.match(result, { kind: 'transaction', healthy: true });
  t.same(result.kind === 'transaction' && result.replies.map((r) => r.code), [250, 250]);
  const wire = s.wire();
  t.match(wire, 'MAIL FROM:<news@example.com> SIZE=30\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\nDATA\r\n', 'MAIL, RCPTs and DATA went together');
  t.match(wire, 'Subject: x\r\n\r\nhello\r\n.\r\n', 'body and terminator went together');
  t.ok(await conn.reset(), 'RSET answered');
  conn.quit();
  t.ok(conn.closed);
});

t.test('without PIPELINING, commands wait for their replies, and DATA is skipped when no recipient is left', async (t) => {
  const s = await scripted({ ehlo: '250-mx.test\r\n250 8BITMIME', reply: (line) => (line.startsWith('RCPT') ? '550 5.1.1 no such user' : undefined) });
  const conn = await connectClient(options(s.port));
  const result = await conn.send(envelope, body('x\r\n'));
  t.match(result, { kind: 'transaction', healthy: true });
  t.same(result.kind === 'transaction' && result.replies.map((r) => [r.code, r.enhanced, r.command]), [[550, '5.1.1', 'RCPT'], [550, '5.1.1', 'RCPT']]);
  t.notMatch(s.wire(), 'DATA', 'no DATA for a transaction without recipients');
  t.notMatch(s.wire(), 'SIZE=', 'no SIZE parameter to a server without SIZE');
  conn.close();
});

t.test('one recipient refused: the other gets the DATA reply; the refused one keeps its own', async (t) => {
  const s = await scripted({ reply: (line) => (line.includes('<c@b.test>') ? '452 4.2.2 mailbox full' : undefined), dataReply: '250-2.0.0 queued\r\n250 2.0.0 as 42' });
  const conn = await connectClient(options(s.port));
  const result = await conn.send(envelope, body('x\r\n'));
  t.same(result.kind === 'transaction' && result.replies.map((r) => `${r.code} ${r.text}`), ['250 queued as 42', '452 mailbox full']);
  conn.close();
});

t.test('a refused MAIL or message refuses the message; 421 makes the connection unhealthy', async (t) => {
  const mail = await scripted({ reply: (line) => (line.startsWith('MAIL') ? '421 4.7.0 try later' : line.startsWith('RCPT') || line.startsWith('DATA') ? '503 5.5.1 no MAIL' : undefined) });
  const conn = await connectClient(options(mail.port));
  t.match(await conn.send(envelope, body('x\r\n')), { kind: 'message-refused', healthy: false, reply: { code: 421, command: 'MAIL' } });
  conn.close();
  const data = await scripted({ dataReply: '554 5.7.1 spam' });
  const conn2 = await connectClient(options(data.port));
  t.match(await conn2.send(envelope, body('x\r\n')), { kind: 'message-refused', healthy: true, reply: { code: 554, enhanced: '5.7.1', command: 'DATA' } });
  conn2.close();
});

t.test('dots at line starts are doubled, across chunk boundaries too, and a missing final CRLF is added', async (t) => {
  const s = await scripted({});
  const conn = await connectClient(options(s.port));
  await conn.send(envelope, body('.first\r\nmid\r\n', '.second\r\n..third\r\nlast'));
  t.match(s.wire(), '..first\r\nmid\r\n..second\r\n...third\r\nlast\r\n.\r\n');
  t.same(stuffDots(Buffer.from('a\r\n.b\r\n.'), false).toString(), 'a\r\n..b\r\n..');
  t.same(stuffDots(Buffer.from('.a'), false).toString(), '.a', 'not at a line start: left alone');
  conn.close();
});

t.test('a body that cannot be read aborts the connection instead of ending the message', async (t) => {
  const s = await scripted({});
  const conn = await connectClient(options(s.port));
  const broken = Readable.from((async function* () {
    yield Buffer.from('Subject: x\r\n\r\npart');
    throw new Error('disk says no');
  })(), { objectMode: false });
  const result = await conn.send(envelope, broken);
  t.match(result, { kind: 'message-refused', healthy: false, reply: { code: 451, origin: 'local', text: /disk says no/ } });
  t.notMatch(s.wire(), '\r\n.\r\n', 'the server never saw a terminator');
  t.ok(conn.closed);
});

t.test('EHLO refused: HELO; STARTTLS refused: plaintext', async (t) => {
  const s = await scripted({ ehlo: '502 5.5.2 what?', reply: (line) => (line.startsWith('HELO') ? '250 mx.test' : undefined) });
  const conn = await connectClient(options(s.port));
  t.match(await conn.send(envelope, body('x\r\n')), { kind: 'transaction' });
  t.match(s.wire(), /^EHLO tern\.test\r\nHELO tern\.test\r\n/);
  conn.close();
  const tls = await scripted({ ehlo: '250-mx.test\r\n250 STARTTLS', reply: (line) => (line === 'STARTTLS' ? '454 4.7.0 TLS not available' : undefined) });
  const conn2 = await connectClient(options(tls.port));
  t.equal(conn2.secure, false);
  t.match(await conn2.send(envelope, body('x\r\n')), { kind: 'transaction' });
  conn2.close();
});

t.test('connect failures become local replies', async (t) => {
  const silent = await scripted({ greeting: null });
  await t.rejects(connectClient(options(silent.port)), { code: 'ETIMEDOUT' });
  t.match(connectFailure(await connectClient(options(silent.port)).catch((e: unknown) => e)), { code: 451, enhanced: '4.4.2', text: 'timeout: Greeting never received', command: 'CONNECT', origin: 'local' });
  const busy = await scripted({ greeting: '554 5.7.1 go away' });
  t.match(connectFailure(await connectClient(options(busy.port)).catch((e: unknown) => e)), { code: 554, command: 'CONNECT', origin: 'remote' });
  const closed = await scripted({});
  const port = closed.port;
  await new Promise<void>((resolve) => closed.server.close(() => resolve()));
  t.match(connectFailure(await connectClient(options(port)).catch((e: unknown) => e)), { code: 451, enhanced: '4.4.1', text: /connection failed: connect ECONNREFUSED/ });
  const gibberish = await scripted({ greeting: 'hello there' });
  t.match(connectFailure(await connectClient(options(gibberish.port)).catch((e: unknown) => e)), { code: 451, text: /protocol error: not an SMTP reply/ });
});

t.test('a server that hangs up or stops answering mid-transaction yields a local reply', async (t) => {
  const drop = await scripted({ reply: (line, socket) => (line.startsWith('RCPT TO:<c') ? (socket.destroy(), null) : undefined) });
  const conn = await connectClient(options(drop.port));
  t.match(await conn.send(envelope, body('x\r\n')), { kind: 'message-refused', healthy: false, reply: { code: 451, enhanced: '4.4.2', text: /connection lost/, command: 'RCPT' } });
  t.ok(conn.closed, 'the pool can see the connection is gone');
  let muted = false;
  const mute = await scripted({ reply: (line) => ((muted ||= line.startsWith('MAIL')) ? null : undefined) });
  const conn2 = await connectClient(options(mute.port));
  t.match(await conn2.send(envelope, body('x\r\n')), { kind: 'message-refused', reply: { code: 451, text: /^timeout: no reply to MAIL within 300 ms/ } });
});

t.test('parameters: BODY=8BITMIME, SMTPUTF8 and DSN only where the server offers them', async (t) => {
  const s = await scripted({ ehlo: '250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN' });
  const conn = await connectClient(options(s.port));
  await conn.send({ sender: 'jürgen@example.com', recipients: ['a@b.test'], size: 3, eightBit: true, envid: 'id+1=2', ret: 'HDRS' }, body('x\r\n'));
  t.match(s.wire(), 'MAIL FROM:<jürgen@example.com> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3D2\r\n'.replace('ü', '\xc3\xbc'));
  conn.close();
});

t.test('a thousand pipelined recipients are fine; a reply to nothing is a protocol error', async (t) => {
  const many = Array.from({ length: 1500 }, (_, i) => `r${i}@b.test`);
  const s = await scripted({});
  const conn = await connectClient(options(s.port));
  const result = await conn.send({ ...envelope, recipients: many }, body('x\r\n'));
  t.match(result, { kind: 'transaction', healthy: true });
  t.equal(result.kind === 'transaction' && result.replies.filter((r) => r.code === 250).length, 1500);
  conn.close();
  const flood = await scripted({ reply: (line) => (line.startsWith('EHLO') ? `${'250 spam\r\n'.repeat(50)}250 mx.test` : undefined) });
  t.match(connectFailure(await connectClient(options(flood.port)).catch((e: unknown) => e)), { code: 451, text: /^protocol error: a reply to no command/ });
});

t.test('a failed TLS handshake is an ETLS connect error, so the pool can retry in plaintext', async (t) => {
  const s = await scripted({
    ehlo: '250-mx.test\r\n250 STARTTLS',
    reply: (line, socket) => {
      if (line !== 'STARTTLS') return undefined;
      socket.write('220 2.0.0 go ahead\r\n');
      socket.write('this is not a TLS server hello\r\n');
      return null;
    },
  });
  const err = await connectClient(options(s.port)).catch((e: unknown) => e);
  t.match(err, { code: 'ETLS' });
  t.match(connectFailure(err), { code: 451, enhanced: '4.7.5', text: /^TLS failure: /, command: 'STARTTLS', origin: 'local' });
  const plain = await connectClient(options(s.port, { tls: 'disabled' }));
  t.equal(plain.secure, false);
  t.notMatch(s.wire().split('EHLO').at(-1) ?? '', 'STARTTLS', 'no STARTTLS when TLS is disabled');
  plain.close();
});

t.test('a reply nobody asked for never shifts later replies onto the wrong command', async (t) => {
  // Two greetings: read naively, RCPT's 250 would answer DATA and the message "succeed" unsent.
  const twice = await scripted({ greeting: '220 mx.test ESMTP\r\n220 mx.test again' });
  t.match(connectFailure(await connectClient(options(twice.port)).catch((e: unknown) => e)), { code: 451, text: /^protocol error: a reply to no command/ });
  const data250 = await scripted({ reply: (line) => (line === 'DATA' ? '250 2.0.0 thanks' : undefined) });
  const conn = await connectClient(options(data250.port));
  const message = body('Subject: x\r\n\r\nunsent\r\n');
  t.match(await conn.send(envelope, message), { kind: 'message-refused', healthy: false, reply: { code: 451, text: /protocol error: a 250 reply to DATA/ } });
  t.notMatch(data250.wire(), 'unsent', 'the message was not sent after a 250 to DATA');
});

t.test('plaintext sent after the 220 to STARTTLS is refused, not read inside TLS', async (t) => {
  const s = await scripted({
    ehlo: '250-mx.test\r\n250 STARTTLS',
    reply: (line, socket) => (line === 'STARTTLS' ? (socket.write('220 ready\r\n250 injected\r\n'), null) : undefined),
  });
  const err = await connectClient(options(s.port)).catch((e: unknown) => e);
  t.match(err, { code: 'EPROTOCOL' }, 'not ETLS: no plaintext retry is invited');
  t.match(connectFailure(err), { code: 451, text: /^protocol error/ });
  const dropped = await scripted({ ehlo: '250-mx.test\r\n250 STARTTLS', reply: (line, socket) => (line === 'STARTTLS' ? (socket.destroy(), null) : undefined) });
  t.match(connectFailure(await connectClient(options(dropped.port)).catch((e: unknown) => e)), { code: 451, text: /^connection lost/, command: 'STARTTLS' }, 'a hang-up at STARTTLS fails the connect');
});

t.test('a body that is not sent is still closed (it may hold a spool file open)', async (t) => {
  const s = await scripted({ reply: (line) => (line.startsWith('RCPT') ? '550 5.1.1 no' : undefined) });
  const conn = await connectClient(options(s.port));
  const unsent = body('x\r\n');
  await conn.send(envelope, unsent);
  t.ok(unsent.destroyed);
  conn.close();
});

t.test('a server that stops reading the message is timed out, not waited on forever', async (t) => {
  const s = await scripted({ reply: (line, socket) => (line === 'DATA' ? (socket.pause(), '354 go ahead') : undefined) });
  const conn = await connectClient(options(s.port));
  const big = Readable.from((function* () {
    for (let i = 0; i < 400; i++) yield Buffer.alloc(64 * 1024, 0x61);
  })(), { objectMode: false });
  const started = Date.now();
  t.match(await conn.send(envelope, big), { kind: 'message-refused', healthy: false, reply: { code: 451, text: /^timeout: the server stopped reading the message for 300 ms/ } });
  t.ok(Date.now() - started < 5_000, 'within a few timeouts');
});

t.test('a slow local body is not blamed on the server, and the end of a message gets the data timeout', async (t) => {
  const s = await scripted({});
  const timeouts = { connect: 1000, greeting: 300, command: 300, data: 2000 };
  const conn = await connectClient(options(s.port, { timeouts }));
  const slow = Readable.from((async function* () {
    yield Buffer.from('Subject: x\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 600));
    yield Buffer.from('late\r\n');
  })(), { objectMode: false });
  t.match(await conn.send(envelope, slow), { kind: 'transaction', healthy: true }, 'a 600 ms pause in our own body, 300 ms command timeout');
  conn.close();
  const scanning = await scripted({ dataDelay: 700 });
  const conn2 = await connectClient(options(scanning.port, { timeouts }));
  t.match(await conn2.send(envelope, body('x\r\n')), { kind: 'transaction', healthy: true }, 'a final reply after 700 ms: past the command timeout, within the data timeout');
  t.match(await conn2.send(envelope, body('y\r\n')), { kind: 'transaction', healthy: true }, 'and the command timeout is back for the next transaction');
  conn2.close();
});

t.test('an idle server that says 421 and hangs up ends the connection', async (t) => {
  let socketOf: Socket | undefined;
  const s = await scripted({ reply: (line, socket) => ((socketOf = socket), undefined) });
  const conn = await connectClient(options(s.port));
  t.match(await conn.send(envelope, body('x\r\n')), { kind: 'transaction' });
  socketOf?.end('421 4.4.2 idle too long, closing\r\n');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.ok(conn.closed, 'the pool will not reuse it');
  t.match(await conn.send(envelope, body('x\r\n')), { kind: 'message-refused', healthy: false, reply: { code: 451, text: /^the server ended the session: "421 4\.4\.2 idle too long/ } });
});
