/** RFC 5322 date-time in UTC, as headers want it ("Mon, 23 Nov 2026 10:51:11 +0000"). */
export function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${pad(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

export interface ReceivedFacts {
  readonly helo: string;
  readonly clientIp: string;
  readonly hostname: string;
  readonly queueId: string;
  readonly tls: boolean;
  readonly authenticated: boolean;
  readonly recipient?: string;
  readonly at: number;
}

/** The trace header (RFC 5321 §4.4), with the RFC 3848 protocol name (ESMTP, ESMTPS, ESMTPSA). */
export function receivedHeader(f: ReceivedFacts): string {
  const protocol = `ESMTP${f.tls ? 'S' : ''}${f.authenticated ? 'A' : ''}`;
  const helo = f.helo.replace(/[^\x21-\x7e]/g, '') || 'unknown';
  const forClause = f.recipient ? `\r\n\tfor <${f.recipient}>` : '';
  return `Received: from ${helo} ([${f.clientIp}])\r\n\tby ${f.hostname} (Tern) with ${protocol} id ${f.queueId}${forClause};\r\n\t${rfc5322Date(f.at)}\r\n`;
}
