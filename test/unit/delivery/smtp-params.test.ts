import { createServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import t from 'tap';
import { parseConfigText } from '../../../src/config/index.ts';
import { connectClient, xtext, type Envelope } from '../../../src/delivery/smtp-client.ts';
import { baseSettings } from '../../../src/shaping/settings.ts';

/**
 * DSN parameters relayed on RCPT (RFC 3461), seen on the wire of a scripted server; and the TLS
 * level names configuration takes.
 */
async function recorder(ehlo: string): Promise<{ port: number; wire: () => string }> {
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.write('220 mx ESMTP\r\n');
    let inData = false;
    socket.on('data', (chunk) => {
      received.push(chunk.toString('latin1'));
      for (const line of chunk.toString('latin1').split('\r\n').filter(Boolean)) {
        if (inData) {
          if (line === '.') (inData = false, socket.write('250 queued\r\n'));
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        inData = verb === 'DATA';
        socket.write(verb === 'EHLO' ? `${ehlo}\r\n` : verb === 'DATA' ? '354 go\r\n' : '250 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as { port: number }).port, wire: () => received.join('') };
}

const envelope: Envelope = {
  sender: 'a@example.com', recipients: ['one@x.test', 'two@x.test', 'three@x.test'], size: 3, eightBit: false,
  recipientDsn: [
    { notify: ['success', 'FAILURE'], orcpt: 'rfc822;Jürgen+tag=x@example.com' },
    undefined,
    { notify: ['NEVER'] },
  ],
};

async function sendOver(ehlo: string): Promise<string> {
  const s = await recorder(ehlo);
  const conn = await connectClient({ host: '127.0.0.1', servername: 'mx', port: s.port, localName: 'tern.test', tls: 'none', timeouts: { connect: 1000, greeting: 1000, command: 1000 } });
  await conn.send(envelope, Readable.from([Buffer.from('x\r\n')]));
  await conn.quit();
  return s.wire();
}

t.test('NOTIFY and ORCPT go on each RCPT that has them, ORCPT re-encoded as xtext, where the server offers DSN', async (t) => {
  const wire = await sendOver('250-mx\r\n250-PIPELINING\r\n250 DSN');
  t.match(wire, 'RCPT TO:<one@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;J+C3+BCrgen+2Btag+3Dx@example.com\r\n');
  t.match(wire, 'RCPT TO:<two@x.test>\r\n', 'a recipient without DSN parameters has none');
  t.match(wire, 'RCPT TO:<three@x.test> NOTIFY=NEVER\r\n');
});

t.test('no DSN parameter at all where the server does not offer DSN', async (t) => {
  const wire = await sendOver('250-mx\r\n250 PIPELINING');
  t.notMatch(wire, /NOTIFY|ORCPT/);
  t.match(wire, 'RCPT TO:<one@x.test>\r\nRCPT TO:<two@x.test>\r\n');
});

t.test('xtext encodes +, = and anything outside printable ASCII, byte by byte', async (t) => {
  t.equal(xtext('a+b=c d'), 'a+2Bb+3Dc+20d');
  t.equal(xtext('ü'), '+C3+BC');
});

t.test('configuration: the TLS levels, their old names, and tls_ca_file', async (t) => {
  const level = (yaml: string): unknown => {
    const loaded = parseConfigText(yaml, '/etc/tern/tern.yaml');
    return loaded.ok ? baseSettings(loaded.config).tls : loaded.problems;
  };
  t.equal(level(''), 'may', 'the default is may');
  for (const [name, canonical] of [['none', 'none'], ['may', 'may'], ['encrypt', 'encrypt'], ['verify', 'verify'], ['opportunistic', 'may'], ['required', 'encrypt'], ['disabled', 'none']]) {
    t.equal(level(`delivery:\n  tls: ${name}\n`), canonical, `delivery.tls ${name}`);
  }
  t.equal(level('delivery:\n  tls: may\nshaping:\n  defaults:\n    tls: required\n'), 'encrypt', 'shaping.defaults.tls over delivery.tls, old names too');
  t.match(level('delivery:\n  tls: secure\n'), [{ path: 'delivery.tls' }], 'an unknown level is refused');
  const loaded = parseConfigText('delivery:\n  tls: verify\n  tls_ca_file: certs/ca.pem\n', '/etc/tern/tern.yaml');
  t.equal(loaded.ok && loaded.config.delivery.tls_ca_file, '/etc/tern/certs/ca.pem', 'relative to the configuration file');
});
