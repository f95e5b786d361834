import { spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import t from 'tap';
import { ConnectError, connectClient, connectFailure, type ConnectOptions } from '../../../src/delivery/smtp-client.ts';
import { MAX_REPLY_BYTES, MAX_REPLY_LINE, MAX_REPLY_LINES } from '../../../src/delivery/limits.ts';

/**
 * Receivers that do not play fair, on loopback: raw sockets that say what each test says, when
 * it says. The client must give up within its limits (memory) and deadlines (time), with a local
 * reply that says why, and never fall back to plaintext where TLS is required.
 */
type Handler = (socket: Socket, line: string) => void;

interface Hostile { readonly port: number; readonly connections: () => number }

/** A server that greets (unless told not to) and hands each command line to `onLine`. */
async function hostile(onLine: Handler, { greet = true, onConnect }: { greet?: boolean; onConnect?: (s: Socket) => void } = {}): Promise<Hostile> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    if (greet) socket.write('220 mx.hostile.test ESMTP\r\n');
    onConnect?.(socket);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      for (let nl = buffer.indexOf('\r\n'); nl !== -1; nl = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        onLine(socket, line);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as { port: number }).port, connections: () => connections };
}

/** EHLO answered with `ehlo`, everything else the usual way. */
const polite = (ehlo = '250-mx.hostile.test\r\n250 PIPELINING'): Handler => (socket, line) => {
  const verb = line.slice(0, 4).toUpperCase();
  socket.write(verb === 'EHLO' ? `${ehlo}\r\n` : verb === 'DATA' ? '354 go\r\n' : verb === 'QUIT' ? '221 bye\r\n' : '250 ok\r\n');
};

const options = (port: number, overrides: Partial<ConnectOptions> = {}): ConnectOptions => ({
  host: '127.0.0.1', servername: 'mx.hostile.test', port, localName: 'tern.test', tls: 'may',
  timeouts: { connect: 1000, greeting: 1000, command: 1000, data: 1000 },
  ...overrides,
});

const failure = (opts: ConnectOptions): Promise<unknown> => connectClient(opts).then((c) => (c.close(), 'connected'), (e: unknown) => e);

/**
 * Writes `chunk` for as long as the client reads (paced by 'drain'), up to `ceiling` bytes; resolves
 * with the bytes written when the client hangs up, or the ceiling if it never does.
 */
function flood(socket: Socket, chunk: Buffer, ceiling: number): Promise<number> {
  return new Promise((resolve) => {
    let written = 0;
    let done = false;
    const finish = (): void => {
      if (!done) resolve(written);
      done = true;
    };
    socket.once('close', finish);
    const pump = (): void => {
      while (!done && !socket.destroyed && written < ceiling) {
        written += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
      if (written >= ceiling) finish();
    };
    pump();
  });
}

/** Writes `text` one byte every `everyMs`, until done or the socket closes. */
function drip(socket: Socket, text: string, everyMs: number): void {
  let at = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || at >= text.length) return clearInterval(timer);
    socket.write(text[at++] as string);
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
}

t.test('an endless 250- continuation ends the connection at the line cap; what the server could write is bounded', async (t) => {
  const CEILING = 256 * 1024 * 1024;
  let written: Promise<number> | undefined;
  const line = Buffer.from('250-this reply goes on and on\r\n'.repeat(512));
  const s = await hostile((socket, l) => {
    if (l.startsWith('EHLO')) written = flood(socket, line, CEILING);
  });
  const started = Date.now();
  const err = await failure(options(s.port));
  t.ok(err instanceof ConnectError, 'a typed error');
  t.match(err, { code: 'EOVERFLOW' }, 'its own code: a flood, not a garbled reply');
  t.match(connectFailure(err), { code: 451, enhanced: '4.4.2', origin: 'local', command: 'EHLO', text: `reply overflow: a reply longer than ${MAX_REPLY_LINES} lines` });
  const bytes = await (written as Promise<number>);
  // Kernel socket buffers on both ends hold a few MiB; a client that kept reading would take all 256.
  t.ok(bytes < 64 * 1024 * 1024, `the client hung up after the server wrote ${bytes} bytes`);
  t.ok(Date.now() - started < 1000, 'at once, not at a deadline');
});

