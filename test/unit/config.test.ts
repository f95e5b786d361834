import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig, parseConfigText, resolveConfigPath } from '../../src/config/index.ts';
import { tempDir } from '../support/daemon.ts';
import { makeTestCerts } from '../support/tls-certs.ts';

t.test('no file means built-in defaults', async (t) => {
  const loaded = loadConfig(undefined);
  t.ok(loaded.ok);
  if (!loaded.ok) return;
  t.same(loaded.config.smtp.listen, ['127.0.0.1:2525']);
  t.equal(loaded.config.delivery.validity, 3 * 86_400_000, 'default validity is 3 days');
  t.equal(loaded.config.delivery.retry.base, 20 * 60_000, 'retries start at 20 minutes');
  t.equal(loaded.config.shaping.defaults.max_connections, 10);
  t.equal(loaded.config.shaping.defaults.max_messages_per_connection, 100);
});

t.test('the BRIEF example parses, with units converted', async (t) => {
  const loaded = parseConfigText(`
hostname: mta.example.com
smtp:
  listen: ["127.0.0.1:2525", "[::1]:2525"]
  max_message_size: 25MB
  max_recipients: 1000
  allow_networks: ["127.0.0.0/8", "::1/128"]
  auth: { users: [{ username: campaign, password: secret }] }
  tls: { cert: /etc/tern/tls.crt, key: /etc/tern/tls.key }
admin: { listen: "127.0.0.1:8025", token: change-me }
spool: { dir: ./var/spool }
dns: { servers: ["127.0.0.1:5353"] }
delivery: { port: 25, validity: 3d }
dkim:
  keys:
    - { domain: example.com, selector: s2026, key_file: ./keys/example.com.s2026.pem }
shaping:
  defaults: { max_connections: 10, max_messages_per_connection: 100, max_message_rate: 100/s }
feedback:
  webhook: { url: "http://127.0.0.1:9900/events", secret: change-me }
`, '/etc/tern/tern.yaml');
  t.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.problems));
  if (!loaded.ok) return;
  t.equal(loaded.config.smtp.max_message_size, 25_000_000);
  t.same(loaded.config.shaping.defaults.max_message_rate, { count: 100, perMs: 1000 });
  t.equal(loaded.config.spool.dir, '/etc/tern/var/spool', 'relative paths are relative to the config file');
  t.equal(loaded.config.dkim.keys[0]!.key_file, '/etc/tern/keys/example.com.s2026.pem');
});

t.test('every problem is reported with its key path', async (t) => {
  const loaded = parseConfigText(`
smtp:
  listen: ["nowhere"]
  max_recipients: 0
  max_clients: lots
  colour: blue
delivery: { validity: 3 days, retry: { base: soon } }
dkim: { keys: [{ domain: example.com, selector: s1 }] }
shaping: { defaults: { max_message_rate: fast } }
tuning: { pool_nice: 25, pool_idle: sometimes }
`, 'bad.yaml');
  t.notOk(loaded.ok);
  if (loaded.ok) return;
  const byPath = Object.fromEntries(loaded.problems.map((p) => [p.path, p.problem]));
  t.match(byPath, {
    'smtp.listen[0]': /host:port/,
    'smtp.max_recipients': /1/,
    'smtp.colour': 'unknown key',
    'smtp.max_clients': /expected number, received string/,
    'delivery.validity': /not a duration/,
    'delivery.retry.base': /not a duration/,
    'dkim.keys[0].key_file': 'is required',
    'shaping.defaults.max_message_rate': /not a rate/,
    'tuning.pool_nice': /19/,
    'tuning.pool_idle': /boolean/,
  });
});

t.test('YAML syntax errors and duplicate keys are problems too', async (t) => {
  const broken = parseConfigText('smtp: [unclosed', 'x.yaml');
  t.notOk(broken.ok);
  const dup = parseConfigText('hostname: a.example\nhostname: b.example\n', 'x.yaml');
  t.notOk(dup.ok);
});

t.test('--config, then $TERN_CONFIG, then config/tern.yaml', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  t.equal(resolveConfigPath('a.yaml', {}, '/srv'), '/srv/a.yaml');
  t.equal(resolveConfigPath(undefined, { TERN_CONFIG: '/etc/tern.yaml' }, '/srv'), '/etc/tern.yaml');
  t.equal(resolveConfigPath(undefined, {}, dir.path), undefined, 'none: built-in defaults');
});

t.test('tern check-config exits non-zero and names each problem', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const bad = join(dir.path, 'bad.yaml');
  writeFileSync(bad, 'smtp:\n  listen: 2525\nspool: { dir: 5, extra: 1 }\n');
  const root = new URL('../../', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin/tern.js'), ...args], { encoding: 'utf8', cwd: dir.path });
  const failed = run('check-config', '--config', bad);
  t.equal(failed.status, 1);
  t.match(failed.stderr, /bad\.yaml: 3 problems/);
  t.match(failed.stderr, /smtp\.listen: /);
  t.match(failed.stderr, /spool\.extra: unknown key/);
  const good = join(dir.path, 'good.yaml');
  writeFileSync(good, 'hostname: mta.example.com\n');
  const ok = run('check-config', '--config', good);
  t.equal(ok.status, 0);
  t.match(ok.stdout, /configuration is valid/);
  t.equal(run('check-config').status, 0, 'no file at all: built-in defaults are valid');
  t.equal(run('frobnicate').status, 2);
  t.equal(run('check-config', '--bogus').status, 2);
  t.match(run('check-config', '--config', join(dir.path, 'missing.yaml')).stderr, /cannot read/);
});

