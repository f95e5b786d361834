import { writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import t from 'tap';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { makeTestCerts, type KeyPair } from '../support/tls-certs.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

/**
 * MTA-STS (RFC 8461) end to end: a loopback HTTPS policy host with certificates from a local CA,
 * MX sinks with good and wrong-name certificates, and a DNS zone serving `_mta-sts` records.
 * Each combination delivers or defers as the RFC says, and each attempt's event names the policy
 * and its result.
 */
const POLICY_HOST = '127.0.0.30';
const domains = ['sts.test', 'wrong.test', 'nomatch.test', 'testing.test', 'down.test', 'expired.test'];
const certs = makeTestCerts('mx.sts.test', domains.map((d) => `mta-sts.${d}`), ['mx.expired.test']);
const dir = tempDir();
writeFileSync(join(dir.path, 'ca.pem'), certs.ca);

const policy = (mode: string, ...mx: string[]): string => ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), 'max_age: 86400', ''].join('\r\n');
/** What the policy host answers for each policy host name: a policy, or an HTTP status. */
const served = new Map<string, string | number>([
  ['mta-sts.sts.test', policy('enforce', 'mx.sts.test')],
  ['mta-sts.wrong.test', policy('enforce', 'mx.wrong.test')],
  ['mta-sts.nomatch.test', policy('enforce', 'mx.elsewhere.test')],
  ['mta-sts.testing.test', policy('testing', 'mx.testing.test')],
  ['mta-sts.down.test', 404],
  ['mta-sts.expired.test', policy('enforce', 'mx.expired.test')],
]);

const zone = {
  ...STANDARD_ZONE,
  ...Object.fromEntries(domains.flatMap((d, i) => [
    // A second's TTL: the last test rewrites sts.test's MX, as an attacker on the path would.
    [d, { mx: [{ exchange: `mx.${d}`, priority: 10 }], ttl: 1 }],
    [`mx.${d}`, { a: [`127.0.0.${31 + i}`] }],
    [`_mta-sts.${d}`, { txt: ['v=STSv1; id=1'], ttl: 1 }],
    [`mta-sts.${d}`, { a: [POLICY_HOST] }],
  ])),
  'plain.test': { mx: [{ exchange: 'mx.plain.test', priority: 10 }] },
  'mx.plain.test': { a: ['127.0.0.38'] },
  'mx.evil.test': { a: ['127.0.0.37'] },
};

let world: World;
let tern: RunningTern;
const webhook = new WebhookReceiver('sts');

t.before(async () => {
  world = await startWorld(zone, [], ['127.0.0.31', '127.0.0.32', '127.0.0.33', '127.0.0.34', '127.0.0.35', '127.0.0.36', '127.0.0.37', '127.0.0.38']);
  const tls = (pair: KeyPair) => ({ tls: { key: pair.key, cert: pair.cert } });
  await world.addSink('127.0.0.31', tls(certs.good)); // mx.sts.test: its own name
  await world.addSink('127.0.0.32', tls(certs.wrongName)); // mx.wrong.test: a certificate for another name
  await world.addSink('127.0.0.33', tls(certs.good)); // mx.nomatch.test: never reached
  await world.addSink('127.0.0.34', tls(certs.wrongName)); // mx.testing.test
  await world.addSink('127.0.0.35', tls(certs.good)); // mx.down.test
  await world.addSink('127.0.0.36', tls(certs.expiredNamed['mx.expired.test'] as KeyPair)); // mx.expired.test: its name, out of date
  await world.addSink('127.0.0.38'); // mx.plain.test: no STARTTLS
  await world.addSink('127.0.0.37'); // mx.evil.test: an MX an attacker put in
  const contexts = new Map(Object.entries(certs.named).map(([name, pair]) => [name, createSecureContext({ key: pair.key, cert: pair.cert })]));
  const https = createServer({ SNICallback: (name, cb) => cb(null, contexts.get(name)) }, (req, res) => {
    const answer = served.get(String(req.headers.host));
    if (typeof answer === 'string' && req.url === '/.well-known/mta-sts.txt') res.writeHead(200, { 'content-type': 'text/plain' }).end(answer);
    else res.writeHead(typeof answer === 'number' ? answer : 404, { 'content-type': 'text/plain' }).end('no');
  });
  const port = await freePort([POLICY_HOST]);
  await new Promise<void>((resolve) => https.listen(port, POLICY_HOST, resolve));
  t.teardown(() => {
    https.closeAllConnections();
    https.close();
  });
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(dir.path, 'spool'),
    delivery: { tls_ca_file: join(dir.path, 'ca.pem'), mta_sts: { port, timeout: '2s' } },
    feedback: { webhook: { url: await webhook.start(), secret: 'sts', max_wait: '20ms' } },
  }));
});
t.teardown(async () => {
  await tern?.stop();
  await webhook.stop();
  await world?.close();
  dir.remove();
});

