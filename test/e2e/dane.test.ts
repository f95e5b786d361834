import { createHash, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { makeTestCerts } from '../support/tls-certs.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

/**
 * DANE (RFC 7672) end to end: a DNS zone that answers with the AD bit (as a validating resolver
 * does for a signed zone) and TLSA records, MX sinks with certificates from a local CA that Tern
 * is not told about. Each combination delivers or defers as the RFC says.
 */
const certs = makeTestCerts('mx.ta.test');
const spkiSha256 = (pem: Buffer): Buffer => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }) as Buffer).digest();
const caSha256 = createHash('sha256').update(new X509Certificate(certs.ca).raw).digest();
const EE = (pem: Buffer) => [{ usage: 3, selector: 1, matchingType: 1, data: spkiSha256(pem) }];
const TA = [{ usage: 2, selector: 0, matchingType: 1, data: caSha256 }];

/** A domain, its MX host on `ip`, and that host's TLSA records, all signed (AD) unless `insecure`. */
function signed(domain: string, ip: string, tlsa: ReturnType<typeof EE> | undefined, insecure = false) {
  const authenticated = !insecure;
  return {
    [domain]: { mx: [{ exchange: `mx.${domain}`, priority: 10 }], authenticated },
    [`mx.${domain}`]: { a: [ip], authenticated },
    [`_25._tcp.mx.${domain}`]: tlsa ? { tlsa, authenticated } : { servfail: true },
  };
}

const zone = {
  ...STANDARD_ZONE,
  ...signed('ee.test', '127.0.0.41', EE(certs.wrongName.cert)),
  ...signed('bad.test', '127.0.0.42', EE(certs.good.cert)),
  ...signed('ta.test', '127.0.0.43', TA),
  ...signed('insecure.test', '127.0.0.44', EE(certs.good.cert), true),
  ...signed('plain.test', '127.0.0.45', EE(certs.good.cert)),
  ...signed('fail.test', '127.0.0.46', undefined),
};

let world: World;
let tern: RunningTern;
const webhook = new WebhookReceiver('dane');
const dir = tempDir();

t.before(async () => {
  world = await startWorld(zone, [], ['127.0.0.41', '127.0.0.42', '127.0.0.43', '127.0.0.44', '127.0.0.45', '127.0.0.46']);
  await world.addSink('127.0.0.41', { tls: certs.wrongName }); // a certificate for another name, from a CA nobody knows
  await world.addSink('127.0.0.42', { tls: certs.wrongName });
  await world.addSink('127.0.0.43', { tls: { key: certs.good.key, cert: Buffer.concat([certs.good.cert, certs.ca]) } }); // leaf and its CA
  await world.addSink('127.0.0.44', { tls: certs.wrongName });
  await world.addSink('127.0.0.45'); // no STARTTLS
  await world.addSink('127.0.0.46', { tls: certs.good });
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(dir.path, 'spool'),
    feedback: { webhook: { url: await webhook.start(), secret: 'dane', max_wait: '20ms' } },
  }));
});
t.teardown(async () => {
  await tern?.stop();
  await webhook.stop();
  await world?.close();
  dir.remove();
});

async function firstEvent(rcpt: string): Promise<FeedbackEvent> {
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [rcpt], message({ to: rcpt })), /^250 /);
  return until(() => webhook.acknowledged.find((e) => e.recipient === rcpt && e.type !== 'relayed'), 10_000, `an event for ${rcpt}`);
}

t.test('DANE-EE: the key in the TLSA record is enough; the name and the CA do not matter', async (t) => {
  t.match(await firstEvent('a@ee.test'), { type: 'delivered', tls: { verified: true }, tls_policy: { type: 'dane', result: 'success' } });
  const { sites } = (await (await adminFetch(tern.adminPort, '/api/v1/sites')).json()) as { sites: { site: string; paths: { tls_policies: Record<string, unknown> }[] }[] };
  t.match(sites.find((s) => s.site === 'mx.ee.test')?.paths[0]?.tls_policies, { 'ee.test': { type: 'dane', result: 'success', at: /^\d{4}-/ } }, 'the sites view shows the policy applied');
});

t.test('DANE-EE: a key that is not the record\'s is deferred (4.7.5, securityerror), never sent', async (t) => {
  const e = await firstEvent('a@bad.test');
  t.match(e, { type: 'soft_bounce', response: { code: 451, enhanced: '4.7.5', text: /^TLS policy failure: DANE: no TLSA record matches/ }, bounce: { reason: 'securityerror' }, tls_policy: { type: 'dane', result: 'failure', failure: 'tlsa-invalid' } });
  t.equal(world.sinks.get('127.0.0.42')?.received.length, 0);
});

t.test('DANE-TA: the chain leads from the record\'s CA to a certificate naming the MX host', async (t) => {
  t.match(await firstEvent('a@ta.test'), { type: 'delivered', tls: { verified: true }, tls_policy: { type: 'dane', result: 'success' } });
});

t.test('records DNS does not vouch for (no AD bit) are not DANE: the path\'s level, as before', async (t) => {
  t.match(await firstEvent('a@insecure.test'), { type: 'delivered', tls: { verified: false }, tls_policy: { type: 'may' } });
});

t.test('a DANE host without STARTTLS is deferred (4.7.4), never sent in plaintext', async (t) => {
  const e = await firstEvent('a@plain.test');
  t.match(e, { type: 'soft_bounce', response: { enhanced: '4.7.4' }, bounce: { reason: 'failedstarttls' }, tls_policy: { type: 'dane', result: 'failure', failure: 'starttls-not-supported' } });
  t.equal(world.sinks.get('127.0.0.45')?.received.length, 0);
});

t.test('a signed MX host whose TLSA lookup fails is not used', async (t) => {
  const e = await firstEvent('a@fail.test');
  t.match(e, { type: 'soft_bounce', response: { enhanced: '4.7.5', text: /DANE: no MX host's TLSA records could be looked up/ }, tls_policy: { type: 'dane', failure: 'dnssec-invalid' } });
  t.equal(world.sinks.get('127.0.0.46')?.connections, 0);
});
