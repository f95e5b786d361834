/**
 * The TLS handshake after STARTTLS, at the path's level (docs/tls.md). may and encrypt take any
 * certificate, as Postfix does at those levels: a check nobody acts on would only turn mail away.
 * verify takes only a chain to a trusted CA (the system's, or delivery.tls_ca_file) that names
 * the MX host. Every session records whether its certificate would have passed verify.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, createSecureContext, connect as tlsConnect, type DetailedPeerCertificate, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { checkDane } from '../../model/dane.ts';
import { systemClock } from '../../lib/clock.ts';
import { TernError } from '../../lib/errors.ts';
import type { TlsLevel } from '../../model/path.ts';
import { localReply } from '../../model/reply.ts';
import { tlsFailureOf } from '../../model/tls-policy.ts';
import { ConnectError, type ConnectOptions, type TlsInfo } from './types.ts';

/** OpenSSL's and Node's codes for a certificate that is there but not to be trusted. */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|CHAIN/;
/** Advice Node appends for its own users ("try running Node.js with --use-system-ca"): not for a receiver's log. */
const NODE_HINT = /; if the root CA is installed locally.*$/s;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * delivery.tls_ca_file as one TLS context, built once at start. Node takes a file of anything
 * without a word, and verify would then trust nothing: a file without a readable certificate,
 * or with a broken one, stops the start instead.
 */
export function loadTrust(file: string): SecureContext {
  const refuse = (why: string): TernError => new TernError('TERN_CONFIG_INVALID', `delivery.tls_ca_file: ${why}`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw refuse(`cannot read ${file}: ${(err as Error).message}`);
  }
  const certificates = text.match(PEM_CERTIFICATE) ?? [];
  if (certificates.length === 0) throw refuse(`no PEM certificate in ${file}`);
  certificates.forEach((pem, i) => {
    try {
      void new X509Certificate(pem);
    } catch (err) {
      throw refuse(`certificate ${i + 1} in ${file} cannot be read: ${(err as Error).message}`);
    }
  });
  return createSecureContext({ ca: certificates });
}

export interface SecureSocket { readonly socket: TLSSocket; readonly info: TlsInfo }

export function startTls(socket: Socket, options: ConnectOptions, level: TlsLevel): Promise<SecureSocket> {
  const clock = options.clock ?? systemClock;
  return new Promise((resolve, reject) => {
    const dane = options.dane && options.dane.length > 0 ? options.dane : undefined;
    const secure = tlsConnect({
      socket,
      // DANE checks the chain against the TLSA records itself, after the handshake.
      rejectUnauthorized: level === 'verify' && !dane,
      ...(options.trust ? { secureContext: options.trust } : {}),
      // SNI carries a name, never an address; the identity check always uses the MX name.
      ...(isIP(options.servername) === 0 ? { servername: options.servername } : {}),
      checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(options.servername, cert),
    });
    const fail = (err: Error): void => {
      deadline.cancel();
      secure.destroy();
      reject(tlsFailure(err, level));
    };
    // A deadline, not an idle timer: a handshake dribbled a record at a time ends all the same.
    const deadline = clock.at(clock.now() + options.timeouts.command, () => fail(new Error(`handshake not done within ${options.timeouts.command} ms`)));
    secure.once('error', fail);
    secure.once('secureConnect', () => {
      deadline.cancel();
      secure.off('error', fail);
      if (!dane) return resolve({ socket: secure, info: sessionInfo(secure) });
      const checked = checkDane(dane, peerChain(secure), options.servername, clock.now());
      if (!checked.ok) {
        secure.destroy();
        return reject(new ConnectError('ETLS', localReply(451, '4.7.5', `TLS policy failure: DANE: ${checked.why}`, 'STARTTLS'), 'tls-failed', checked.failure));
      }
      // Verified by DANE: the CA-based check (sessionInfo's failure, if any) does not apply.
      const { version, cipher } = sessionInfo(secure);
      resolve({ socket: secure, info: { version, cipher, verified: true } });
    });
  });
}

/** The certificates the server sent, leaf first, as far as its chain goes. */
function peerChain(secure: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert = secure.getPeerCertificate(true) as DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** `authorized` covers the chain and (through checkServerIdentity) the MX name, even where not required. */
function sessionInfo(secure: TLSSocket): TlsInfo {
  const info = { version: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher()?.name ?? 'unknown', verified: secure.authorized };
  if (secure.authorized) return info;
  const error = secure.authorizationError as unknown as string | Error | undefined;
  return { ...info, failure: tlsFailureOf(typeof error === 'string' ? error : (error as NodeJS.ErrnoException | undefined)?.code) };
}

function tlsFailure(err: Error, level: TlsLevel): ConnectError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const why = err.message.replace(NODE_HINT, '');
  const text = level === 'verify' && CERTIFICATE_ERROR.test(code) ? `TLS failure: certificate verify failed: ${why}` : `TLS failure: ${why}`;
  return new ConnectError('ETLS', localReply(451, '4.7.5', text, 'STARTTLS'), 'tls-failed', tlsFailureOf(code));
}
