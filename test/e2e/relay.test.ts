import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let tern: RunningTern;
const spool = tempDir();

t.before(async () => {
  world = await startWorld();
  await world.addSink('127.0.0.4', { greetingDelay: 3_000 });
  await world.addSink('127.0.0.5', { starttls: true });
  tern = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
});

const sink = (host: string) => world.sinks.get(host)!;
const receivedBy = (host: string, rcpt: string) => sink(host).received.filter((m) => m.rcptTo.includes(rcpt));
const send = (to: string[], extraHeaders: string[] = []) =>
  sendMail(tern.smtpPort, 'news@campaign.test', to, message({ to: to[0], headers: extraHeaders }));
const finalOf = (rcpt: string) => until(() => tern.outcomes(rcpt).find((l) => l.event !== 'retry'), 15_000, `final outcome for ${rcpt}`);

t.test('a relayed message reaches the MX of its domain with Tern headers', async (t) => {
  const reply = await send(['alice@a.test'], ['X-Tern-Meta: {"campaign":"c42"}']);
  t.match(reply, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{26}$/);
  const [got] = await until(() => receivedBy('127.0.0.2', 'alice@a.test').length > 0 && receivedBy('127.0.0.2', 'alice@a.test'));
  const text = got!.data.toString();
  t.equal(got!.mailFrom, 'news@campaign.test');
  t.match(text, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby tern\.test \(Tern\) with ESMTP id [0-9A-Z]{26}\r\n\tfor <alice@a\.test>;/);
  t.match(text, /\r\nMessage-ID: <[0-9A-Z]{26}@tern\.test>\r\n/, 'a Message-ID is added when missing');
  t.notMatch(text, /X-Tern-Meta/i, 'X-Tern-Meta never reaches the recipient');
  t.match(text, /\r\n\r\nHello world\.\r\n$/);
  const [line] = await until(() => tern.outcomes('alice@a.test').length && tern.outcomes('alice@a.test'));
  t.match(line, { event: 'delivered', mx: 'mx1.a.test', remote_ip: '127.0.0.2', attempt: 1, reply: /^250 / }, 'one log line per attempt');
});

t.test('recipients of several domains are split into one transaction per domain', async (t) => {
  t.match(await send(['x1@a.test', 'x2@a.test', 'y1@b.test']), /^250 /);
  await until(() => receivedBy('127.0.0.2', 'x1@a.test').length && receivedBy('127.0.0.3', 'y1@b.test').length);
  t.same(receivedBy('127.0.0.2', 'x1@a.test')[0]!.rcptTo.sort(), ['x1@a.test', 'x2@a.test'], 'both a.test recipients in one transaction');
  t.same(receivedBy('127.0.0.3', 'y1@b.test')[0]!.rcptTo, ['y1@b.test'], 'b.test reached through its A record (implicit MX)');
});

t.test('each recipient of a transaction gets its own outcome', async (t) => {
  await send(['ok1@a.test', 'user-unknown@a.test']);
  t.match(await finalOf('ok1@a.test'), { event: 'delivered' });
  t.match(await finalOf('user-unknown@a.test'), { event: 'failed', cause: 'bounce', reply: /^550 5\.1\.1 /, bounce: { reason: 'userunknown', class: 10, category: 'hard', type: 'hard' } });
  t.equal(sink('127.0.0.2').attempts.get('user-unknown@a.test'), 1, 'a 5xx is never retried');
});

t.test('the next MX is tried when the preferred one refuses connections', async (t) => {
  await send(['bob@fallback.test']);
  t.match(await finalOf('bob@fallback.test'), { event: 'delivered', mx: 'mx.fallback.test' });
});

t.test('NXDOMAIN and null MX fail at once; SERVFAIL is retried', async (t) => {
  await send(['carol@nx.test', 'dan@null.test', 'erin@servfail.test'], ['X-Tern-Meta: {"validity":"2s"}']);
  t.match(await finalOf('carol@nx.test'), { event: 'failed', cause: 'bounce', reply: /^550 5\.1\.2 .*NXDOMAIN/, bounce: { reason: 'hostunknown', type: 'hard', rule: 'local-nxdomain' } });
  t.match(await finalOf('dan@null.test'), { event: 'failed', cause: 'bounce', reply: /^556 5\.1\.10 .*null MX/, bounce: { reason: 'notaccept', type: 'hard' } });
  const [first] = await until(() => tern.outcomes('erin@servfail.test').length && tern.outcomes('erin@servfail.test'));
  t.match(first, { event: 'retry', reply: /^451 4\.4\.3 DNS lookup for servfail\.test failed/, bounce: { reason: 'networkerror', class: 21, type: 'soft' } });
});

t.test('temporary failures are retried until accepted', async (t) => {
  await send(['tempfail-2@a.test']);
  t.match(await finalOf('tempfail-2@a.test'), { event: 'delivered', attempt: 3 });
  const retries = tern.outcomes('tempfail-2@a.test').filter((l) => l.event === 'retry');
  t.equal(retries.length, 2);
  t.match(retries[0], { reply: /^451 4\.3\.0 /, bounce: { category: 'soft', type: 'soft' } });
  t.equal(sink('127.0.0.2').attempts.get('tempfail-2@a.test'), 3);
});

