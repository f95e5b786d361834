import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

/** A port free for TCP on every given loopback address (and UDP on the first). */
export async function freePort(hosts: readonly string[] = ['127.0.0.1']): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    if (await allFree(port, hosts)) return port;
  }
  throw new Error('no free port found');
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
