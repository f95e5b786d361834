import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { openSuspensions } from '../../../src/admin/suspensions.ts';
import type { SiteName } from '../../../src/model/ids.ts';
import { suspendedReply, suspensionFor } from '../../../src/model/suspension.ts';
import { tempDir } from '../../support/daemon.ts';

const log = pino({ level: 'silent' });
const HOUR = 3_600_000;

t.test('suspensions are saved before they answer, read back at the next start, and lapse on their own', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  let now = 1_000_000_000_000;
  const clock = { now: () => now, at: () => ({ cancel() {} }) };
  const store = openSuspensions(dir.path, clock as never, log);
  t.same(store.list(), []);
  await store.suspend('domain', 'a.test', HOUR, 'incident');
  await store.suspend('site', 'mx1.b.test,mx2.b.test', 2 * HOUR, '');
  await store.suspend('domain', 'a.test', 3 * HOUR, 'longer now');
  t.same(store.list().map((s) => [s.target, s.name, s.until - now, s.reason]), [['site', 'mx1.b.test,mx2.b.test', 2 * HOUR, ''], ['domain', 'a.test', 3 * HOUR, 'longer now']], 'a second suspend of a domain replaces the first');
  t.match(JSON.parse(readFileSync(join(dir.path, 'suspensions.json'), 'utf8')), { version: 1, suspensions: [{ name: 'mx1.b.test,mx2.b.test' }, { name: 'a.test' }] }, 'on disk');

  const reopened = openSuspensions(dir.path, clock as never, log);
  t.same(reopened.list(), store.list(), 'a restart reads them back');
  now += 2 * HOUR;
  t.same(reopened.list().map((s) => s.name), ['a.test'], 'the site\'s lapsed by itself');
  t.equal(await reopened.resume('site', 'mx1.b.test,mx2.b.test'), undefined, 'a lapsed suspension is not resumed');
  t.match(await reopened.resume('domain', 'a.test'), { name: 'a.test', reason: 'longer now' });
  t.same(openSuspensions(dir.path, clock as never, log).list(), [], 'the resume was saved');
});

t.test('a suspensions file that cannot be read stops the start rather than lift every suspension', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  writeFileSync(join(dir.path, 'suspensions.json'), '{"version":1,"suspensions":[{"tar');
  t.throws(() => openSuspensions(dir.path, { now: () => 0 } as never, log), /JSON/);
  writeFileSync(join(dir.path, 'suspensions.json'), '{"version":7}');
  t.throws(() => openSuspensions(dir.path, { now: () => 0 } as never, log), /not a version 1 suspensions file/);
});

t.test('a domain\'s own suspension comes before its site\'s; lapsed ones hold nothing', async (t) => {
  const site = 'mx1.a.test' as SiteName;
  const list = [
    { target: 'site' as const, name: 'mx1.a.test', reason: 'site', since: 0, until: 100 },
    { target: 'domain' as const, name: 'x.test', reason: 'domain', since: 0, until: 50 },
  ];
  t.equal(suspensionFor(list, 'x.test', site, 10)?.reason, 'domain');
  t.equal(suspensionFor(list, 'y.test', site, 10)?.reason, 'site', 'every domain of the site');
  t.equal(suspensionFor(list, 'x.test', site, 60)?.reason, 'site', 'the domain\'s lapsed; the site\'s still holds');
  t.equal(suspensionFor(list, 'x.test', 'mx.other.test' as SiteName, 60), undefined);
  t.equal(suspensionFor(list, 'y.test', site, 100), undefined, 'at its end it holds no more');
  t.match(suspendedReply(list[0] as never), { code: 451, enhanced: '4.4.5', text: /^site mx1\.a\.test suspended by an operator until 1970-01-01T00:00:00\.100Z: site$/ });
});
