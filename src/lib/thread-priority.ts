import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** libuv's thread pool (DKIM signing, fsync, file I/O) and V8's (concurrent GC, JIT compiling). */
const HELPER_THREADS = new Set(['libuv-worker', 'V8Worker']);

/**
 * Lower the scheduling priority of the helper threads below the event loop's, on Linux. The
 * event loop is the one serial stage: on a busy machine, each job handed to the pool woke a
 * worker that pre-empted it, and the loop lost about 15 % of its time waiting for a CPU. V8's
 * helpers did the same with their marking and compiling bursts. Niced, helper work still gets
 * the CPU time the loop leaves over (the loop sleeps whenever it waits on that work); the DKIM
 * relay bench ran ~15 % faster for the pool and again faster, and steadier, for V8's threads
 * (docs/performance.md).
 *
 * libuv starts all its pool threads at the first pool request, so call this once some file or
 * crypto work has run. Returns how many threads were changed; 0 where /proc is unavailable.
 */
export function lowerHelperThreadPriority(nice: number): number {
  if (nice === 0 || process.platform !== 'linux') return 0;
  let changed = 0;
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      if (!HELPER_THREADS.has(readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim())) continue;
      // setpriority(2) with a thread id changes that thread only, on Linux.
      setPriority(Number(tid), nice);
      changed++;
    } catch {
      // A thread that exited meanwhile, or a sandbox that forbids it: leave it be.
    }
  }
  return changed;
}
