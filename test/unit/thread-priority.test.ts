import { readdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import t from 'tap';
import { lowerPoolPriority } from '../../src/lib/thread-priority.ts';

/** Niceness of each thread of this process, by name ("main" for the event loop's). */
function niceness(): { name: string; nice: number }[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const text = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const name = tid === String(process.pid) ? 'main' : readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim();
    return { name, nice: Number(fields[16]) };
  });
}

t.test('the thread pool runs niced below the event loop; 0 leaves it alone', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  await stat('.'); // libuv starts its pool threads at the first request
  t.equal(lowerPoolPriority(0), 0, 'pool_nice 0 changes nothing');
  t.ok(niceness().filter((th) => th.name === 'libuv-worker').every((th) => th.nice === 0));
  const changed = lowerPoolPriority(19);
  const threads = niceness();
  const pool = threads.filter((th) => th.name === 'libuv-worker');
  t.ok(pool.length > 0 && changed === pool.length, `${changed} pool threads changed`);
  t.ok(pool.every((th) => th.nice === 19), 'every pool thread at nice 19');
  t.equal(threads.find((th) => th.name === 'main')?.nice, 0, 'the event loop keeps its priority');
  await stat('.');
  t.pass('the pool still works');
});