t.test('a reply of long lines ends at the byte cap, long before the line cap', async (t) => {
  const long = `250-${'x'.repeat(MAX_REPLY_LINE - 10)}\r\n`;
  const s = await hostile((socket, l) => {
    if (l.startsWith('EHLO')) socket.write(long.repeat(Math.ceil(MAX_REPLY_BYTES / long.length) + 2));
  });
  const err = await failure(options(s.port));
  t.match(err, { code: 'EOVERFLOW' });
  t.match(connectFailure(err), { code: 451, text: `reply overflow: a reply longer than ${MAX_REPLY_BYTES} bytes` });
});

t.test('one reply line past the line cap, with or without its newline, ends the connection', async (t) => {
  const oversized = `250 ${'y'.repeat(MAX_REPLY_LINE)}`;
  for (const [name, text] of [['complete', `${oversized}\r\n`], ['never ended', oversized]] as const) {
    const s = await hostile((socket, l) => {
      if (l.startsWith('EHLO')) socket.write(text);
    });
    const err = await failure(options(s.port));
    t.match(err, { code: 'EOVERFLOW' }, name);
    t.match(connectFailure(err), { code: 451, command: 'EHLO', text: `reply overflow: a reply line longer than ${MAX_REPLY_LINE} bytes` }, name);
  }
  const fits = await hostile(polite(`250-mx.hostile.test\r\n250 ${'z'.repeat(MAX_REPLY_LINE - 10)}`));
  const conn = await connectClient(options(fits.port));
  t.notOk(conn.closed, 'a line just under the cap is fine');
  conn.close();
});

t.test('a greeting dripped a byte every 200 ms fails at the greeting deadline, not at an idle timeout', async (t) => {
  const s = await hostile(polite(), { greet: false, onConnect: (socket) => drip(socket, '220 mx.hostile.test ESMTP at your service\r\n', 200) });
  const started = Date.now();
  const err = await failure(options(s.port, { timeouts: { connect: 1000, greeting: 1000, command: 1000 } }));
  const took = Date.now() - started;
  t.match(err, { code: 'ETIMEDOUT', event: 'greeting-timeout' });
  t.match(connectFailure(err), { code: 451, enhanced: '4.4.2', command: 'CONNECT', text: 'timeout: Greeting never received within 1000 ms' });
  t.ok(took >= 900 && took < 3000, `gave up at the deadline (${took} ms)`);
});

t.test('a command reply dripped a byte at a time misses its deadline; so does the reply to the end of the message', async (t) => {
  const ehlo = await hostile((socket, l) => (l.startsWith('EHLO') ? drip(socket, '250-mx.hostile.test\r\n250 PIPELINING\r\n', 150) : polite()(socket, l)));
  t.match(connectFailure(await failure(options(ehlo.port))), { code: 451, command: 'EHLO', text: 'timeout: no reply to EHLO within 1000 ms' });
  let inData = false;
  const data = await hostile((socket, l) => {
    if (inData) {
      if (l === '.') drip(socket, '250 2.0.0 queued as 12345, thank you for your patience\r\n', 150);
      return;
    }
    inData = l === 'DATA';
    polite()(socket, l);
  });
  const conn = await connectClient(options(data.port));
  const started = Date.now();
  const result = await conn.send({ sender: 'a@b.test', recipients: ['c@d.test'], size: 3, eightBit: false }, Readable.from([Buffer.from('x\r\n')]));
  t.match(result, { kind: 'message-refused', healthy: false, reply: { code: 451, command: 'DATA', text: 'timeout: no reply to DATA within 1000 ms' } });
  t.ok(Date.now() - started < 3000, 'at the data deadline');
});

t.test('garbage instead of a reply after the greeting is a protocol error', async (t) => {
  const s = await hostile((socket) => socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0a, 0x00, 0x0d, 0x0a])));
  t.match(connectFailure(await failure(options(s.port))), { code: 451, text: /^protocol error: not an SMTP reply/ });
});

