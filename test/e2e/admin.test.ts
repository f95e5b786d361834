import { readFileSync } from 'node:fs';
import { execFile, spawnSync } from 'node:child_process';
import t from 'tap';
import { ADMIN_TOKEN, adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let tern: RunningTern;
const spool = tempDir();

t.before(async () => {
  world = await startWorld();
  tern = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
});

const get = async (path: string) => {
  const res = await adminFetch(tern.adminPort, path);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
};

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

t.test('healthz answers ok', async (t) => {
  t.same(await get('/healthz'), { status: 200, type: 'application/json', body: '{"status":"ok"}\n' });
  t.equal((await get('/nope')).status, 404);
  const post = await fetch(`http://127.0.0.1:${tern.adminPort}/healthz`, { method: 'POST' });
  t.equal(post.status, 405);
});

t.test('/readyz answers 200 with every check ok, without a token', async (t) => {
  const res = await fetch(`http://127.0.0.1:${tern.adminPort}/readyz`);
  t.equal(res.status, 200);
  t.same(await res.json(), { status: 'ready', checks: { shards: 'ok', smtp: 'ok', spool: 'ok', outbox: 'ok' } });
});

t.test('/readyz answers 503 naming the spool while free space is below spool.min_free', async (t) => {
  const full = tempDir();
  const starved = await startTern(testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: full.path, spool: { min_free: '1000TB' } }));
  t.teardown(async () => {
    await starved.stop();
    full.remove();
  });
  const res = await fetch(`http://127.0.0.1:${starved.adminPort}/readyz`);
  t.equal(res.status, 503);
  t.match(await res.json(), { status: 'not ready', checks: { spool: /below spool.min_free/, smtp: 'ok', outbox: 'ok' } });
  t.match(await sendMail(starved.smtpPort, 'a@b.test', ['r@a.test'], message({})).catch((e: Error) => e.message), /452/, 'and ingress does refuse mail, as /readyz said');
  // The image's HEALTHCHECK command as Docker runs it, pointed at these listeners.
  const healthcheck = (port: number) => {
    const line = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8').split('\n').find((l) => l.trim().startsWith('CMD ["node", "-e"'));
    const argv = JSON.parse((line as string).trim().slice(4)) as string[];
    // Asynchronously: the daemon answering it runs in this process.
    return new Promise<number>((resolve) => {
      execFile(process.execPath, argv.slice(1).map((a) => a.replace('127.0.0.1:8025', `127.0.0.1:${port}`)), { timeout: 10_000 }, (err) => resolve(err ? Number((err as { code?: number }).code ?? -1) : 0));
    });
  };
  t.equal(await healthcheck(starved.adminPort), 1, 'docker HEALTHCHECK: unhealthy while the spool is full');
  t.equal(await healthcheck(tern.adminPort), 0, 'healthy where /readyz says ready');
});

t.test('every /api/v1 call needs the bearer token: 401 without, 403 with a wrong one; /healthz and /metrics stay open', async (t) => {
  const base = `http://127.0.0.1:${tern.adminPort}`;
  for (const path of ['/api/v1/queue', '/api/v1/sites', '/api/v1/sites/mx1.a.test', '/api/v1/campaigns/x', '/api/v1/deliveries/x']) {
    const none = await fetch(`${base}${path}`);
    t.equal(none.status, 401, `${path} without a token`);
    t.equal(none.headers.get('www-authenticate'), 'Bearer realm="tern"');
    t.match(await none.json(), { error: /Authorization: Bearer/ });
    const wrong = await fetch(`${base}${path}`, { headers: { authorization: 'Bearer not-the-token' } });
    t.equal(wrong.status, 403, `${path} with a wrong token`);
    t.match(await wrong.json(), { error: /not admin.token/ });
    const malformed = await fetch(`${base}${path}`, { headers: { authorization: ADMIN_TOKEN } });
    t.equal(malformed.status, 401, `${path} with the token but not as Bearer`);
    const right = await adminFetch(tern.adminPort, path);
    t.not(right.status, 401, `${path} with the token`);
    t.not(right.status, 403);
  }
  t.equal((await fetch(`${base}/healthz`)).status, 200, '/healthz needs no token');
  t.equal((await fetch(`${base}/metrics`)).status, 200, '/metrics needs no token');
  const guessed = tern.logs.filter((l) => l.msg === 'admin call refused');
  t.ok(guessed.length >= 1 && guessed.length <= 2, `refusals are logged, not one line per guess (${guessed.length} lines for 15 refusals)`);
});

t.test('metrics count accepted mail, attempts and the waiting queue', async (t) => {
  await sendMail(tern.smtpPort, 'a@campaign.test', ['m1@a.test', 'user-unknown@a.test', 'm2@servfail.test'], message());
  await until(async () => {
    const body = (await get('/metrics')).body;
    // The queue counts a recipient out once its events are on disk, just after the attempt is counted.
    return sample(body, 'tern_delivery_attempts_total{verdict="failed"}') === 1 && sample(body, 'tern_queue_recipients') === 1;
  }, 5_000);
  const { status, type, body } = await get('/metrics');
  t.equal(status, 200);
  t.match(type, /^text\/plain; version=0\.0\.4/);
  t.equal(sample(body, 'tern_messages_accepted_total'), 1);
  t.equal(sample(body, 'tern_recipients_accepted_total'), 3);
  t.equal(sample(body, 'tern_delivery_attempts_total{verdict="delivered"}'), 1);
  t.ok((sample(body, 'tern_delivery_attempts_total{verdict="retry"}') ?? 0) >= 1);
  t.equal(sample(body, 'tern_queue_recipients'), 1, 'the SERVFAIL recipient still waits');
  t.equal(sample(body, 'tern_bounces_total{reason="userunknown",category="hard",type="hard",retry="false"}'), 1);
  t.ok((sample(body, 'tern_bounces_total{reason="networkerror",category="soft",type="soft",retry="true"}') ?? 0) >= 1, 'the SERVFAIL deferral, classified');
  const odd = body.split('\n').filter((l) => l && !l.startsWith('#') && !/^tern_[a-z0-9_]+(\{[^}]*\})? [-0-9.e+NaInf]+$/.test(l));
  t.same(odd, [], 'every series is tern_-prefixed and well formed');
  const queue = JSON.parse((await get('/api/v1/queue')).body) as { recipients: number; scheduled: number };
  t.equal(queue.recipients, 1);
});

// .ci/run installs Debian's prometheus package for promtool, so CI always runs this check.
const hasPromtool = spawnSync('promtool', ['--version']).error === undefined;

t.test('/metrics is clean under promtool check metrics', { skip: hasPromtool ? false : 'promtool is not installed (apt-get install prometheus)' }, async (t) => {
  const { body } = await get('/metrics');
  const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
  t.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  t.equal(`${check.stdout}${check.stderr}`.trim(), '', 'no lint findings');
  t.match(body, /^tern_events_total\{type="relayed"\} /m, 'the BRIEF metrics are present');
  t.match(body, /^tern_queue_recipients /m);
});
