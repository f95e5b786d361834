import { createServer, type Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import t from 'tap';
import { PathPool, type ConnectionReport, type PathPorts, type PoolSettings } from '../../../src/delivery/pool.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import { fateEvent } from '../../../src/model/event.ts';
import type { Envelope as SpooledEnvelope } from '../../../src/model/envelope.ts';
import type { SiteName } from '../../../src/model/ids.ts';
import type { AttemptOutcome } from '../../../src/model/outcome.ts';
import type { PathHandle, PathSettings, TlsLevel } from '../../../src/model/path.ts';
import { makeTestCerts } from '../../support/tls-certs.ts';

/**
 * TLS as the pool uses it: the plaintext retry that only level may allows, the session recorded
 * on the outcome's route (and so on the delivery event), and one report per connection for the
 * tern_delivery_tls_connections_total metric.
 */
const MX = 'mx.pool-tls.test';

const settingsFor = (tls: TlsLevel): PathSettings => ({
  max_connections: 1, max_messages_per_connection: 10, max_message_rate: undefined, max_connection_rate: undefined,
  max_recipients_per_message: 100, connect_timeout: 1000, greeting_timeout: 1000, idle_timeout: 50, tls,
});

/** Grants one connection at a time, as a path with max_connections 1 would. */
function onePort(): PathPorts {
  let leased = 0;
  return {
    acquire: (requests) => requests.map((r) => {
      if (r.kind === 'message') return { granted: r.count };
      const granted = Math.max(0, Math.min(r.count, 1 - leased));
      leased += granted;
      return { granted };
    }),
    release: (_path, n) => void (leased -= n),
    observe: () => undefined,
  };
}

interface Harness { readonly pool: PathPool; readonly reports: ConnectionReport[]; readonly logs: string[] }

function harness(port: number, tls: TlsLevel, extra: Partial<PoolSettings> = {}): Harness {
  const path: PathHandle = { key: `default|${MX}`, site: MX as SiteName, source: 'default', domain: undefined, provider: undefined, settings: () => settingsFor(tls), hold: () => undefined };
  const logs: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (logs.push(String(chunk)), done()) }));
  const reports: ConnectionReport[] = [];
  const pool = new PathPool(path, { port, localName: 'tern.test', timeouts: { command: 1000, data: 1000 }, ...extra }, onePort(), { clock: systemClock, log, onConnection: (r) => reports.push(r) });
  t.teardown(() => pool.abort());
  return { pool, reports, logs };
}

const submit = (pool: PathPool): Promise<AttemptOutcome> => pool.submit({
  site: MX as SiteName, domain: 'pool-tls.test', hosts: [{ name: MX, addresses: ['127.0.0.1'] }],
  envelope: { sender: 'a@example.com', recipients: ['b@pool-tls.test'], size: 10, eightBit: false },
  openBody: () => Readable.from([Buffer.from('x\r\n')]),
});

/** Offers STARTTLS and answers the TLS hello with bytes that are not TLS; serves plaintext sessions politely. */
async function brokenTls(): Promise<{ port: number; sessions: () => number }> {
  let sessions = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sessions++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.write('220 mx ESMTP\r\n');
    let inData = false;
    socket.on('data', (chunk) => {
      for (const line of chunk.toString('latin1').split('\r\n').filter(Boolean)) {
        if (inData) {
          if (line === '.') (inData = false, socket.write('250 2.0.0 queued\r\n'));
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'STAR') {
          socket.write('220 go ahead\r\n');
          socket.removeAllListeners('data');
          socket.once('data', () => socket.write('not TLS at all\r\n'));
          return;
        }
        inData = verb === 'DATA';
        socket.write(verb === 'EHLO' ? '250-mx\r\n250 STARTTLS\r\n' : verb === 'DATA' ? '354 go\r\n' : verb === 'QUIT' ? '221 bye\r\n' : '250 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as { port: number }).port, sessions: () => sessions };
}

t.test('a failed handshake at may is retried in plaintext, and logged; at encrypt it is a deferral, never plaintext', async (t) => {
  const s = await brokenTls();
  const may = harness(s.port, 'may');
  const delivered = await submit(may.pool);
  t.match(delivered, { kind: 'transaction', replies: [{ code: 250 }] }, 'may: delivered');
  t.equal(delivered.route.tls, undefined, 'in plaintext: the route has no TLS session');
  t.equal(s.sessions(), 2, 'one TLS attempt, one plaintext');
  t.ok(may.logs.some((l) => l.includes('TLS handshake failed at level may: retrying in plaintext')), 'the retry is logged');
  t.same(may.reports, [{ level: 'may', tls: undefined }], 'one connection reported, plaintext');

  const encrypt = harness(s.port, 'encrypt');
  const deferred = await submit(encrypt.pool);
  t.match(deferred, { kind: 'site-unreachable', reply: { code: 451, enhanced: '4.7.5', text: /^TLS failure: /, origin: 'local' } });
  t.equal(s.sessions(), 3, 'encrypt: no plaintext retry');
  t.same(encrypt.reports, [], 'no connection was established');
});

t.test('a verified session is on the outcome route and the delivery event, and reported once per connection', async (t) => {
  const certs = makeTestCerts(MX);
  const received: boolean[] = [];
  const server = new SMTPServer({
    logger: false, authOptional: true, disabledCommands: ['AUTH'], key: certs.good.key, cert: certs.good.cert,
    onData(stream, session, done) {
      stream.resume();
      stream.on('end', () => (received.push(session.secure), done()));
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const c of server.connections) (c as unknown as { close(): void }).close();
    server.close(() => resolve());
  }));
  const { pool, reports } = harness((server.server.address() as { port: number }).port, 'verify', { tlsTrust: createSecureContext({ ca: certs.ca }) });
  const outcomes = await Promise.all([submit(pool), submit(pool)]);
  for (const o of outcomes) t.match(o, { kind: 'transaction', route: { mx: MX, tls: { version: /^TLSv1\.[23]$/, cipher: /\w/, verified: true } } });
  t.same(received, [true, true]);
  t.equal(reports.length, 1, 'two messages, one connection, one report');
  t.match(reports[0], { level: 'verify', tls: { verified: true } });

  const spooled = { id: 'Q1', messageId: '<m@x>', sender: 'a@example.com', meta: {}, recipients: [{ address: 'b@pool-tls.test' }] } as unknown as SpooledEnvelope;
  const first = outcomes[0] as Extract<AttemptOutcome, { kind: 'transaction' }>;
  const event = fateEvent(spooled, 0, 1, { kind: 'delivered', reply: first.replies[0] as never }, first.route, Date.now());
  t.match(event, { type: 'delivered', mx: MX, tls: { version: /^TLSv1/, verified: true } }, 'the event says how it went');
  t.notOk('tls' in fateEvent(spooled, 0, 1, { kind: 'delivered', reply: first.replies[0] as never }, { mx: MX }, Date.now()), 'and says nothing of TLS for plaintext');
});
