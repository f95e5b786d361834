import { tempDir } from './daemon.ts';
import { startDnsZone, type DnsZone, type ZoneEntry } from './dns-zone.ts';
import { freePort } from './ports.ts';
import { startSink, type Sink, type SinkOptions } from './sink.ts';

/**
 * A fake internet on loopback: one DNS server and SMTP sinks on 127.0.0.x, all on one port
 * (delivery.port is global, as port 25 is in real life).
 */
export interface World {
  readonly dns: DnsZone;
  readonly port: number;
  readonly sinks: Map<string, Sink>;
  addSink(host: string, options?: Partial<SinkOptions>): Promise<Sink>;
  close(): Promise<void>;
}

export const STANDARD_ZONE: Record<string, ZoneEntry> = {
  'a.test': { mx: [{ exchange: 'mx1.a.test', priority: 10 }] },
  'mx1.a.test': { a: ['127.0.0.2'] },
  'b.test': { a: ['127.0.0.3'] },
  'fallback.test': { mx: [{ exchange: 'dead.fallback.test', priority: 10 }, { exchange: 'mx.fallback.test', priority: 20 }] },
  'dead.fallback.test': { a: ['127.0.0.9'] },
  'mx.fallback.test': { a: ['127.0.0.2'] },
  'null.test': { mx: [{ exchange: '', priority: 0 }] },
  'servfail.test': { servfail: true },
  'slow.test': { mx: [{ exchange: 'mx.slow.test', priority: 10 }] },
  'mx.slow.test': { a: ['127.0.0.4'] },
  'tls.test': { mx: [{ exchange: 'mx.tls.test', priority: 10 }] },
  'mx.tls.test': { a: ['127.0.0.5'] },
};

/** `hosts` get a plain sink now; `more` are addresses a test will add sinks on (the port must be free there too). */
export async function startWorld(zone: Record<string, ZoneEntry> = STANDARD_ZONE, hosts: readonly string[] = ['127.0.0.2', '127.0.0.3'], more: readonly string[] = []): Promise<World> {
  const port = await freePort([...new Set(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.9', ...hosts, ...more])]);
  const dns = await startDnsZone(zone);
  const sinks = new Map<string, Sink>();
  const world: World = {
    dns,
    port,
    sinks,
    async addSink(host, options = {}) {
      const sink = await startSink({ host, port, ...options });
      sinks.set(host, sink);
      return sink;
    },
    async close() {
      await Promise.all([...sinks.values()].map((s) => s.close()));
      await dns.close();
    },
  };
  for (const host of hosts) await world.addSink(host);
  return world;
}

/**
 * One world for a test file: started before its tests, closed after them, with the temporary
 * directories its tests asked for removed then too.
 */
export function worldForFile(t: { before(fn: () => Promise<void>): unknown; teardown(fn: () => Promise<void>): unknown }): { readonly world: World; tempDir(prefix?: string): { path: string; remove(): void } } {
  let world: World | undefined;
  const dirs: { remove(): void }[] = [];
  t.before(async () => {
    world = await startWorld();
  });
  t.teardown(async () => {
    await world?.close();
    for (const d of dirs) d.remove();
  });
  return {
    get world(): World {
      if (!world) throw new Error('the world starts in t.before');
      return world;
    },
    tempDir(prefix?: string) {
      const dir = tempDir(prefix);
      dirs.push(dir);
      return dir;
    },
  };
}
