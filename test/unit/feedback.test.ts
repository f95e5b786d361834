import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { createFeedback } from '../../src/feedback/index.ts';
import { openOutbox } from '../../src/feedback/outbox.ts';
import { systemClock } from '../../src/lib/clock.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';

const event = (i: number): FeedbackEvent => ({
  id: `Q${i}.0.r`, type: 'relayed', status: 'taken_into_account', time: new Date().toISOString(), queue_id: `Q${i}`, message_id: '<m@x>', sender: 's@x.test', recipient: `r${i}@y.test`, meta: { campaign: 'c1' },
});

t.test('without a webhook, events a crash left unacknowledged are marked done at restart', async (t) => {
  const dir = tempDir('tern-feedback-');
  t.teardown(() => dir.remove());
  // A crash between the outbox write and its acknowledgement (which nothing waits for).
  const outbox = openOutbox({ dir: join(dir.path, 'outbox'), segmentBytes: 1_048_576, maxBytes: 1 << 30, retentionMs: 86_400_000, now: () => Date.now(), onDrop: () => undefined });
  await outbox.recover(() => undefined);
  await outbox.append([event(1), event(2)]);
  await outbox.close();

  const feedback = createFeedback({ dir: dir.path, webhooks: [], retentionMs: 86_400_000, maxDiskBytes: 1 << 30 }, { clock: systemClock, log: pino({ level: 'silent' }) });
  const ledger = await feedback.recover();
  t.ok(ledger.relayed.has('Q1') && ledger.relayed.has('Q2'), 'the events still count for reconciliation');
  t.equal(feedback.stats().pending, 0, 'nothing left waiting for a webhook that does not exist');
  t.match(feedback.kpi('campaign', 'c1'), { relayed: 2 });
  await feedback.stop();
});
