/**
 * One HTTPS exchange with a stranger's server, strictly: the certificate verified for the name
 * asked for (the CAs given, else Node's), no redirect followed (the caller sees the status), at
 * most `maxBytes` of answer, and one deadline for the whole exchange, so a server dribbling a
 * byte a second ends all the same. The name is resolved by the caller (Tern's own resolver) and
 * the address connected to directly. For MTA-STS policies and TLS-RPT reports (docs/tls.md).
 */
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Clock } from './clock.ts';

export interface StrictRequest {
  /** The name the certificate must carry (and the Host header); an address is checked as one. */
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly path: string;
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** The CAs to trust instead of Node's (delivery.tls_ca_file). */
  readonly trust?: SecureContext | undefined;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** What is asked for, for the errors ("no policy within 10000 ms"). */
  readonly what: string;
  readonly clock: Clock;
}

export type StrictAnswer =
  | { readonly ok: true; readonly status: number; readonly contentType: string; readonly body: Buffer }
  | { readonly ok: false; readonly error: string };

export function strictHttps(r: StrictRequest): Promise<StrictAnswer> {
  return new Promise((resolve) => {
    const req = request({
      host: r.address, port: r.port, path: r.path, method: r.method,
      ...(isIP(r.host) ? {} : { servername: r.host }),
      headers: { host: r.host, ...r.headers, ...(r.body ? { 'content-length': String(r.body.length) } : {}) },
      rejectUnauthorized: true, agent: false,
      ...(r.trust ? { secureContext: r.trust } : {}),
    });
    const deadline = r.clock.at(r.clock.now() + r.timeoutMs, () => done({ ok: false, error: `no ${r.what} within ${r.timeoutMs} ms` }));
    function done(answer: StrictAnswer): void {
      deadline.cancel();
      req.destroy();
      resolve(answer);
    }
    req.once('error', (err) => done({ ok: false, error: err.message }));
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > r.maxBytes) return done({ ok: false, error: `${r.what} over ${r.maxBytes} bytes` });
        chunks.push(chunk);
      });
      res.once('end', () => done({ ok: true, status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks) }));
      res.once('error', (err) => done({ ok: false, error: err.message }));
    });
    req.end(r.body);
  });
}
