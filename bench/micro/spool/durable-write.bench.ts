/**
 * Spool design micro-benchmark (docs/adr/0002): how many 10 KB messages per second can be made
 * durable, and at what p99 latency, with 20 concurrent writers — the ingress load of the relay
 * bench. Variants:
 *   tern          the spool as built (ADR 0006): 10 KB messages go to the segment log
 *   tern-files    the spool with inline_max 1 byte, so every message gets a file of its own (ADR 0002):
 *                 temp file, fsync, rename, group-committed directory fsync
 *   dirsync-each  the same with one directory fsync per message (no group commit)
 *   no-fsync      temp file + rename only: the upper bound, not durable against power loss
 *   shared-log    all messages appended to one log, one fdatasync per batch (group commit)
 * Run: node bench/micro/spool/durable-write.bench.ts   (MESSAGES=5000 CONCURRENCY=20)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../src/lib/clock.ts';
import { newQueueId } from '../../../src/model/ids.ts';
import { openSpool } from '../../../src/spool/index.ts';

const MESSAGES = Number(process.env.MESSAGES ?? 5000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 20);
const SIZE = 10 * 1024;
const body = randomBytes(SIZE);

type Writer = ((i: number) => Promise<void>) & { close?: () => Promise<void> };

async function measure(name: string, make: (dir: string) => Writer): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tern-spool-bench-'));
  const write = make(dir);
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < MESSAGES) {
      const i = next++;
      const t0 = performance.now();
      await write(i);
      latencies.push(performance.now() - t0);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  await write.close?.();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Number((latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] as number).toFixed(2));
  console.log(JSON.stringify({
    bench: 'spool-durable-write', variant: name, node: process.version, cpus: cpus().length, msgs: MESSAGES, size: SIZE,
    concurrency: CONCURRENCY, seconds: Number(seconds.toFixed(3)), msg_per_s: Math.round(MESSAGES / seconds), p50_ms: pct(0.5), p99_ms: pct(0.99),
  }));
  rmSync(dir, { recursive: true, force: true });
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  await h.sync();
  await h.close();
}

function ternWriter(dir: string, inlineMax: number): Writer {
  const spool = openSpool({ dir, min_free: 0, inline_max: inlineMax, segment_size: 64 * 1_048_576, body_cache: 32 * 1_048_576 }, systemClock);
  const write = async (): Promise<void> => {
    const id = newQueueId(Date.now());
    const w = await spool.begin(id);
    await w.write(body);
    await w.commit({ id, sender: 's@x.test', recipients: [{ address: 'r@y.test' }], messageId: '<m@x>', meta: {}, receivedAt: 0, expiresAt: 0, smtputf8: false, eightBit: false, client: { ip: '127.0.0.1', helo: 'x' }, bodySize: SIZE });
  };
  return Object.assign(write, { close: () => spool.close() });
}

const variants: Record<string, (dir: string) => Writer> = {
  tern: (dir) => ternWriter(dir, 1_048_576),
  'tern-files': (dir) => ternWriter(dir, 1),
  'dirsync-each': (dir) => async (i) => {
    const tmp = join(dir, `.tmp-${i}`);
    const h = await open(tmp, 'wx');
    await h.write(body);
    await h.sync();
    await h.close();
    await rename(tmp, join(dir, `m${i}`));
    await fsyncDir(dir);
  },
  'no-fsync': (dir) => async (i) => {
    const tmp = join(dir, `.tmp-${i}`);
    const h = await open(tmp, 'wx');
    await h.write(body);
    await h.close();
    await rename(tmp, join(dir, `m${i}`));
  },
  'shared-log': (dir) => {
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    let pending: { resolve: () => void }[] = [];
    let flushing = false;
    const flush = async (): Promise<void> => {
      if (flushing || pending.length === 0) return;
      flushing = true;
      const batch = pending;
      pending = [];
      handle ??= await open(join(dir, 'log'), 'a');
      await handle.writev(batch.map(() => body));
      await handle.datasync();
      for (const p of batch) p.resolve();
      flushing = false;
      void flush();
    };
    return () => new Promise<void>((resolve) => {
      pending.push({ resolve });
      void flush();
    });
  },
};

for (const [name, make] of Object.entries(variants)) await measure(name, make);