/** `tern <command> --config <dir>/<command>.yaml` with `yaml` written there first. */
function ternWith(dir: string, command: 'check-config' | 'start', yaml: string) {
  const file = join(dir, `${command}.yaml`);
  writeFileSync(file, yaml);
  return spawnSync(process.execPath, [new URL('../../bin/tern.js', import.meta.url).pathname, command, '--config', file], { encoding: 'utf8', cwd: dir, timeout: 30_000 });
}

t.test('check-config catches what start would die on: TLS files, URL schemes, zero deadlines', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const check = (yaml: string) => ternWith(dir.path, 'check-config', yaml);
  const schema = check('feedback:\n  webhook: { url: "ftp://hooks.test/e" }\ndelivery:\n  timeouts: { connect: 0s }\ndns: { timeout: 0s }\n');
  t.equal(schema.status, 1);
  t.match(schema.stderr, /feedback\.webhook\.url: must be an http:\/\/ or https:\/\/ URL/);
  t.match(schema.stderr, /delivery\.timeouts\.connect: must be longer than 0/);
  t.match(schema.stderr, /dns\.timeout: must be longer than 0/);

  const missing = check(`smtp:\n  tls: { cert: ${join(dir.path, 'no.crt')}, key: ${join(dir.path, 'no.key')} }\n`);
  t.equal(missing.status, 1);
  t.match(missing.stderr, /smtp\.tls\.cert: cannot read .*no\.crt: ENOENT/);
  t.match(missing.stderr, /smtp\.tls\.key: cannot read .*no\.key: ENOENT/);

  const certs = makeTestCerts('mx.test');
  writeFileSync(join(dir.path, 'good.crt'), certs.good.cert);
  writeFileSync(join(dir.path, 'good.key'), certs.good.key);
  writeFileSync(join(dir.path, 'other.key'), certs.wrongName.key);
  const mismatched = check(`smtp:\n  tls: { cert: ${join(dir.path, 'good.crt')}, key: ${join(dir.path, 'other.key')} }\n`);
  t.equal(mismatched.status, 1);
  t.match(mismatched.stderr, /smtp\.tls: .*good\.crt and .*other\.key are not a certificate and its private key/);
  const swapped = check(`smtp:\n  tls: { cert: ${join(dir.path, 'good.key')}, key: ${join(dir.path, 'good.crt')} }\n`);
  t.equal(swapped.status, 1, 'a key where the certificate goes');
  const good = check(`smtp:\n  tls: { cert: ${join(dir.path, 'good.crt')}, key: ${join(dir.path, 'good.key')} }\n`);
  t.equal(good.status, 0, good.stderr);
});

t.test('start with a config that cannot work writes one JSON line naming every problem and exits 78; a start that fails writes one and exits 1', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const start = (yaml: string) => ternWith(dir.path, 'start', yaml);
  const bad = start(`smtp:\n  tls: { cert: ${join(dir.path, 'no.crt')}, key: ${join(dir.path, 'no.key')} }\ndelivery: { timeouts: { greeting: 0s } }\n`);
  t.equal(bad.status, 78);
  t.equal(bad.stderr, '', 'no stack trace');
  const lines = bad.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(JSON.parse(lines[0] as string), { level: 60, msg: 'configuration is invalid: nothing started', exit: 78, problems: [{ path: 'delivery.timeouts.greeting', problem: 'must be longer than 0' }] });

  const { createServer } = await import('node:net');
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const busy = start(`smtp:\n  listen: ["127.0.0.1:${port}"]\nadmin: { listen: "127.0.0.1:0" }\nspool: { dir: ${join(dir.path, 'spool')}, min_free: 1MB }\ntuning: { threads: 1 }\n`);
  t.equal(busy.status, 1);
  t.equal(busy.stderr, '', 'no stack trace');
  const fatal = busy.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.level === 60);
  t.match(fatal, [{ msg: 'cannot start', exit: 1, err: { code: 'EADDRINUSE' } }], 'one fatal line with the cause');
});

t.test('the shipped example configuration is valid and spells out the spool keys', async (t) => {
  const loaded = loadConfig(new URL('../../config/tern.example.yaml', import.meta.url).pathname);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  t.equal(loaded.config.spool.inline_max, 1_048_576);
  t.equal(loaded.config.spool.segment_size, 64 * 1_048_576);
  t.equal(loaded.config.spool.body_cache, 32 * 1_048_576);
});

t.test('spool size keys are bounded', async (t) => {
  const loaded = parseConfigText('spool:\n  inline_max: 100MiB\n  segment_size: 4KiB\n', 'x.yaml');
  t.same(loaded.ok ? [] : loaded.problems.map((p) => p.path), ['spool.inline_max', 'spool.segment_size']);
});

t.test('two webhook endpoints with one URL are refused', async (t) => {
  const loaded = parseConfigText('feedback:\n  webhook: { url: "http://127.0.0.1:9900/e" }\n  webhooks:\n    - { url: "http://127.0.0.1:9901/e" }\n    - { url: "http://127.0.0.1:9900/e" }\n', 'x.yaml');
  t.same(loaded.ok ? [] : loaded.problems.map((p) => p.path), ['feedback.webhooks[1].url']);
});
