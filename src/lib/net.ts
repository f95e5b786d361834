import { BlockList, isIP, type Socket } from 'node:net';

/** Parse "host:port", "[v6]:port" or ":port" into parts; undefined when malformed. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65_535) return undefined;
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

/** Whether a listen address ("host:port") takes connections from this machine only. */
export function isLoopbackListen(listen: string): boolean {
  const host = parseHostPort(listen)?.host.toLowerCase();
  if (host === undefined) return false;
  if (host === 'localhost') return true;
  const plain = plainAddress(host);
  if (isIP(plain) === 4) return plain.startsWith('127.');
  return plain === '::1';
}

/** CIDR list matcher; "127.0.0.0/8", "::1/128" or a bare address. */
export function createNetworkList(cidrs: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (parsed) list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return (address) => {
    const plain = plainAddress(address);
    const family = isIP(plain);
    return family !== 0 && list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  };
}

export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText] = cidr.trim().split('/');
  const kind = isIP(address);
  if (kind === 0) return undefined;
  const max = kind === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    return undefined;
  }
  return { address, prefix, family: kind === 4 ? 'ipv4' : 'ipv6' };
}

/** An IPv4 client seen on a dual-stack socket ("::ffff:192.0.2.1") as its plain address. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * After our side ended a session, destroy the socket if the peer has not closed it within `ms`;
 * the timer goes as soon as the socket closes, so finished connections are not kept alive by it.
 */
export function cutOffLater(socket: Socket, ms: number): void {
  const timer = setTimeout(() => socket.destroy(), ms).unref();
  socket.once('close', () => clearTimeout(timer));
}
