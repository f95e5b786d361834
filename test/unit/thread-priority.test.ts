import { readdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import t from 'tap';
import { lowerHelperThreadPriority } from '../../src/lib/thread-priority.ts';

/** Niceness of each thread of this process, by name ("main" for the event loop's). */
function niceness(): { name: string; nice: number }[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const text = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const name = tid === String(process.pid) ? 'main' : readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim();
    return { name, nice: Number(fields[16]) };
  });
}

const HELPERS = ['libuv-worker', 'V8Worker'];

t.test('libuv\'s and V8\'s helper threads run niced below the event loop; 0 leaves them alone', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  await stat('.'); // libuv starts its pool threads at the first request
  t.equal(lowerHelperThreadPriority(0), 0, 'pool_nice 0 changes nothing');
  t.ok(niceness().filter((th) => HELPERS.includes(th.name)).every((th) => th.nice === 0));
  const changed = lowerHelperThreadPriority(19);
  const threads = niceness();
  const helpers = threads.filter((th) => HELPERS.includes(th.name));
  for (const name of HELPERS) t.ok(helpers.some((th) => th.name === name), `${name} threads found`);
  t.equal(changed, helpers.length, `${changed} helper threads changed`);
  t.ok(helpers.every((th) => th.nice === 19), 'every helper thread at nice 19');
  t.ok(threads.filter((th) => !HELPERS.includes(th.name)).every((th) => th.nice === 0), 'the event loop and the other threads keep their priority');
  await stat('.');
  t.pass('the pool still works');
});
