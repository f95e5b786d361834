import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import dns2 from 'dns2';

const { Packet } = dns2;

export interface NameServer { readonly host: string; readonly port: number }

export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  readonly ttl: number;
  readonly address?: string;
  readonly exchange?: string;
  readonly priority?: number;
  /** TXT: the record's character-strings; a type dns2 does not know (TLSA): the raw rdata. */
  readonly data?: readonly string[] | string | Buffer;
}

export interface DnsResponse {
  readonly rcode: number;
  readonly truncated: boolean;
  /** The AD bit: a validating resolver vouches for the answer by DNSSEC (RFC 4035 §3.2.3). */
  readonly authenticated: boolean;
  readonly answers: readonly DnsRecord[];
}

export const TYPE = { A: Packet.TYPE.A, AAAA: Packet.TYPE.AAAA, MX: Packet.TYPE.MX, CNAME: Packet.TYPE.CNAME, TXT: Packet.TYPE.TXT, TLSA: 52 } as const;
export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

function encodeQuery(id: number, name: string, type: number): Buffer {
  const packet = new Packet();
  packet.header.id = id;
  packet.header.rd = 1;
  // RFC 6840 §5.7: AD set in a query asks a validating resolver to say whether it validated.
  (packet.header as unknown as { ad: number }).ad = 1;
  packet.questions.push(new Packet.Question(name, type, Packet.CLASS.IN));
  return packet.toBuffer();
}

function decode(buffer: Buffer, id: number): DnsResponse | undefined {
  const packet = Packet.parse(buffer) as unknown as {
    header: { id: number; qr: number; rcode: number; tc: number; ad: number };
    answers: DnsRecord[];
  };
  if (packet.header.id !== id || packet.header.qr !== 1) return undefined;
  return { rcode: packet.header.rcode, truncated: packet.header.tc === 1, authenticated: packet.header.ad === 1, answers: packet.answers };
}

/** One query to one server: UDP first, TCP when the answer is truncated. Rejects on timeout. */
export async function query(server: NameServer, name: string, type: number, timeoutMs: number): Promise<DnsResponse> {
  const response = await queryUdp(server, name, type, timeoutMs);
  return response.truncated ? queryTcp(server, name, type, timeoutMs) : response;
}

function queryUdp(server: NameServer, name: string, type: number, timeoutMs: number): Promise<DnsResponse> {
  const id = randomInt(0, 65_536);
  const socket = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
  return new Promise<DnsResponse>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`DNS timeout after ${timeoutMs}ms asking ${server.host}:${server.port} for ${name}`)), timeoutMs);
    function finish(err: Error | null, response?: DnsResponse): void {
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(response as DnsResponse);
    }
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg) => {
      try {
        const response = decode(msg, id);
        if (response) finish(null, response); // a stray datagram with another id is ignored
      } catch (err) {
        finish(err as Error);
      }
    });
    socket.send(encodeQuery(id, name, type), server.port, server.host);
  });
}

function queryTcp(server: NameServer, name: string, type: number, timeoutMs: number): Promise<DnsResponse> {
  const id = randomInt(0, 65_536);
  const body = encodeQuery(id, name, type);
  const frame = Buffer.alloc(2 + body.length);
  frame.writeUInt16BE(body.length, 0);
  body.copy(frame, 2);
  return new Promise<DnsResponse>((resolve, reject) => {
    const socket = connect({ host: server.host, port: server.port });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`DNS TCP timeout after ${timeoutMs}ms asking ${server.host}:${server.port} for ${name}`)), timeoutMs);
    function finish(err: Error | null, response?: DnsResponse): void {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(response as DnsResponse);
    }
    socket.on('error', (err) => finish(err));
    socket.on('connect', () => socket.write(frame));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      try {
        const response = decode(received.subarray(2, 2 + length), id);
        finish(response ? null : new Error('DNS TCP answer id mismatch'), response);
      } catch (err) {
        finish(err as Error);
      }
    });
    socket.on('end', () => finish(new Error('DNS TCP connection closed before the answer')));
  });
}
