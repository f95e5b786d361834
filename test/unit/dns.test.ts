import t from 'tap';
import { createResolver, nodeStyleResolver, orderHosts, resolveServers } from '../../src/dns/index.ts';
import type { Clock } from '../../src/lib/clock.ts';
import { startDnsZone, type DnsZone } from '../support/dns-zone.ts';
import { STANDARD_ZONE } from '../support/world.ts';

let zone: DnsZone;
t.before(async () => {
  zone = await startDnsZone({
    ...STANDARD_ZONE,
    'multi.test': { mx: [{ exchange: 'b.mx.test', priority: 20 }, { exchange: 'a.mx.test', priority: 10 }, { exchange: 'gone.mx.test', priority: 5 }] },
    'a.mx.test': { a: ['127.0.0.11'] },
    'b.mx.test': { a: ['127.0.0.12', '127.0.0.13'] },
    'nomx-noa.test': {},
    'hang.test': { silent: true },
  });
});
t.teardown(() => zone.close());

/** A clock the test moves by hand, so TTL expiry needs no sleeping. */
function manualClock(): Clock & { advance(ms: number): void } {
  let now = 1_000_000;
  return { now: () => now, at: () => ({ cancel: () => undefined }), advance: (ms) => { now += ms; } };
}

const options = { timeout: 200, attempts: 2, negative_ttl: 60_000, cache_size: 1000 };

t.test('routes: MX order, implicit MX, null MX, NXDOMAIN', async (t) => {
  const r = createResolver({ ...options, servers: [zone.server] }, manualClock());
  const multi = await r.route('Multi.Test.');
  t.match(multi, { kind: 'route', site: 'a.mx.test,b.mx.test,gone.mx.test', implicit: false });
  if (multi.kind === 'route') t.same(multi.hosts.map((h) => h.name), ['a.mx.test', 'b.mx.test'], 'preference order; an MX without address is skipped');
  t.match(await r.route('b.test'), { kind: 'route', implicit: true, hosts: [{ name: 'b.test', addresses: ['127.0.0.3'] }] });
  t.same(await r.route('null.test'), { kind: 'null-mx' });
  t.same(await r.route('missing.test'), { kind: 'nxdomain' });
  t.same(await r.route('nomx-noa.test'), { kind: 'nxdomain' }, 'no MX and no address: nowhere to deliver');
  t.match(await r.route('servfail.test'), { kind: 'temporary' });
});

t.test('answers are cached for their TTL; negative answers for negative_ttl', async (t) => {
  const clock = manualClock();
  const r = createResolver({ ...options, servers: [zone.server] }, clock);
  const count = (name: string) => zone.queries.filter((q) => q.startsWith(`${name}/`)).length;
  const before = count('a.test');
  await r.route('a.test');
  await r.route('a.test');
  t.equal(count('a.test'), before + 1, 'second lookup from cache');
  clock.advance(301_000);
  await r.route('a.test');
  t.equal(count('a.test'), before + 2, 'asked again after the 300 s TTL');
  const nx = count('nx2.test');
  await r.route('nx2.test');
  await r.route('nx2.test');
  t.equal(count('nx2.test'), nx + 1, 'NXDOMAIN cached');
  clock.advance(61_000);
  await r.route('nx2.test');
  t.equal(count('nx2.test'), nx + 2, 'until negative_ttl passes');
});

t.test('a route is built once, used until a record it came from expires, and still spreads load', async (t) => {
  const clock = manualClock();
  const r = createResolver({ ...options, servers: [zone.server] }, clock);
  zone.set('built.test', { mx: [{ exchange: 'one.built.test', priority: 10 }, { exchange: 'two.built.test', priority: 10 }] });
  zone.set('one.built.test', { a: ['127.0.0.21'] });
  zone.set('two.built.test', { a: ['127.0.0.22'] });
  const asked = () => zone.queries.filter((q) => q.includes('built.test/')).length;
  const addresses = async () => {
    const route = await r.route('built.test');
    return route.kind === 'route' ? route.hosts.flatMap((h) => h.addresses).sort() : [];
  };
  t.same(await addresses(), ['127.0.0.21', '127.0.0.22']);
  const queries = asked();
  const orders = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const route = await r.route('built.test');
    if (route.kind === 'route') orders.add(route.hosts.map((h) => h.name).join());
  }
  t.equal(asked(), queries, 'no query while every record is cached');
  t.same([...orders].sort(), ['one.built.test,two.built.test', 'two.built.test,one.built.test'], 'equal preferences shuffled on every use');
  zone.set('two.built.test', { a: ['127.0.0.23'] });
  t.same(await addresses(), ['127.0.0.21', '127.0.0.22'], 'the old address until its TTL passes');
  clock.advance(301_000);
  t.same(await addresses(), ['127.0.0.21', '127.0.0.23'], 'rebuilt from fresh records');
  t.ok(asked() > queries);
});

