import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import t from 'tap';
import { errorKind, FAULT_LOG_INTERVAL_MS, RepeatedLog } from '../../src/lib/repeated-log.ts';
import type { Clock } from '../../src/lib/clock.ts';

function capture(): { lines: Record<string, unknown>[]; log: Logger } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: pino({ level: 'info' }, sink) };
}

/** A clock read only by now(): RepeatedLog sets no timers. */
function handClock(start: number): Clock & { set(ms: number): void } {
  let now = start;
  return { now: () => now, at: () => ({ cancel: () => undefined }), set: (ms) => void (now = ms) };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('the same fault a thousand times a second is one line a minute, with how many were not logged', async (t) => {
  const { lines, log } = capture();
  const clock = handClock(1_000_000);
  const faults = new RepeatedLog(log, clock);
  const full = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  for (let ms = 0; ms < 2 * FAULT_LOG_INTERVAL_MS + 500; ms += 1) {
    clock.set(1_000_000 + ms);
    faults.error(`write:${errorKind(full)}`, { queue_id: `q${ms}` }, 'spool write failed');
  }
  await flush();
  t.equal(lines.length, 3, 'at 0, at one interval, at two');
  t.notOk('repeated' in (lines[0] as object), 'the first says nothing of repeats');
  t.equal(lines[1]?.repeated, FAULT_LOG_INTERVAL_MS - 1, 'the next counts what it stood for');
  t.equal(lines[2]?.repeated, FAULT_LOG_INTERVAL_MS - 1);
  t.equal(lines[2]?.queue_id, `q${2 * FAULT_LOG_INTERVAL_MS}`, 'each logged line keeps its own fields');
});

t.test('another kind of fault is logged at once, and a kind quiet for an interval starts afresh', async (t) => {
  const { lines, log } = capture();
  const clock = handClock(0);
  const faults = new RepeatedLog(log, clock, 1000);
  faults.warn(errorKind(Object.assign(new Error('x'), { code: 'ENOSPC' })), {}, 'a');
  faults.warn(errorKind(new Error('something else')), {}, 'b');
  faults.warn('ENOSPC', {}, 'a');
  clock.set(5000);
  faults.warn('ENOSPC', {}, 'a');
  await flush();
  t.same(lines.map((l) => [l.msg, l.repeated]), [['a', undefined], ['b', undefined], ['a', 1]]);
  t.equal(lines[0]?.level, 40, 'warn stays warn');
});
