/**
 * The admin API's door (src/admin/access.ts) and the config rule that keeps a listener reachable
 * from the network from running without one.
 */
import t from 'tap';
import { checkBearer, MAX_AUTHORIZATION_BYTES } from '../../../src/admin/access.ts';
import { validateConfig } from '../../../src/config/index.ts';
import { isLoopbackListen } from '../../../src/lib/net.ts';

t.test('a bearer header: right, wrong, missing, malformed, oversize, or no token configured', async (t) => {
  t.same(checkBearer('Bearer s3cret', 's3cret'), { ok: true });
  t.same(checkBearer('bearer   s3cret ', 's3cret'), { ok: true }, 'the scheme is case-insensitive (RFC 7235), spaces around the token are not part of it');
  t.match(checkBearer('Bearer s3cre', 's3cret'), { ok: false, status: 403 }, 'a prefix of the token');
  t.match(checkBearer('Bearer s3cret-and-more', 's3cret'), { ok: false, status: 403 }, 'the token and more');
  t.match(checkBearer(undefined, 's3cret'), { ok: false, status: 401 });
  t.match(checkBearer('', 's3cret'), { ok: false, status: 401 });
  t.match(checkBearer('s3cret', 's3cret'), { ok: false, status: 401, error: /Bearer/ }, 'the token without the scheme');
  t.match(checkBearer('Basic czNjcmV0', 's3cret'), { ok: false, status: 401 });
  t.match(checkBearer('Bearer a b', 'a b'), { ok: false, status: 401 }, 'two words are not one token');
  t.match(checkBearer(`Bearer ${'x'.repeat(MAX_AUTHORIZATION_BYTES)}`, 's3cret'), { ok: false, status: 401, error: /over/ });
  t.match(checkBearer('Bearer anything', ''), { ok: false, status: 401, error: /admin.token is not set/ }, 'no token configured: the API is closed, not open');
});

t.test('loopback listeners', async (t) => {
  for (const yes of ['127.0.0.1:8025', '127.8.9.10:1', 'localhost:8025', '[::1]:8025', '[::ffff:127.0.0.1]:8025']) t.ok(isLoopbackListen(yes), yes);
  for (const no of ['0.0.0.0:8025', ':8025', '[::]:8025', '10.0.0.5:8025', 'admin.example.com:8025', '128.0.0.1:80']) t.notOk(isLoopbackListen(no), no);
});

t.test('admin.listen off loopback without admin.token is a config error naming the key; $TERN_ADMIN_TOKEN supplies it', async (t) => {
  const open = validateConfig({ admin: { listen: '0.0.0.0:8025' } }, 'test', '/', {});
  t.match(open, { ok: false, problems: [{ path: 'admin.token', problem: /must be set when admin.listen \(0\.0\.0\.0:8025\) is not a loopback address/ }] });
  t.ok(validateConfig({ admin: { listen: '127.0.0.1:8025' } }, 'test', '/', {}).ok, 'loopback without a token starts (its API stays closed)');
  const fromEnv = validateConfig({ admin: { listen: '0.0.0.0:8025' } }, 'test', '/', { TERN_ADMIN_TOKEN: 'from-env' });
  t.ok(fromEnv.ok && fromEnv.config.admin.token === 'from-env', 'the environment\'s token');
  const overrides = validateConfig({ admin: { token: 'in-file' } }, 'test', '/', { TERN_ADMIN_TOKEN: 'from-env' });
  t.ok(overrides.ok && overrides.config.admin.token === 'from-env', 'and it wins over the file\'s');
  t.match(validateConfig({ admin: { token: 'two words' } }, 'test', '/', {}), { ok: false, problems: [{ path: 'admin.token', problem: /printable ASCII without spaces/ }] });
});