/** Offers STARTTLS, says 220, then answers the client's TLS hello with bytes that are not TLS. */
const garbageAfterStartTls: Handler = (socket, line) => {
  if (line !== 'STARTTLS') return polite('250-mx.hostile.test\r\n250 STARTTLS')(socket, line);
  socket.write('220 2.0.0 ready\r\n');
  socket.removeAllListeners('data');
  socket.once('data', () => socket.write('HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS\r\n'));
};

t.test('non-TLS bytes after the 220 to STARTTLS fail the handshake: ETLS at may (the pool may retry in plaintext) and at encrypt', async (t) => {
  const s = await hostile(garbageAfterStartTls);
  for (const tls of ['may', 'encrypt'] as const) {
    const err = await failure(options(s.port, { tls }));
    t.match(err, { code: 'ETLS', event: 'tls-failed' }, tls);
    t.match(connectFailure(err), { code: 451, enhanced: '4.7.5', command: 'STARTTLS', text: /^TLS failure: / }, tls);
  }
});

t.test('plaintext injected after the 220 to STARTTLS is a protocol error at every level, never read inside TLS', async (t) => {
  const s = await hostile((socket, line) => (line === 'STARTTLS' ? socket.write('220 ready\r\n250 injected\r\n') : polite('250-mx.hostile.test\r\n250 STARTTLS')(socket, line)));
  for (const tls of ['may', 'encrypt', 'verify'] as const) {
    const err = await failure(options(s.port, { tls }));
    t.match(err, { code: 'EPROTOCOL' }, `${tls}: not ETLS, so no plaintext retry is invited`);
    t.match(connectFailure(err), { code: 451, text: /^protocol error: (the server sent more after its reply to STARTTLS|a reply to no command)/ }, tls);
  }
});

t.test('a TLS handshake that stalls after the 220 fails at the command deadline', async (t) => {
  const s = await hostile((socket, line) => {
    if (line !== 'STARTTLS') return polite('250-mx.hostile.test\r\n250 STARTTLS')(socket, line);
    socket.write('220 ready\r\n');
    socket.removeAllListeners('data');
  });
  const started = Date.now();
  const err = await failure(options(s.port, { tls: 'encrypt' }));
  t.match(connectFailure(err), { code: 451, enhanced: '4.7.5', text: 'TLS failure: handshake not done within 1000 ms' });
  t.ok(Date.now() - started < 3000);
});

/**
 * A listener that never accepts, its accept queue filled: the kernel drops further SYNs, so a
 * connect hangs as toward a host that black-holes them (python3's socket, because Node accepts
 * every connection itself). Yields its port once the queue is full.
 */
async function blackHole(): Promise<number> {
  const script = 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n';
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill());
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`python3 exited ${code}`)));
  });
  // Fill the accept queue (backlog 0 holds one, and Linux lets one more through).
  // On loopback the handshake completes inside connect(2): once the first is in, the rest queue or hang.
  const fillers: Socket[] = [];
  t.teardown(() => fillers.forEach((s) => s.destroy()));
  const open = (): Socket => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    fillers.push(s);
    return s;
  };
  await new Promise((resolve) => open().once('connect', resolve));
  for (let i = 0; i < 3; i++) open();
  return port;
}

t.test('a connect the receiver never completes fails at the connect deadline', async (t) => {
  const port = await blackHole();
  const started = Date.now();
  const err = await failure(options(port, { timeouts: { connect: 400, greeting: 5000, command: 5000, data: 5000 } }));
  const took = Date.now() - started;
  t.ok(err instanceof ConnectError, 'a typed error');
  t.match(err, { code: 'ETIMEDOUT', event: 'connect-timeout' }, 'a connect timeout, for the adaptive rules');
  t.match(connectFailure(err), { code: 451, enhanced: '4.4.2', command: 'CONNECT', text: 'timeout: no connection within 400 ms' });
  t.ok(took >= 390 && took < 3000, `gave up after ${took} ms`);
});