const eventsFor = (rcpt: string): FeedbackEvent[] => webhook.acknowledged.filter((e) => e.recipient === rcpt && e.type !== 'relayed');
async function send(rcpt: string): Promise<void> {
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [rcpt], message({ to: rcpt })), /^250 /);
}
const first = (rcpt: string, within = 10_000) => until(() => eventsFor(rcpt)[0], within, `an event for ${rcpt}`);

t.test('enforce: the policy\'s MX with a certificate for its name is delivered over verified TLS', async (t) => {
  await send('a@sts.test');
  const e = await first('a@sts.test');
  t.match(e, { type: 'delivered', tls: { verified: true }, tls_policy: { type: 'mta-sts', mode: 'enforce', id: '1', result: 'success' } });
  t.equal(world.sinks.get('127.0.0.31')?.received.at(-1)?.secure, true);
});

t.test('enforce: a certificate for another name is deferred (4.7.5, securityerror), never sent in plaintext', async (t) => {
  await send('a@wrong.test');
  const e = await first('a@wrong.test');
  t.match(e, { type: 'soft_bounce', response: { code: 451, enhanced: '4.7.5', text: /^TLS policy failure: MTA-STS policy of wrong\.test .*enforce/ }, bounce: { reason: 'securityerror' } });
  t.match(e.tls_policy, { type: 'mta-sts', mode: 'enforce', result: 'failure', failure: 'certificate-host-mismatch' });
  t.equal(world.sinks.get('127.0.0.32')?.received.length, 0, 'nothing reached the receiver');
});

t.test('enforce: MX hosts the policy does not name are not connected to', async (t) => {
  await send('a@nomatch.test');
  const e = await first('a@nomatch.test');
  t.match(e, { type: 'soft_bounce', response: { enhanced: '4.7.5', text: /names none of its MX hosts \(mx\.nomatch\.test\)/ }, tls_policy: { result: 'failure', failure: 'validation-failure' } });
  t.equal(world.sinks.get('127.0.0.33')?.connections, 0);
});

t.test('enforce: an expired certificate for the right name is deferred too', async (t) => {
  await send('a@expired.test');
  t.match(await first('a@expired.test'), { type: 'soft_bounce', response: { enhanced: '4.7.5', text: /^TLS policy failure: .*certificate has expired/ }, tls_policy: { result: 'failure', failure: 'certificate-expired' } });
});

t.test('testing: delivered as without a policy; the event reports what failed', async (t) => {
  await send('a@testing.test');
  const e = await first('a@testing.test');
  t.match(e, { type: 'delivered', tls: { verified: false }, tls_policy: { type: 'mta-sts', mode: 'testing', result: 'failure', failure: 'certificate-host-mismatch' } });
});

t.test('a policy that cannot be fetched, with none cached, never holds mail back', async (t) => {
  await send('a@down.test');
  t.match(await first('a@down.test'), { type: 'delivered', tls_policy: { type: 'may' } });
  t.ok(tern.logs.some((l) => /MTA-STS: policy of down\.test not fetched: https:\/\/mta-sts\.down\.test: HTTP 404/.test(l.msg)), 'logged');
});

t.test('no policy published: the path\'s level, as before', async (t) => {
  await send('a@plain.test');
  t.match(await first('a@plain.test'), { type: 'delivered', tls_policy: { type: 'may' } });
  t.notOk('result' in ((eventsFor('a@plain.test')[0]?.tls_policy ?? {}) as object));
});

t.test('a cached enforce policy holds when the record changes, its host fails, and the MX is rewritten', async (t) => {
  world.dns.set('_mta-sts.sts.test', { txt: ['v=STSv1; id=2'], ttl: 1 });
  world.dns.set('sts.test', { mx: [{ exchange: 'mx.evil.test', priority: 10 }] });
  served.set('mta-sts.sts.test', 500);
  // Mail goes to mx.sts.test until the old MX answer expires (a second); from then on, to the rewritten one.
  let n = 0;
  const e = await until(async () => {
    const rcpt = `b${n++}@sts.test`;
    await send(rcpt);
    const got = await first(rcpt, 15_000);
    return got.type === 'soft_bounce' ? got : undefined;
  }, 20_000, 'the rewritten MX in use');
  t.match(e, { tls_policy: { type: 'mta-sts', mode: 'enforce', id: '1', result: 'failure' }, response: { text: /names none of its MX hosts \(mx\.evil\.test\)/ } });
  t.equal(world.sinks.get('127.0.0.37')?.connections, 0, 'the attacker\'s MX never saw a connection');
  const metrics = await (await adminFetch(tern.adminPort, '/metrics')).text();
  t.match(metrics, /tern_delivery_tls_policy_total\{policy="mta-sts",mode="enforce",result="success",failure=""\} [1-9]/);
  t.match(metrics, /tern_delivery_tls_policy_total\{policy="mta-sts",mode="enforce",result="failure",failure="certificate-host-mismatch"\} \d/);
});
