import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** libuv's thread pool (DKIM signing, fsync, file I/O) and V8's (concurrent GC, JIT compiling). */
const HELPER_THREADS = new Set(['libuv-worker', 'V8Worker']);

export interface HelperPriority {
  /** Niceness (0–19) for the helper threads; 0 leaves it. */
  readonly nice: number;
  /** Also move them to SCHED_IDLE, with util-linux's `chrt`. */
  readonly idle: boolean;
}

export interface HelperPriorityResult {
  /** Helper threads found. */
  readonly threads: number;
  readonly niced: number;
  readonly idle: number;
  /** Why SCHED_IDLE could not be set, when it was asked for and failed. */
  readonly problem?: string;
}

/** Runs `chrt`; resolves with an error message, or undefined on success. */
export type RunChrt = (args: readonly string[]) => Promise<string | undefined>;

const runChrt: RunChrt = (args) =>
  new Promise((resolve) => {
    execFile('chrt', args, { timeout: 5_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve(undefined);
      const code = (err as NodeJS.ErrnoException).code;
      resolve(code === 'ENOENT' ? 'chrt (util-linux) is not installed' : String(stderr).trim() || err.message);
    });
  });

/**
 * Lower the scheduling priority of the helper threads below the event loop's, on Linux. The
 * event loop is the one serial stage: on a busy machine, each job handed to the pool woke a
 * worker that pre-empted it, and V8's helpers did the same with their marking and compiling.
 *
 * Nice 19 makes their share small, but under EEVDF a waking thread still pre-empts a busy event
 * loop that has run past its fair share, whatever its niceness: the loop was pre-empted about
 * 1.3 times per relayed message. SCHED_IDLE threads never pre-empt on wake-up and yield at once
 * to a normal thread; that halved those pre-emptions or better, and the DKIM relay bench ran
 * 4–39 % faster in each of four alternating rounds (docs/performance.md). Node has no call for
 * sched_setscheduler(2), so `chrt` sets it, one thread at a time (lowering a policy needs no
 * privilege).
 *
 * libuv starts all its pool threads at the first pool request, so call this once some file or
 * crypto work has run. Off Linux, or without /proc, nothing changes.
 */
export async function lowerHelperThreadPriority(wanted: HelperPriority, chrt: RunChrt = runChrt): Promise<HelperPriorityResult> {
  const none = { threads: 0, niced: 0, idle: 0 };
  if ((wanted.nice === 0 && !wanted.idle) || process.platform !== 'linux') return none;
  const tids = helperThreadIds();
  let niced = 0;
  if (wanted.nice > 0) {
    for (const tid of tids) {
      try {
        // setpriority(2) with a thread id changes that thread only, on Linux.
        setPriority(tid, wanted.nice);
        niced++;
      } catch {
        // A thread that exited meanwhile, or a sandbox that forbids it: leave it be.
      }
    }
  }
  if (!wanted.idle || tids.length === 0) return { threads: tids.length, niced, idle: 0 };
  const problems = await Promise.all(tids.map((tid) => chrt(['--idle', '--pid', '0', String(tid)])));
  const problem = problems.find((p) => p !== undefined);
  return { threads: tids.length, niced, idle: problems.filter((p) => p === undefined).length, ...(problem ? { problem } : {}) };
}

function helperThreadIds(): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  return tasks.filter((tid) => {
    try {
      return HELPER_THREADS.has(readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim());
    } catch {
      return false;
    }
  }).map(Number);
}
