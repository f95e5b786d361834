import { writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { loadTrust } from '../../../src/delivery/index.ts';
import { systemClock } from '../../../src/lib/clock.ts';
import { fetchStsPolicy, type FetchDeps } from '../../../src/tls-policy/fetch.ts';
import { tempDir } from '../../support/daemon.ts';
import { makeTestCerts } from '../../support/tls-certs.ts';

/**
 * The policy fetch against a real HTTPS server on loopback, with a certificate from a local CA:
 * only a verified 200 text/plain answer of bounded size, in time, is a policy.
 */
const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n';
const certs = makeTestCerts('mx.example.test', ['mta-sts.example.test']);
const dir = tempDir();
t.teardown(() => dir.remove());
writeFileSync(join(dir.path, 'ca.pem'), certs.ca);
const trust = loadTrust(join(dir.path, 'ca.pem'));

type Script = (res: ServerResponse) => void;
let script: Script = (res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(POLICY);
let requested = '';
const host = certs.named['mta-sts.example.test'] as { key: Buffer; cert: Buffer };
const server = createServer({ key: host.key, cert: host.cert }, (req, res) => {
  requested = `${req.headers.host} ${req.url}`;
  script(res);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});
const deps = (over: Partial<FetchDeps> = {}): FetchDeps => ({
  addresses: async (name) => (name === 'mta-sts.example.test' || name === 'mta-sts.other.test' ? ['127.0.0.1'] : []),
  port: (server.address() as AddressInfo).port, timeoutMs: 1_000, trust, clock: systemClock, ...over,
});

t.test('a verified 200 text/plain answer is the policy', async (t) => {
  t.match(await fetchStsPolicy('example.test', deps()), { ok: true, value: { mode: 'enforce', mx: ['mx.example.test'], maxAgeSeconds: 86400 } });
  t.equal(requested, 'mta-sts.example.test /.well-known/mta-sts.txt', 'the well-known path, with the policy host named');
});

t.test('everything else is no policy, with the reason', async (t) => {
  t.match(await fetchStsPolicy('example.test', deps({ trust: undefined })), { ok: false, error: /certificate/ }, 'a CA the system does not trust');
  t.match(await fetchStsPolicy('other.test', deps()), { ok: false, error: /mta-sts\.other\.test.*(altnames|Hostname)/i }, 'a certificate for another name');
  t.match(await fetchStsPolicy('none.test', deps()), { ok: false, error: 'mta-sts.none.test has no address' });
  script = (res) => res.writeHead(301, { location: 'https://elsewhere.test/policy' }).end();
  t.match(await fetchStsPolicy('example.test', deps()), { ok: false, error: /HTTP 301 \(redirects are not followed\)/ });
  script = (res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  t.match(await fetchStsPolicy('example.test', deps()), { ok: false, error: /HTTP 404/ });
  script = (res) => res.writeHead(200, { 'content-type': 'text/html' }).end(POLICY);
  t.match(await fetchStsPolicy('example.test', deps()), { ok: false, error: /content-type "text\/html"/ });
  script = (res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${POLICY}${'x: y\r\n'.repeat(20_000)}`);
  t.match(await fetchStsPolicy('example.test', deps()), { ok: false, error: /over 65536 bytes/ });
  script = (res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('version: STSv1\r\n');
  };
  t.match(await fetchStsPolicy('example.test', deps({ timeoutMs: 300 })), { ok: false, error: /no policy within 300 ms/ }, 'a server that never finishes');
  script = (res) => res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('version: STSv1\nmode: bogus\n');
  t.match(await fetchStsPolicy('example.test', deps()), { ok: false, error: /mode "bogus"/ }, 'a malformed policy');
});
