import { spawnSync } from 'node:child_process';
import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
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
  const res = await fetch(`http://127.0.0.1:${tern.adminPort}${path}`);
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
