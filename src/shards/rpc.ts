import type { Channel } from '../shaping/remote.ts';

/**
 * Requests between the coordinator and a shard over a MessagePort, each answered once. Only the
 * few operator-paced questions go this way (start and stop steps, admin views, reloads): the
 * per-message path never waits on another thread.
 */

interface Request { readonly rpc: number; readonly op: string; readonly arg: unknown }
type Answer = { readonly rpc: number; readonly ok: true; readonly value: unknown } | { readonly rpc: number; readonly ok: false; readonly error: string };

export interface Caller {
  call<T>(op: string, arg?: unknown): Promise<T>;
  /** Every pending call fails with this reason (the shard is gone). */
  fail(reason: Error): void;
}

const isAnswer = (m: unknown): m is Answer => typeof m === 'object' && m !== null && 'rpc' in m && 'ok' in m;
const isRequest = (m: unknown): m is Request => typeof m === 'object' && m !== null && 'rpc' in m && 'op' in m;

export function caller(channel: Channel): Caller {
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let next = 0;
  let failed: Error | undefined;
  channel.on('message', (m) => {
    if (!isAnswer(m)) return;
    const waiting = pending.get(m.rpc);
    pending.delete(m.rpc);
    if (m.ok) waiting?.resolve(m.value);
    else waiting?.reject(new Error(m.error));
  });
  return {
    call<T>(op: string, arg?: unknown): Promise<T> {
      if (failed) return Promise.reject(failed);
      const rpc = next++;
      return new Promise<T>((resolve, reject) => {
        pending.set(rpc, { resolve: resolve as (v: unknown) => void, reject });
        channel.postMessage({ rpc, op, arg } satisfies Request);
      });
    },
    fail(reason) {
      failed = reason;
      for (const waiting of pending.values()) waiting.reject(reason);
      pending.clear();
    },
  };
}

/** Answer requests with `handlers`; an unknown op or a thrown error is answered as an error. */
export function answer(channel: Channel, handlers: Record<string, (arg: unknown) => unknown>): void {
  channel.on('message', (m) => {
    if (!isRequest(m)) return;
    const handler = handlers[m.op];
    const reply = (a: Answer): void => channel.postMessage(a);
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`no such request: ${m.op}`);
        return handler(m.arg);
      })
      .then(
        (value) => reply({ rpc: m.rpc, ok: true, value }),
        (err: unknown) => reply({ rpc: m.rpc, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  });
}