t.test('a recipient that never gets through fails as expired when its validity ends', async (t) => {
  const started = Date.now();
  await send(['tempfail-1000@a.test'], ['X-Tern-Meta: {"validity":"1500ms"}']);
  const final = await finalOf('tempfail-1000@a.test');
  t.match(final, { event: 'failed', cause: 'expired', reply: /^554 5\.4\.7 validity period expired; last reply: 451 4\.3\.0/, bounce: { reason: 'expired', class: 24, type: 'soft' } });
  t.ok(Date.now() - started < 3_000, 'expired early rather than waiting for a retry past validity');
});

t.test('421 at RCPT and a drop during DATA are transient', async (t) => {
  await send(['close421@a.test'], ['X-Tern-Meta: {"validity":"1s"}']);
  await send(['drop-data@a.test'], ['X-Tern-Meta: {"validity":"1s"}']);
  const [r421] = await until(() => tern.outcomes('close421@a.test').length && tern.outcomes('close421@a.test'));
  t.match(r421, { event: 'retry', reply: /^421 4\.7\.0 / });
  const [rDrop] = await until(() => tern.outcomes('drop-data@a.test').length && tern.outcomes('drop-data@a.test'));
  t.match(rDrop, { event: 'retry', reply: /^451 4\.4\.2 connection lost/ });
  t.equal(receivedBy('127.0.0.2', 'drop-data@a.test').length, 0, 'the sink never got the message');
  t.match(await finalOf('drop-data@a.test'), { event: 'failed', cause: 'expired' });
});

t.test('too many recipients (452 4.5.3) go again at once in a new transaction', async (t) => {
  await send(['fine@a.test', 'toomany@a.test'], ['X-Tern-Meta: {"validity":"4s"}']);
  const lines = await until(() => tern.outcomes('toomany@a.test').length >= 2 && tern.outcomes('toomany@a.test'));
  t.match(lines[0], { event: 'retry', attempt: 0, reply: /^452 4\.5\.3 / }, 'the first deferral does not count as an attempt');
  t.match(lines[1], { event: 'retry', attempt: 1 });
});

t.test('a greeting slower than the greeting timeout is a transient failure', async (t) => {
  // Validity (1s) ends while Tern waits the 2s greeting timeout: the timeout is the last reply.
  await send(['frank@slow.test'], ['X-Tern-Meta: {"validity":"1s"}']);
  t.match(await finalOf('frank@slow.test'), { event: 'failed', cause: 'expired', reply: /last reply: 451 4\.4\.2 timeout: Greeting never received/ });
});

t.test('STARTTLS is used when the receiver offers it, and counted as such in /metrics', async (t) => {
  await send(['gina@tls.test']);
  await until(() => receivedBy('127.0.0.5', 'gina@tls.test').length);
  t.equal(receivedBy('127.0.0.5', 'gina@tls.test')[0]!.secure, true);
  const metrics = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  // The sink's certificate is self-signed: TLS 1.3 at the default level "may", not verified.
  t.match(metrics, /^tern_delivery_tls_connections_total\{level="may",version="TLSv1\.3",verified="false"\} [1-9]/m, 'a TLS connection');
  t.match(metrics, /^tern_delivery_tls_connections_total\{level="may",version="none",verified="false"\} [1-9]/m, 'and the plaintext ones');
});

t.test('DSN ENVID, NOTIFY and ORCPT given by the client are relayed', async (t) => {
  const { RawSmtp } = await import('../support/smtp-client.ts');
  const { client } = await RawSmtp.open(tern.smtpPort);
  await client.command('EHLO client.test');
  t.match(await client.command('MAIL FROM:<news@campaign.test> ENVID=env-123 RET=HDRS'), /^250 /);
  t.match(await client.command('RCPT TO:<hank@a.test> NOTIFY=FAILURE ORCPT=rfc822;hank@a.test'), /^250 /);
  await client.command('DATA');
  t.match(await client.data(`${message({ to: 'hank@a.test' })}.\r\n`), /^250 /);
  client.close();
  await until(() => receivedBy('127.0.0.2', 'hank@a.test').length);
  const got = receivedBy('127.0.0.2', 'hank@a.test')[0]!;
  t.equal(got.envid, 'env-123');
  t.same(got.rcptDsn, [{ notify: ['FAILURE'], orcpt: 'rfc822;hank@a.test' }], 'NOTIFY and ORCPT reach the receiver (they were dropped before)');
});

t.test('the spool is empty once every recipient is final', async (t) => {
  const files = () => readdirSync(join(spool.path, 'msg'), { recursive: true }).filter((f) => /[0-9A-Z]{26}/.test(String(f)) && !String(f).includes('.tmp'));
  // Wait for the retrying recipients of earlier tests to expire.
  const left = await until(() => {
    const f = files();
    return f.length === 0 ? ['empty'] : false;
  }, 15_000, 'an empty spool');
  t.same(left, ['empty']);
});
