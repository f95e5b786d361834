/**
 * The measurements behind ADR 0010 (shards as worker threads): what the building blocks of a
 * sharded Tern cost on this machine, printed as figures, never asserted.
 *
 *   node bench/micro/threads/options.bench.ts            # 2 workers (or THREADS=4 ...)
 *
 * 1. reusePort: N worker threads listen on one port; the kernel spreads connections among them.
 *    Printed: connections each worker got out of CONNECTIONS, and connections a second.
 * 2. A limiter one thread owns, asked over a MessagePort: round trips a second, one request at a
 *    time (a connection lease) and in batches (message grants).
 * 3. The alternative, counters in a SharedArrayBuffer changed with Atomics: operations a second.
 */
import { connect, createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const THREADS = Number(process.env.THREADS ?? 2);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 4000);
const ROUND_TRIPS = Number(process.env.ROUND_TRIPS ?? 200_000);
const BATCH = 32;

type Job = { kind: 'listen'; port: number } | { kind: 'owner' };

if (!isMainThread) {
  const job = workerData as Job;
  if (job.kind === 'listen') {
    let accepted = 0;
    const server = createServer((socket) => {
      accepted++;
      socket.end('220 x\r\n');
    });
    server.listen({ host: '127.0.0.1', port: job.port, reusePort: true }, () => parentPort!.postMessage({ listening: true }));
    parentPort!.on('message', (m: string) => {
      if (m === 'count') parentPort!.postMessage({ accepted });
      if (m === 'close') server.close(() => process.exit(0));
    });
  } else {
    // The owner: answers each request with as many grants as asked.
    parentPort!.on('message', (m: { want: number } | 'close') => {
      if (m === 'close') process.exit(0);
      parentPort!.postMessage(m.want);
    });
  }
} else {
  await main();
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${availableParallelism()} cpus, ${THREADS} threads`);
  await reusePortSpread();
  await ownerRoundTrips();
  atomics();
}

async function reusePortSpread(): Promise<void> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen({ host: '127.0.0.1', port: 0 }, r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const workers = Array.from({ length: THREADS }, () => new Worker(new URL(import.meta.url), { workerData: { kind: 'listen', port } satisfies Job }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const started = performance.now();
  for (let done = 0; done < CONNECTIONS; done += 50) {
    await Promise.all(Array.from({ length: 50 }, () => new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('data', () => { s.destroy(); resolve(); });
      s.once('error', reject);
    })));
  }
  const seconds = (performance.now() - started) / 1000;
  const counts = await Promise.all(workers.map((w) => new Promise<number>((r) => { w.once('message', (m: { accepted: number }) => r(m.accepted)); w.postMessage('count'); })));
  console.log(`reusePort: ${CONNECTIONS} connections over ${THREADS} threads: ${counts.join(' / ')} (${Math.round(CONNECTIONS / seconds)} connections/s)`);
  for (const w of workers) w.postMessage('close');
}

async function ownerRoundTrips(): Promise<void> {
  const owner = new Worker(new URL(import.meta.url), { workerData: { kind: 'owner' } satisfies Job });
  for (const want of [1, BATCH]) {
    const trips = want === 1 ? ROUND_TRIPS : ROUND_TRIPS / 4;
    const started = performance.now();
    for (let i = 0; i < trips; i++) {
      await new Promise<void>((r) => { owner.once('message', () => r()); owner.postMessage({ want }); });
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(`owner over a MessagePort, ${want} a request: ${Math.round(trips / seconds)} round trips/s, ${(seconds * 1e6 / trips).toFixed(1)} µs each, ${Math.round((trips * want) / seconds)} grants/s`);
  }
  owner.postMessage('close');
}

function atomics(): void {
  const counters = new Int32Array(new SharedArrayBuffer(4 * 1024));
  const ops = 10_000_000;
  const started = performance.now();
  for (let i = 0; i < ops; i++) {
    const slot = i & 1023;
    if (Atomics.add(counters, slot, 1) >= 1_000_000) Atomics.sub(counters, slot, 1);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`Atomics.add on shared counters (one thread): ${Math.round(ops / seconds / 1e6)} M operations/s`);
}
