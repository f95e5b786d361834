import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

/**
 * A port free for TCP on every given loopback address (and UDP on the first).
 *
 * Chosen outside the kernel's ephemeral range: the tests connect a great deal, and a port in that
 * range can become some connection's source port between this check and the bind — or, for an
 * endpoint a test keeps down on purpose, a connection to it can connect to itself (TCP simultaneous
 * open) and hold it, so the test's later listen fails with EADDRINUSE.
 */
export async function freePort(hosts: readonly string[] = ['127.0.0.1']): Promise<number> {
  const [low, high] = portsOutsideEphemeralRange();
  for (let tries = 0; tries < 50; tries++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await allFree(port, hosts)) return port;
  }
  throw new Error('no free port found');
}

/** [low, high) of ports the kernel never hands out as source ports. */
function portsOutsideEphemeralRange(): [number, number] {
  let [first, last] = [32_768, 60_999];
  try {
    const range = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (range.length === 2 && range.every(Number.isInteger)) [first, last] = range as [number, number];
  } catch {
    // not Linux: keep the Linux default
  }
  if (first - 10_000 >= 5_000) return [10_000, first];
  if (65_536 - (last + 1) >= 2_000) return [last + 1, 65_536];
  return [10_000, 65_536];
}

async function allFree(port: number, hosts: readonly string[]): Promise<boolean> {
  for (const host of hosts) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
    if (!ok) return false;
  }
  return new Promise<boolean>((resolve) => {
    const u = createSocket('udp4');
    u.once('error', () => resolve(false));
    u.bind(port, hosts[0], () => u.close(() => resolve(true)));
  });
}
