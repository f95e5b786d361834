/**
 * DKIM signing throughput: 10 KB messages hashed while streamed (as ingress does) and signed in
 * libuv's thread pool, with N signatures in flight. Prints one JSON line per (algorithm, N), after
 * two lines for the body hash alone.
 * Run: node bench/micro/dkim/sign.bench.ts   (MESSAGES=3000)
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner, loadKeys, MessageHasher, type DkimAlgorithm } from '../../../src/dkim/index.ts';

const MESSAGES = Number(process.env.MESSAGES ?? 3000);
const dir = mkdtempSync(join(tmpdir(), 'tern-dkim-bench-'));
const message = Buffer.from(`From: news@bench.test\r\nTo: r@x.test\r\nSubject: bench\r\nMessage-ID: <1@bench.test>\r\n\r\n${'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n'.repeat(140)}`);

async function run(algorithm: DkimAlgorithm, inFlight: number): Promise<void> {
  const file = join(dir, `${algorithm}.pem`);
  const pair = algorithm === 'rsa-sha256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  writeFileSync(file, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const signer = createSigner(loadKeys([{ domain: 'bench.test', selector: 's', key_file: file, algorithm }]).keys);
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next++ < MESSAGES) {
      const signing = signer.begin(0);
      signing.write(message);
      await signing.finish();
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ bench: 'dkim-sign', algorithm, in_flight: inFlight, node: process.version, cpus: cpus().length, msgs: MESSAGES, size: message.length, seconds: Number(seconds.toFixed(3)), msg_per_s: Math.round(MESSAGES / seconds) }));
}

/**
 * Body canonicalization and hashing alone, on the event loop, per message: a body with no
 * whitespace to fold (hashed as it is) and an HTML-like one with runs of spaces and tabs.
 */
async function hashOnly(kind: string, body: string): Promise<void> {
  const bytes = Buffer.from(`From: news@bench.test\r\nSubject: bench\r\n\r\n${body}`);
  const started = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    const hasher = new MessageHasher();
    hasher.write(bytes);
    hasher.end();
    hasher.bodyHash();
  }
  const us = ((performance.now() - started) * 1000) / MESSAGES;
  console.log(JSON.stringify({ bench: 'dkim-body-hash', body: kind, node: process.version, msgs: MESSAGES, size: bytes.length, us_per_msg: Number(us.toFixed(1)) }));
}

await hashOnly('plain', 'La de da de da 1.\r\n'.repeat(540));
await hashOnly('html-whitespace', '<p>  some  text\there </p>  \r\n'.repeat(330));
for (const algorithm of ['rsa-sha256', 'ed25519-sha256'] as const) for (const n of [1, 2, 8]) await run(algorithm, n);
rmSync(dir, { recursive: true, force: true });
