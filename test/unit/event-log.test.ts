import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openEventLog } from '../../src/feedback/event-log.ts';
import type { FeedbackEvent } from '../../src/model/event.ts';
import { tempDir } from '../support/daemon.ts';

const event = (i: number): FeedbackEvent => ({
  id: `Q${i}.0.r`, type: 'relayed', status: 'taken_into_account', time: '2026-11-23T00:00:00.000Z', queue_id: `Q${i}`, message_id: '<m@x>', sender: 's@x.test', recipient: `r${i}@y.test`, meta: {},
});

t.test('the event log is JSON lines, rotated at max_size, keeping `keep` old files', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'events.jsonl');
  const log = openEventLog({ path, maxBytes: 1_000, keep: 2 });
  for (let i = 0; i < 40; i++) await log.write([event(i)]);
  await log.close();
  const files = readdirSync(dir.path).sort();
  t.same(files, ['events.jsonl', 'events.jsonl.1', 'events.jsonl.2'], 'the oldest rotated files are gone');
  const read = (p: string): FeedbackEvent[] => readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as FeedbackEvent);
  const kept = [...read(`${path}.2`), ...read(`${path}.1`), ...read(path)].map((e) => Number(e.queue_id.slice(1)));
  t.equal(kept.at(-1), 39, 'the newest event is last');
  t.ok(kept.every((n, i) => i === 0 || n === (kept[i - 1] as number) + 1), 'oldest to newest, no gap, across the rotated files');
  t.ok(kept[0] as number > 0, 'the oldest lines were rotated away');
});
