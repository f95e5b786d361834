import t from 'tap';
import { validateConfig } from '../../src/config/index.ts';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * SIGHUP changes the webhook endpoints of a running daemon (docs/feedback.md, "Changing endpoints"):
 * events that waited for the old first endpoint go to the new one, an added endpoint gets what is
 * recorded from then on, a removed one gets nothing more, and nothing recorded is lost; with no
 * endpoint left, what waited is marked done.
 */
let world: World;
let tern: RunningTern;
const spool = tempDir();
const SECRET = 'reload-secret';
const down = new WebhookReceiver(SECRET);
const moved = new WebhookReceiver(SECRET);
const added = new WebhookReceiver(SECRET);
down.answer = () => ({ status: 503 });
const endpoint = (url: string) => ({ url, secret: SECRET, max_wait: '20ms', timeout: '1s', backoff_max: '200ms' });
let base: Record<string, unknown>;

t.before(async () => {
  world = await startWorld();
  await Promise.all([down.start(), moved.start(), added.start()]);
  base = testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path });
  tern = await startTern({ ...base, feedback: { webhook: endpoint(down.url) } });
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  await Promise.all([down.stop(), moved.stop(), added.stop()]);
  spool.remove();
});

function reload(feedback: Record<string, unknown>) {
  const loaded = validateConfig({ ...base, feedback }, 'test', process.cwd());
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return tern.daemon.reload(loaded.config);
}

const eventsFor = (receiver: WebhookReceiver, recipient: string): string[] => receiver.acknowledged.filter((e) => e.recipient === recipient).map((e) => e.type);

t.test('a moved endpoint gets what waited for the old one; an added one what comes after', async (t) => {
  await sendMail(tern.smtpPort, 'news@campaign.test', ['first@a.test'], message());
  // A refused batch is retried as it was, so the delivered event waits behind the relayed one.
  await until(() => tern.outcomes('first@a.test').some((l) => l.event === 'delivered') && down.batches.some((b) => b.events.some((e) => e.recipient === 'first@a.test')), 10_000, 'the old endpoint to refuse the events');

  const result = reload({ webhook: endpoint(moved.url), webhooks: [endpoint(added.url)] });
  t.match(result, { ok: true, applied: ['feedback.webhook.url', 'feedback.webhooks'], restart: [] });
  await until(() => eventsFor(moved, 'first@a.test').includes('delivered'), 10_000, 'the waiting events at the new endpoint');
  t.same(eventsFor(moved, 'first@a.test'), ['relayed', 'delivered'], 'each once, in order');
  t.ok(moved.batches.every((b) => b.signatureValid), 'signed');

  await sendMail(tern.smtpPort, 'news@campaign.test', ['second@a.test'], message());
  await until(() => eventsFor(moved, 'second@a.test').includes('delivered') && eventsFor(added, 'second@a.test').includes('delivered'), 10_000, 'events at both endpoints');
  t.same(eventsFor(added, 'first@a.test'), [], 'the added endpoint gets only what was recorded after the reload');
  t.same(down.acknowledged, [], 'the old endpoint acknowledged nothing');
  t.ok(tern.logs.some((l) => l.msg === 'reload: webhook endpoints in force'), 'the log says which endpoints are in force');
});

t.test('a removed endpoint gets nothing more; the others go on', async (t) => {
  const before = added.batches.length;
  const result = reload({ webhook: endpoint(moved.url) });
  t.match(result, { ok: true, applied: ['feedback.webhooks'] });
  await until(() => tern.logs.some((l) => l.msg === 'feedback: webhook endpoint removed by a reload; its outbox stays on disk'), 5_000, 'the removal logged');
  await sendMail(tern.smtpPort, 'news@campaign.test', ['third@a.test'], message());
  await until(() => eventsFor(moved, 'third@a.test').includes('delivered'), 10_000, 'events at the remaining endpoint');
  t.equal(added.batches.length, before, 'the removed endpoint was sent nothing');
});

t.test('changed settings of an endpoint apply without losing what waits', async (t) => {
  moved.answer = () => ({ status: 503 });
  await sendMail(tern.smtpPort, 'news@campaign.test', ['fourth@a.test'], message());
  await until(() => tern.outcomes('fourth@a.test').some((l) => l.event === 'delivered') && moved.batches.some((b) => b.status === 503 && b.events.some((e) => e.recipient === 'fourth@a.test')), 10_000, 'the endpoint to refuse');
  const result = reload({ webhook: { ...endpoint(moved.url), max_batch: 1, concurrency: 2 } });
  t.match(result, { ok: true, applied: ['feedback.webhook.concurrency', 'feedback.webhook.max_batch'] });
  moved.answer = () => ({ status: 200 });
  await until(() => eventsFor(moved, 'fourth@a.test').includes('delivered'), 10_000, 'the waiting events sent by the new sender');
  t.same(eventsFor(moved, 'fourth@a.test'), ['relayed', 'delivered']);
  const after = moved.batches.filter((b) => b.status === 200 && b.events.some((e) => e.recipient === 'fourth@a.test'));
  t.ok(after.every((b) => b.events.length === 1), 'sent one event a batch, as max_batch now says');
});

t.test('no endpoint left: what waited is marked done, as at a start with no webhook, and the outbox is not wedged', async (t) => {
  moved.answer = () => ({ status: 503 });
  await sendMail(tern.smtpPort, 'news@campaign.test', ['fifth@a.test'], message());
  await until(() => tern.outcomes('fifth@a.test').some((l) => l.event === 'delivered') && moved.batches.some((b) => b.status === 503 && b.events.some((e) => e.recipient === 'fifth@a.test')), 10_000, 'the endpoint to refuse');
  const result = reload({});
  t.match(result, { ok: true, applied: ['feedback.webhook'] });
  await until(() => tern.logs.some((l) => l.msg === 'feedback: no webhook is configured any more; events left unacknowledged are marked done'), 10_000, 'the backlog marked done');
  const metrics = await (await fetch(`http://127.0.0.1:${tern.adminPort}/metrics`)).text();
  t.match(metrics, /^tern_feedback_pending_events 0$/m, 'nothing waits');
  t.match(metrics, /^tern_feedback_oldest_pending_age_seconds 0$/m);
  t.equal((await fetch(`http://127.0.0.1:${tern.adminPort}/readyz`)).status, 200, 'ready');
});
