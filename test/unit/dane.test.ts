import { createHash, X509Certificate } from 'node:crypto';
import t from 'tap';
import { checkDane, parseTlsa, usable, type TlsaRecord } from '../../src/model/dane.ts';
import { makeTestCerts } from '../support/tls-certs.ts';

/** RFC 7672's checks on real certificates from a local CA (test/support/tls-certs.ts). */
const MX = 'mx.dane.test';
const certs = makeTestCerts(MX);
const x509 = (pem: Buffer): X509Certificate => new X509Certificate(pem);
const [ca, good, expired, wrong, self] = [x509(certs.ca), x509(certs.good.cert), x509(certs.expired.cert), x509(certs.wrongName.cert), x509(certs.selfSigned.cert)];
const spki = (c: X509Certificate): Buffer => c.publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const sha512 = (b: Buffer): Buffer => createHash('sha512').update(b).digest();
const record = (usage: number, selector: number, matchingType: number, data: Buffer): TlsaRecord => ({ usage, selector, matchingType, data });
const NOW = Date.now();

t.test('TLSA rdata: usage, selector, matching type, data; unusable records left out', async (t) => {
  t.same(parseTlsa(Buffer.from([3, 1, 1, 0xab, 0xcd])), { usage: 3, selector: 1, matchingType: 1, data: Buffer.from([0xab, 0xcd]) });
  t.equal(parseTlsa(Buffer.from([3, 1, 1])), undefined, 'no data');
  const digest = sha256(spki(good));
  t.same(usable([
    record(3, 1, 1, digest), record(2, 0, 2, sha512(ca.raw)), record(3, 0, 0, good.raw),
    record(1, 1, 1, digest), record(0, 0, 1, digest), // PKIX-EE, PKIX-TA: not for SMTP (RFC 7672 §3.1)
    record(3, 2, 1, digest), record(3, 1, 3, digest), // unknown selector, matching type
    record(3, 1, 1, digest.subarray(1)), // a SHA-256 digest of the wrong size
  ]).length, 3);
});

t.test('DANE-EE: the leaf\'s key or certificate matches; its name, dates and CA do not matter', async (t) => {
  t.same(checkDane([record(3, 1, 1, sha256(spki(good)))], [good], MX, NOW), { ok: true, usage: 3 }, 'SPKI, SHA-256');
  t.same(checkDane([record(3, 0, 2, sha512(good.raw))], [good], MX, NOW), { ok: true, usage: 3 }, 'full certificate, SHA-512');
  t.same(checkDane([record(3, 0, 0, good.raw)], [good], MX, NOW), { ok: true, usage: 3 }, 'full certificate, exact');
  t.match(checkDane([record(3, 1, 1, sha256(spki(expired)))], [expired], MX, NOW), { ok: true }, 'expired: DANE-EE ignores dates');
  t.match(checkDane([record(3, 1, 1, sha256(spki(wrong)))], [wrong], MX, NOW), { ok: true }, 'another name: DANE-EE ignores names');
  t.match(checkDane([record(3, 1, 1, sha256(spki(self)))], [self], MX, NOW), { ok: true }, 'self-signed: no CA needed');
  t.same(checkDane([record(3, 1, 1, sha256(spki(good)))], [wrong], MX, NOW), { ok: false, failure: 'tlsa-invalid', why: 'no TLSA record matches the certificate chain' });
  t.match(checkDane([record(3, 1, 1, sha256(spki(good)))], [], MX, NOW), { ok: false, failure: 'validation-failure' });
});

t.test('DANE-TA: a certificate of the chain matches, signs down to a leaf in date that names the MX host', async (t) => {
  const ta = [record(2, 0, 1, sha256(ca.raw))];
  t.same(checkDane(ta, [good, ca], MX, NOW), { ok: true, usage: 2 });
  t.same(checkDane([record(2, 1, 1, sha256(spki(ca)))], [good, ca], MX, NOW), { ok: true, usage: 2 }, 'the anchor by its key');
  t.match(checkDane(ta, [wrong, ca], MX, NOW), { ok: false, failure: 'certificate-host-mismatch' });
  t.match(checkDane(ta, [expired, ca], MX, NOW), { ok: false, failure: 'certificate-expired' });
  t.match(checkDane(ta, [self, ca], MX, NOW), { ok: false, failure: 'validation-failure', why: /not signed by the next/ }, 'a leaf the anchor did not sign');
  t.match(checkDane(ta, [good], MX, NOW), { ok: false, failure: 'tlsa-invalid' }, 'the anchor must be in the chain the server sends (RFC 7672 §3.1.2)');
});
