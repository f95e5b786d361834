import t from 'tap';
import { drainView, judgeReadiness } from '../../../src/admin/readiness.ts';

const fine = { spool: true, listening: true, outboxStalledMs: 0 };
const STALL = 15 * 60_000;

t.test('every shard fine: ready, each check ok', async (t) => {
  t.same(judgeReadiness([fine, fine], STALL), { status: 'ready', checks: { shards: 'ok', smtp: 'ok', spool: 'ok', outbox: 'ok' } });
});

t.test('each failing check makes the node not ready and says why', async (t) => {
  const silent = judgeReadiness([fine, undefined], STALL);
  t.equal(silent.status, 'not ready');
  t.equal(silent.checks.shards, '1 of 2 shards did not answer');

  const full = judgeReadiness([fine, { ...fine, spool: false }], STALL);
  t.equal(full.status, 'not ready');
  t.match(full.checks.spool, /spool.min_free.*452 4\.3\.1/);
  t.equal(full.checks.smtp, 'ok');

  const stopping = judgeReadiness([{ ...fine, listening: false }], STALL);
  t.equal(stopping.status, 'not ready');
  t.match(stopping.checks.smtp, /not accepting/);

  const wedged = judgeReadiness([fine, { ...fine, outboxStalledMs: STALL + 1_000 }], STALL);
  t.equal(wedged.status, 'not ready');
  t.match(wedged.checks.outbox, /waited 901 s.*outbox_stall: 900 s/);
});

t.test('an outbox exactly at the limit is still ready; a shard that did not answer is not counted twice', async (t) => {
  t.equal(judgeReadiness([{ ...fine, outboxStalledMs: STALL }], STALL).status, 'ready');
  const none = judgeReadiness([undefined], STALL);
  t.same(none.checks, { shards: '1 of 1 shards did not answer', smtp: 'ok', spool: 'ok', outbox: 'ok' });
});

t.test('a draining node is not ready (the balancer moves on) and says how far its drain is', async (t) => {
  const since = Date.parse('2026-12-06T10:00:00Z');
  const draining = judgeReadiness([{ ...fine, listening: false }], STALL, 'ok', since);
  t.equal(draining.status, 'not ready');
  t.equal(draining.checks.smtp, 'closed: draining since 2026-12-06T10:00:00.000Z (POST /api/v1/drain)');
  t.equal(draining.checks.cluster, 'ok');
  const idle = { active: 0, recipients: 7, delivery: { connections: 0, waiting: 0 } };
  t.same(drainView(undefined, idle), { draining: false, since: null, finished: false, active: 0, connections: 0, recipients: 7 }, 'not draining: never finished');
  t.same(drainView(since, idle), { draining: true, since: '2026-12-06T10:00:00.000Z', finished: true, active: 0, connections: 0, recipients: 7 }, 'deferred mail stays for after the restart');
  t.match(drainView(since, { ...idle, active: 2 }), { finished: false, active: 2 }, 'a delivery in progress');
  t.match(drainView(since, { ...idle, delivery: { connections: 1, waiting: 0 } }), { finished: false, connections: 1 }, 'a connection still open');
  t.match(drainView(since, { ...idle, delivery: { connections: 0, waiting: 3 } }), { finished: false }, 'mail waiting for a connection');
});
