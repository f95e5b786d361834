import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import t from 'tap';
import { lowerHelperThreadPriority } from '../../src/lib/thread-priority.ts';

const SCHED_OTHER = 0;
const SCHED_IDLE = 5;
const HELPERS = ['libuv-worker', 'V8Worker'];

/** Niceness and scheduling policy of each thread of this process, by name ("main" for the event loop's). */
function threads(): { name: string; nice: number; policy: number }[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const text = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const name = tid === String(process.pid) ? 'main' : readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim();
    return { name, nice: Number(fields[16]), policy: Number(fields[38]) };
  });
}

const helpers = () => threads().filter((th) => HELPERS.includes(th.name));
const others = () => threads().filter((th) => !HELPERS.includes(th.name));

function hasChrt(): boolean {
  try {
    execFileSync('chrt', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('libuv\'s and V8\'s helper threads run below the event loop', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  await stat('.'); // libuv starts its pool threads at the first request
  for (const name of HELPERS) t.ok(helpers().some((th) => th.name === name), `${name} threads found`);

  t.same(await lowerHelperThreadPriority({ nice: 0, idle: false }), { threads: 0, niced: 0, idle: 0 }, 'nice 0 without idle changes nothing');
  t.ok(helpers().every((th) => th.nice === 0 && th.policy === SCHED_OTHER));

  // chrt refused (a sandbox, or util-linux missing): the threads are still niced, and the result says why.
  const asked: string[][] = [];
  const refused = await lowerHelperThreadPriority({ nice: 10, idle: true }, async (args) => {
    asked.push([...args]);
    return 'chrt: failed to set pid 7\'s policy: Operation not permitted';
  });
  const count = helpers().length;
  t.equal(refused.threads, count);
  t.equal(refused.niced, count, 'every helper niced');
  t.equal(refused.idle, 0);
  t.match(refused.problem, /Operation not permitted/);
  t.equal(asked.length, count, 'chrt asked once per helper thread');
  t.same(asked[0]?.slice(0, 3), ['--idle', '--pid', '0']);
  t.ok(helpers().every((th) => th.nice === 10 && th.policy === SCHED_OTHER), 'niced, policy unchanged');

  const result = await lowerHelperThreadPriority({ nice: 19, idle: true });
  t.ok(helpers().every((th) => th.nice === 19), 'every helper thread at nice 19');
  if (hasChrt()) {
    t.same({ idle: result.idle, problem: result.problem }, { idle: count, problem: undefined }, 'every helper moved by chrt');
    t.ok(helpers().every((th) => th.policy === SCHED_IDLE), 'every helper thread SCHED_IDLE');
  } else {
    t.match(result.problem, /chrt \(util-linux\) is not installed/);
  }
  t.ok(others().every((th) => th.nice === 0 && th.policy === SCHED_OTHER), 'the event loop and the other threads keep their priority');
  await stat('.');
  t.pass('the pool still works');
});
