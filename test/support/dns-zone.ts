import dns2 from 'dns2';
import { freePort } from './ports.ts';

const { Packet } = dns2;

export interface ZoneEntry {
  readonly mx?: readonly { exchange: string; priority: number }[];
  readonly a?: readonly string[];
  readonly txt?: readonly string[];
  /** Answer SERVFAIL for every query of this name. */
  readonly servfail?: boolean;
  /** Never answer (the client must time out). */
  readonly silent?: boolean;
  /** The answers' TTL in seconds (300 unless set). */
  readonly ttl?: number;
  /** TLSA records (RFC 6698), served at this name (`_25._tcp.<mx host>`). */
  readonly tlsa?: readonly { usage: number; selector: number; matchingType: number; data: Buffer }[];
  /** Answer with the AD bit set, as a validating resolver does for a DNSSEC-signed zone. */
  readonly authenticated?: boolean;
}

export interface DnsZone {
  readonly port: number;
  readonly server: string;
  readonly queries: string[];
  set(name: string, entry: ZoneEntry): void;
  close(): Promise<void>;
}

/** A real DNS server on 127.0.0.1 serving a zone from a plain object; unknown names are NXDOMAIN. */
export async function startDnsZone(zone: Record<string, ZoneEntry>): Promise<DnsZone> {
  const entries = new Map(Object.entries(zone));
  const queries: string[] = [];
  const server = dns2.createServer({
    udp: true,
    tcp: true,
    handle(request: any, send: (r: any) => void) {
      const response: any = Packet.createResponseFromRequest(request);
      const question = request.questions[0];
      const name = String(question.name).toLowerCase();
      queries.push(`${name}/${question.type}`);
      const entry = entries.get(name);
      if (entry?.silent) return;
      if (entry?.authenticated) response.header.ad = 1;
      if (!entry) response.header.rcode = 3;
      else if (entry.servfail) response.header.rcode = 2;
      else if (question.type === Packet.TYPE.MX) {
        for (const mx of entry.mx ?? []) response.answers.push({ name, type: Packet.TYPE.MX, class: Packet.CLASS.IN, ttl: entry.ttl ?? 300, exchange: mx.exchange, priority: mx.priority });
      } else if (question.type === Packet.TYPE.TXT) {
        // A TXT record is a list of strings of at most 255 bytes each; long values are split.
        for (const text of entry.txt ?? []) response.answers.push({ name, type: Packet.TYPE.TXT, class: Packet.CLASS.IN, ttl: entry.ttl ?? 300, data: text.match(/.{1,255}/g) ?? [''] });
      } else if (question.type === 52) {
        for (const r of entry.tlsa ?? []) response.answers.push({ name, type: 52, class: Packet.CLASS.IN, ttl: entry.ttl ?? 300, data: Buffer.concat([Buffer.from([r.usage, r.selector, r.matchingType]), r.data]) });
      } else if (question.type === Packet.TYPE.A) {
        for (const address of entry.a ?? []) response.answers.push({ name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: entry.ttl ?? 300, address });
      }
      send(response);
    },
  } as any);
  const udpPort = await freePort();
  await server.listen({ udp: { port: udpPort, address: '127.0.0.1' }, tcp: { port: udpPort, address: '127.0.0.1' } } as any);
  return {
    port: udpPort,
    server: `127.0.0.1:${udpPort}`,
    queries,
    set: (name, entry) => entries.set(name.toLowerCase(), entry),
    close: async () => {
      await server.close();
    },
  };
}
