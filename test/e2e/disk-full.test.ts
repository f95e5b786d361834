import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * An operator's bad day (docs/operations.md, "Disk full"): the spool on a 20 MiB file system,
 * a burst of large mail while the receiver is down, then the disk filled to the last byte while
 * the receiver and the webhook come back. Nothing may be delivered twice, the webhook must not be
 * stormed, ingress must refuse (452) before the reserve is crossed, and everything must finish
 * once space returns. A real tmpfs: mounting one needs root (CI runs as root); elsewhere the test
 * says why it is skipped.
 */
const MiB = 1_048_576;
const MIN_FREE = 8 * MiB;
const SECRET = 's';

const dir = tempDir();
const mountPoint = join(dir.path, 'small');
mkdirSync(mountPoint);
const mounted = ((): string | undefined => {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mountPoint], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a 20 MiB tmpfs here (${String((err as Error).message).split('\n')[0]}); needs root`;
  }
})();

let world: World;
let tern: RunningTern;
const receiver = new WebhookReceiver(SECRET);

t.teardown(async () => {
  await tern?.stop();
  await world?.close();
  await receiver.stop();
  if (!mounted) execFileSync('umount', ['-l', mountPoint]);
  dir.remove();
});

const freeBytes = async (): Promise<number> => {
  const s = await statfs(mountPoint);
  return s.bavail * s.bsize;
};

/** Fill the file system to its last byte: every later write fails with ENOSPC. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x7a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch {
    // ENOSPC: full
  } finally {
    closeSync(fd);
  }
}

t.test('a full spool disk: 452 before the reserve, no duplicate delivery, no webhook storm, full recovery', { skip: mounted }, async (t) => {
  world = await startWorld();
  const sink = world.sinks.get('127.0.0.2')!;
  sink.patience.maxSessions = 0; // down: every session is greeted with 421
  receiver.answer = () => ({ status: 503 });
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(mountPoint, 'spool'),
    spool: { min_free: '8MiB' },
    delivery: { retry: { base: '500ms', max: '1s', jitter: 0 } },
    feedback: { webhook: { url: await receiver.start(), secret: SECRET, max_batch: 50, max_wait: '50ms', timeout: '1s', backoff_max: '1s', concurrency: 2 } },
  }));

  // 1. A burst of ten 2 MB messages inside the free-space cache's two seconds.
  const big = 'x'.repeat(76) + '\r\n';
  const body = (i: number): string => message({ to: `user${i}@a.test`, subject: `big ${i}`, body: big.repeat(Math.ceil(2_000_000 / big.length)) });
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => sendMail(tern.smtpPort, 'news@campaign.test', [`user${i}@a.test`], body(i))));
  const accepted = replies.flatMap((r, i) => (r.startsWith('250') ? [`user${i}@a.test`] : []));
  const lowest = await freeBytes();
  t.ok(accepted.length >= 2 && accepted.length < 10, `${accepted.length} of 10 accepted, the rest refused: ${[...new Set(replies.filter((r) => !r.startsWith('250')).map((r) => r.slice(0, 9)))].join(', ')}`);
  t.ok(replies.every((r) => r.startsWith('250') || r.startsWith('452 4.3.1')), 'refusals are 452 4.3.1 (try again later)');
  t.ok(lowest >= MIN_FREE, `${(lowest / MiB).toFixed(1)} MiB free after the burst: the ${MIN_FREE / MiB} MiB reserve is not crossed`);

  // 2. The disk fills to the last byte; then the receiver and the webhook come back.
  await until(() => tern.logs.some((l) => l.event === 'retry'), 10_000, 'a deferral journalled while there was room');
  fill(join(mountPoint, 'filler'));
  t.equal(await freeBytes(), 0, 'the disk is full');
  // Free space is measured at most every 2 s: the refusal comes within that.
  let tries = 0;
  const late = await until(async () => {
    const to = `late${tries++}@a.test`;
    const reply = await sendMail(tern.smtpPort, 'news@campaign.test', [to], message({ to }));
    if (reply.startsWith('250')) accepted.push(to);
    return reply.startsWith('250') ? undefined : reply;
  }, 5_000, 'new mail refused');
  t.match(late, /^452 4\.3\.1/, 'new mail is refused while the disk is full');
  const logLinesBefore = tern.logs.length;
  const postsBefore = receiver.batches.length;
  const fullFrom = Date.now();
  receiver.answer = () => ({ status: 200 });
  sink.patience.maxSessions = undefined;
  await until(() => new Set(sink.received.flatMap((m) => m.rcptTo)).size === accepted.length, 30_000, 'every accepted message delivered');
  // Long enough for several rounds of retried writes (every 5 s) and webhook back-off.
  await until(() => Date.now() - fullFrom > 12_000, 20_000);
  const duringFull = (Date.now() - fullFrom) / 1000;
  const posts = receiver.batches.length - postsBefore;
  t.same(sink.received.flatMap((m) => m.rcptTo).sort(), [...accepted].sort(), 'each accepted message delivered exactly once while nothing could be recorded');
  t.ok(posts / duringFull <= 5, `${posts} webhook POSTs in ${duringFull.toFixed(0)} s of a full disk (bounded by the back-off; was ~960/s)`);
  const logLines = tern.logs.length - logLinesBefore;
  t.ok(logLines < 200, `${logLines} log lines in ${duringFull.toFixed(0)} s of a full disk (was 49 MB in 98 s)`);

  // 3. Space returns: every outcome is recorded and reported, and mail is taken again.
  rmSync(join(mountPoint, 'filler'));
  const delivered = (): string[] => receiver.acknowledged.filter((e) => e.type === 'delivered').map((e) => e.recipient);
  await until(() => accepted.every((r) => delivered().includes(r)), 30_000, 'a delivered event for every accepted recipient');
  t.same(sink.received.flatMap((m) => m.rcptTo).sort(), [...accepted].sort(), 'still exactly once after recovery');
  await until(async () => (await sendMail(tern.smtpPort, 'news@campaign.test', ['after@a.test'], message({ to: 'after@a.test' }))).startsWith('250'), 10_000, 'mail accepted again');
  t.comment(`disk-full run: ${accepted.length}/10 accepted, ${(lowest / MiB).toFixed(1)} MiB lowest free, ${posts} POSTs and ${logLines} log lines in ${duringFull.toFixed(0)} s full, ${sink.received.length} deliveries`);
});
