import { Readable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { SMTPServer } from 'smtp-server';
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectClient, connectFailure, loadTrust, type ClientConnection, type ConnectOptions } from '../../../src/delivery/smtp-client.ts';
import type { TlsPolicy } from '../../../src/model/path.ts';
import { run } from '../../../src/cli/index.ts';
import { makeTestCerts, type KeyPair } from '../../support/tls-certs.ts';

/**
 * The outbound TLS levels (docs/tls.md) against a real receiver (smtp-server) on loopback, with
 * certificates made for the test by a local CA: what each level delivers, and what it defers.
 */
const MX = 'mx.tls.test';
const certs = makeTestCerts(MX);
/** delivery.tls_ca_file as the daemon loads it: the local CA instead of Node's default store. */
const trust = createSecureContext({ ca: certs.ca });

interface Receiver { readonly port: number; readonly secure: boolean[] }

/** A receiver that offers STARTTLS with `pair` (or offers no STARTTLS), and notes whether each message came over TLS. */
async function receiver(pair: KeyPair | undefined): Promise<Receiver> {
  const secure: boolean[] = [];
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: pair ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(pair ? { key: pair.key, cert: pair.cert } : {}),
    onData(stream, session, done) {
      stream.resume();
      stream.on('end', () => {
        secure.push(session.secure);
        done();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const c of server.connections) (c as unknown as { close(): void }).close();
    server.close(() => resolve());
  }));
  return { port: (server.server.address() as { port: number }).port, secure };
}

const options = (port: number, tls: TlsPolicy, overrides: Partial<ConnectOptions> = {}): ConnectOptions => ({
  host: '127.0.0.1', servername: MX, port, localName: 'tern.test', tls,
  timeouts: { connect: 2000, greeting: 2000, command: 2000, data: 2000 },
  ...overrides,
});

const envelope = { sender: 'a@example.com', recipients: ['b@tls.test'], size: 20, eightBit: false };

/** Connect, send one message, quit: the connection's TLS session and the message's verdict. */
async function deliver(opts: ConnectOptions): Promise<{ conn: ClientConnection; delivered: boolean }> {
  const conn = await connectClient(opts);
  const result = await conn.send(envelope, Readable.from([Buffer.from('Subject: t\r\n\r\nhi\r\n')]));
  await conn.quit();
  return { conn, delivered: result.kind === 'transaction' && result.replies.every((r) => r.code === 250) };
}

async function refusal(opts: ConnectOptions): Promise<unknown> {
  return connectClient(opts).then((c) => (c.close(), 'connected'), (e: unknown) => e);
}

t.test('verify, with the local CA as tls_ca_file: a good certificate for the MX name delivers, verified', async (t) => {
  const r = await receiver(certs.good);
  const { conn, delivered } = await deliver(options(r.port, 'verify', { trust }));
  t.ok(delivered);
  t.match(conn.tls, { version: /^TLSv1\.[23]$/, cipher: /\w/, verified: true });
  t.same(r.secure, [true], 'the receiver got it over TLS');
});

