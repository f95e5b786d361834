import t from 'tap';
import { validateConfig } from '../../../src/config/index.ts';
import { DEFAULT_LIMITS } from '../../../src/ingress/smtp-server.ts';

const camel = (key: string): string => key.replace(/_(\w)/g, (_, c: string) => c.toUpperCase());

t.test('smtp.limits defaults in the config schema are the listener\'s DEFAULT_LIMITS, key for key', async (t) => {
  const loaded = validateConfig({}, 'test', process.cwd());
  if (!loaded.ok) throw new Error('defaults must be valid');
  const fromConfig = Object.fromEntries(Object.entries(loaded.config.smtp.limits).map(([k, v]) => [camel(k), v]));
  t.same(fromConfig, DEFAULT_LIMITS);
});

t.test('smtp.limits takes durations and sizes in words, and refuses unknown keys', async (t) => {
  const loaded = validateConfig({ smtp: { limits: { session_deadline: '2m', header_size: '64KiB', error_limit: 5 } } }, 'test', process.cwd());
  t.match(loaded, { ok: true, config: { smtp: { limits: { session_deadline: 120_000, header_size: 65_536, error_limit: 5, line_length: 998 } } } });
  const bad = validateConfig({ smtp: { limits: { error_limits: 5 } } }, 'test', process.cwd());
  t.match(bad, { ok: false, problems: [{ path: /smtp\.limits\.error_limits/ }] });
});