t.test('a silent server times out and the next server is asked', async (t) => {
  const r = createResolver({ ...options, servers: ['127.0.0.1:9', zone.server] }, manualClock());
  t.match(await r.route('a.test'), { kind: 'route' });
  const hung = createResolver({ ...options, servers: [zone.server] }, manualClock());
  const started = Date.now();
  t.match(await hung.route('hang.test'), { kind: 'temporary', detail: /DNS timeout after 200ms/ });
  t.ok(Date.now() - started < 2_000, 'bounded by timeout × attempts');
});

t.test('concurrent lookups of one name share one query', async (t) => {
  const r = createResolver({ ...options, servers: [zone.server] }, manualClock());
  const before = zone.queries.filter((q) => q.startsWith('fallback.test/')).length;
  await Promise.all(Array.from({ length: 20 }, () => r.resolveMx('fallback.test')));
  t.equal(zone.queries.filter((q) => q.startsWith('fallback.test/')).length, before + 1);
});

t.test('equal preferences are shuffled; servers default to resolv.conf', async (t) => {
  const hosts = [{ name: 'x', preference: 10, addresses: [] }, { name: 'y', preference: 10, addresses: [] }, { name: 'z', preference: 5, addresses: [] }];
  t.same(orderHosts(hosts, () => 0).map((h) => h.name)[0], 'z');
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) seen.add(orderHosts(hosts).map((h) => h.name).join());
  t.same([...seen].sort(), ['z,x,y', 'z,y,x']);
  t.same(resolveServers(['192.0.2.1', '127.0.0.1:5353', '[::1]:53']), [{ host: '192.0.2.1', port: 53 }, { host: '127.0.0.1', port: 5353 }, { host: '::1', port: 53 }]);
  t.ok(resolveServers([]).length >= 1);
});

t.test('a truncated UDP answer is asked again over TCP', async (t) => {
  const dns2 = (await import('dns2')).default;
  const { Packet } = dns2;
  const { freePort } = await import('../support/ports.ts');
  const port = await freePort();
  let tcpQueries = 0;
  const answer = (request: any, truncated: boolean): any => {
    const response: any = Packet.createResponseFromRequest(request);
    const q = request.questions[0];
    if (truncated) response.header.tc = 1;
    else if (q.type === Packet.TYPE.MX) response.answers.push({ name: q.name, type: Packet.TYPE.MX, class: Packet.CLASS.IN, ttl: 60, exchange: 'mx.big.test', priority: 10 });
    else if (q.type === Packet.TYPE.A) response.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 60, address: '127.0.0.7' });
    return response;
  };
  const udp = dns2.createUDPServer((request: any, send: (r: any) => void) => send(answer(request, true)));
  const tcp = dns2.createTCPServer((request: any, send: (r: any) => void) => {
    tcpQueries++;
    send(answer(request, false));
  });
  await new Promise<void>((resolve) => {
    udp.once('listening', () => resolve());
    udp.listen(port, '127.0.0.1');
  });
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    udp.close();
    tcp.close();
  });
  const r = createResolver({ ...options, servers: [`127.0.0.1:${port}`] }, manualClock());
  t.match(await r.route('big.test'), { kind: 'route', hosts: [{ name: 'mx.big.test', addresses: ['127.0.0.7'] }] });
  t.ok(tcpQueries >= 2, 'MX and A both retried over TCP');
});

t.test('the node-style adapter answers as dns.promises.resolve does, with its error codes', async (t) => {
  const lookups: string[] = [];
  const r = createResolver({ ...options, servers: [zone.server] }, manualClock(), (type, result) => lookups.push(`${type}:${result}`));
  const resolve = nodeStyleResolver(r);
  t.same(await resolve('multi.test', 'MX'), [{ exchange: 'b.mx.test', priority: 20 }, { exchange: 'a.mx.test', priority: 10 }, { exchange: 'gone.mx.test', priority: 5 }]);
  t.same(await resolve('b.mx.test', 'A'), ['127.0.0.12', '127.0.0.13']);
  await t.rejects(resolve('b.mx.test', 'AAAA'), { code: 'ENODATA' }, 'no AAAA: ENODATA');
  await t.rejects(resolve('b.test', 'MX'), { code: 'ENODATA' }, 'an implicit MX is no MX record');
  t.same(await resolve('null.test', 'MX'), [{ exchange: '', priority: 0 }]);
  await t.rejects(resolve('missing.test', 'TXT'), { code: 'ENOTFOUND' });
  await t.rejects(resolve('servfail.test', 'TXT'), { code: 'ETIMEOUT' }, 'every server failed: temporary');
  await t.rejects(resolve('b.test', 'PTR'), { code: 'ENOTFOUND' }, 'types Tern does not ask for');
  t.ok(lookups.includes('MX:answer') && lookups.includes('TXT:nxdomain') && lookups.includes('TXT:temporary'), `each query reported once, by type and result: ${lookups.join(' ')}`);
});
