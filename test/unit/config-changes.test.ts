import t from 'tap';
import { changedKeys, sortChanges } from '../../src/config/index.ts';

t.test('changed keys are named down to the leaves, lists whole', async (t) => {
  const before = { log: { level: 'info' }, smtp: { listen: ['127.0.0.1:25'], limits: { error_limit: 20 } }, admin: { token: 'a' } };
  const after = { log: { level: 'warn' }, smtp: { listen: ['127.0.0.1:25', '[::1]:25'], limits: { error_limit: 20 } }, admin: { token: 'b', readiness: { outbox_stall: 60_000 } } };
  t.same(changedKeys(before, after), ['admin.readiness', 'admin.token', 'log.level', 'smtp.listen']);
  t.same(changedKeys(before, structuredClone(before)), [], 'equal configs: nothing');
});

t.test('live keys and their children apply; anything else waits for a restart', async (t) => {
  t.same(sortChanges(['log.level', 'shaping.defaults.max_connections', 'dkim.keys', 'admin.token', 'admin.listen', 'spool.dir', 'shaping.state_dir', 'feedback.dir']), {
    live: ['log.level', 'shaping.defaults.max_connections', 'dkim.keys', 'admin.token'],
    restart: ['admin.listen', 'spool.dir', 'shaping.state_dir', 'feedback.dir'],
  });
  t.same(sortChanges(['log.levels']).restart, ['log.levels'], 'a prefix of a name is not the name');
});