t.test('verify defers (4.7.5, never plaintext) an expired, wrong-name or self-signed certificate, or one the system CAs do not know', async (t) => {
  // The last column: the failure as RFC 8460 names it, for a receiver's policy (docs/tls.md).
  const cases: [string, KeyPair, Partial<ConnectOptions>, RegExp, string][] = [
    ['expired', certs.expired, { trust }, /certificate has expired/, 'certificate-expired'],
    ['wrong name', certs.wrongName, { trust }, /Hostname\/IP does not match certificate's altnames/, 'certificate-host-mismatch'],
    ['self-signed', certs.selfSigned, { trust }, /self[- ]signed certificate/, 'certificate-not-trusted'],
    ['unknown CA (system CAs)', certs.good, {}, /unable to (get local issuer|verify)/, 'certificate-not-trusted'],
    ['expired, CA unknown too', certs.expired, {}, /certificate verify failed/, 'certificate-expired'],
  ];
  for (const [name, pair, extra, why, failure] of cases) {
    const r = await receiver(pair);
    const err = await refusal(options(r.port, 'verify', extra));
    t.match(err, { code: 'ETLS', event: 'tls-failed', tlsFailure: failure }, name);
    t.match(connectFailure(err), { code: 451, enhanced: '4.7.5', origin: 'local', command: 'STARTTLS', text: /^TLS failure: certificate verify failed: / }, `${name}: a deferral`);
    t.match(connectFailure(err).text, why, `${name}: the reason is named`);
    t.notMatch(connectFailure(err).text, /use-system-ca/, `${name}: without Node's advice to its own users`);
    t.same(r.secure, [], `${name}: nothing was sent`);
  }
});

t.test('encrypt delivers over TLS with a self-signed certificate, marked unverified; without STARTTLS it defers', async (t) => {
  const r = await receiver(certs.selfSigned);
  const { conn, delivered } = await deliver(options(r.port, 'encrypt'));
  t.ok(delivered);
  t.match(conn.tls, { version: /^TLSv1/, verified: false, failure: 'certificate-not-trusted' }, 'why it did not verify, for a receiver\'s policy');
  t.same(r.secure, [true]);
  const plain = await receiver(undefined);
  const err = await refusal(options(plain.port, 'encrypt'));
  t.match(err, { tlsFailure: 'starttls-not-supported' });
  t.match(connectFailure(err), { code: 451, enhanced: '4.7.4', text: /^TLS failure: TLS is required \(level encrypt\), but the server does not offer STARTTLS/ });
  t.same(plain.secure, [], 'nothing went in plaintext');
  t.match(connectFailure(await refusal(options(plain.port, 'required'))), { enhanced: '4.7.4' }, 'the old name required is encrypt');
});

t.test('may delivers in plaintext where STARTTLS is absent, and over TLS where it is offered (verified where the CA is known)', async (t) => {
  const plain = await receiver(undefined);
  const first = await deliver(options(plain.port, 'may'));
  t.ok(first.delivered);
  t.equal(first.conn.tls, undefined, 'plaintext');
  t.equal(first.conn.secure, false);
  const tls = await receiver(certs.good);
  const unknown = await deliver(options(tls.port, 'may'));
  t.match(unknown.conn.tls, { verified: false }, 'a CA the system does not know: delivered, not verified');
  const known = await deliver(options(tls.port, 'opportunistic', { trust }));
  t.match(known.conn.tls, { verified: true }, 'the old name opportunistic is may; verified is recorded at any level');
  t.same(tls.secure, [true, true]);
});

t.test('none never sends STARTTLS, even where it is offered', async (t) => {
  const r = await receiver(certs.good);
  for (const level of ['none', 'disabled'] as const) {
    const { conn, delivered } = await deliver(options(r.port, level));
    t.ok(delivered, level);
    t.equal(conn.tls, undefined, level);
  }
  t.same(r.secure, [false, false], 'both messages came in plaintext');
});

t.test('tls_ca_file: a file of PEM certificates is the trust; a missing file, or one without a readable certificate, is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tern-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string | Buffer): string => (writeFileSync(join(dir, name), text), join(dir, name));
  const r = await receiver(certs.good);
  const bundle = file('bundle.pem', Buffer.concat([certs.selfSigned.cert, certs.ca]));
  t.ok((await deliver(options(r.port, 'verify', { trust: loadTrust(bundle) }))).delivered, 'the local CA found among other certificates');
  t.throws(() => loadTrust(join(dir, 'missing.pem')), { code: 'TERN_CONFIG_INVALID', message: /^delivery\.tls_ca_file: cannot read/ });
  t.throws(() => loadTrust(file('empty.pem', 'not a certificate\n')), { code: 'TERN_CONFIG_INVALID', message: /no PEM certificate/ });
  t.throws(() => loadTrust(file('broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')), { message: /certificate 1 in .* cannot be read/ });
  const err: string[] = [];
  const io = { out: () => undefined, err: (l: string) => err.push(l), env: {}, cwd: dir };
  t.equal(await run(['check-config', '--config', file('ok.yaml', `delivery:\n  tls_ca_file: ${bundle}\n`)], io), 0, 'check-config takes a good bundle');
  t.equal(await run(['check-config', '--config', file('bad.yaml', 'delivery:\n  tls_ca_file: empty.pem\n')], io), 1, 'and refuses a bad one before start would');
  t.match(err.join('\n'), /delivery\.tls_ca_file.*no PEM certificate/);
});
