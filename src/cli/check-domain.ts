/**
 * `tern check-domain DOMAIN [--ip ADDR]... [--from ADDR] [--json]`: is a sending domain ready for
 * Tern's mail? A test message goes through Tern's own signer with the configured keys and is then
 * judged by mailauth, an independent implementation, the way a receiver would judge it: DKIM
 * signatures against the published keys, SPF for each egress address, DMARC and its alignment.
 * MTA-STS, TLS-RPT and BIMI records are reported when present. DNS goes through `dns.servers`.
 */
// mailauth's DNSResolver type leaves out MX answers, which its SPF code asks for and reads.
import { authenticate, type AuthenticateResult, type DNSResolver } from 'mailauth';
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import { loadConfig, resolveConfigPath, type Config } from '../config/index.ts';
import { createSigner, keysFor, loadKeys, type DkimKey } from '../dkim/index.ts';
import { createResolver, nodeStyleResolver, type Resolver } from '../dns/index.ts';
import { systemClock } from '../lib/clock.ts';
import { domainOf } from '../model/envelope.ts';
import type { Io } from './cli.ts';
import { compare } from './dkim.ts';

export const CHECK_DOMAIN_USAGE = `  check-domain DOMAIN [--ip ADDR]... [--from ADDR] [--json] [--config FILE]
                                 pre-flight a sending domain: DKIM keys published and a signed test
                                 message verified, SPF authorising each --ip, DMARC present and
                                 aligned; MTA-STS, TLS-RPT and BIMI reported; exit 1 on a failure`;

export type Verdict = 'pass' | 'fail' | 'warn' | 'info';
export interface CheckLine { readonly check: string; readonly result: Verdict; readonly detail: string }

export interface CheckDomainOptions {
  readonly ips: readonly string[];
  /** Header From and envelope sender of the test message; postmaster@DOMAIN by default. */
  readonly from?: string;
  readonly now?: number;
}

/** An address in TEST-NET-1 (RFC 5737): no SPF record authorises it, so DMARC is judged on DKIM alone. */
const NO_IP = '192.0.2.1';

export async function checkDomainCommand(args: readonly string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args], allowPositionals: true, strict: true,
      options: { ip: { type: 'string', multiple: true, default: [] }, from: { type: 'string' }, json: { type: 'boolean', default: false }, config: { type: 'string', short: 'c' } },
    });
  } catch (err) {
    io.err(`tern check-domain: ${(err as Error).message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const domain = positionals[0]?.toLowerCase().replace(/\.$/, '');
  if (!domain || positionals.length > 1 || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(domain)) {
    io.err('tern check-domain: give one domain name, e.g. tern check-domain example.com --ip 192.0.2.10');
    return 2;
  }
  const badIp = values.ip.find((ip) => isIP(ip) === 0);
  if (badIp) {
    io.err(`tern check-domain: --ip ${badIp} is not an IPv4 or IPv6 address`);
    return 2;
  }
  const loaded = loadConfig(resolveConfigPath(values.config, io.env, io.cwd));
  if (!loaded.ok) {
    io.err(`${loaded.source}: ${loaded.problems.length} problem(s)`);
    for (const p of loaded.problems) io.err(`  ${p.path}: ${p.problem}`);
    return 1;
  }
  const from = values.from ?? `postmaster@${domain}`;
  const lines = await checkDomain(domain, { ips: values.ip, from }, loaded.config);
  const ok = lines.every((l) => l.result !== 'fail');
  if (values.json) io.out(JSON.stringify({ domain, from, ok, checks: lines }));
  else {
    io.out(`tern check-domain ${domain} (test message from ${from})`);
    const width = Math.max(...lines.map((l) => l.check.length));
    for (const l of lines) io.out(`${l.result.toUpperCase().padEnd(4)}  ${l.check.padEnd(width)}  ${l.detail}`);
    const failures = lines.filter((l) => l.result === 'fail').length;
    io.out(ok ? 'ok: nothing failed' : `${failures} check${failures === 1 ? '' : 's'} failed`);
  }
  return ok ? 0 : 1;
}

export async function checkDomain(domain: string, options: CheckDomainOptions, config: Config): Promise<CheckLine[]> {
  const resolver = createResolver(config.dns, systemClock);
  const from = options.from ?? `postmaster@${domain}`;
  const fromDomain = domainOf(from);
  const lines: CheckLine[] = [];
  const { keys, problems } = loadKeys(config.dkim.keys);
  for (const p of problems) lines.push({ check: 'dkim.keys', result: 'fail', detail: `${p.path}: ${p.problem}` });
  const signing = keysFor(keys, fromDomain);
  if (signing.length === 0) lines.push({ check: 'dkim.keys', result: 'fail', detail: `no key in dkim.keys signs mail from ${fromDomain}: it would leave unsigned` });
  for (const key of signing) lines.push(await publishedKey(resolver, key));

  const signed = await signedTestMessage(signing, from, domain, options.now ?? Date.now());
  const judge = (ip: string): Promise<AuthenticateResult> =>
    authenticate(signed, { ip, helo: config.hostname, sender: from, mta: config.hostname, resolver: nodeStyleResolver(resolver) as DNSResolver, disableArc: true });
  const first = await judge(options.ips[0] ?? NO_IP);
  for (const r of first.dkim.results ?? []) {
    if (!r.selector) continue;
    lines.push({ check: `dkim signature ${r.selector}`, result: r.status.result === 'pass' ? 'pass' : 'fail', detail: `${r.status.result} by mailauth (d=${r.signingDomain}${r.status.comment ? `; ${r.status.comment}` : ''})` });
  }
  lines.push(await spfRecord(resolver, fromDomain));
  if (options.ips.length === 0) lines.push({ check: 'spf', result: 'warn', detail: 'no --ip given: SPF was not checked against the addresses Tern sends from' });
  const byIp = [first, ...(await Promise.all(options.ips.slice(1).map(judge)))];
  options.ips.forEach((ip, i) => lines.push(spfLine(ip, byIp[i] as AuthenticateResult)));
  lines.push(...dmarcLines(first, options.ips[0]));
  for (const [i, ip] of options.ips.entries()) if (i > 0) lines.push(...dmarcLines(byIp[i] as AuthenticateResult, ip).slice(1));
  lines.push(await published(resolver, 'mta-sts', `_mta-sts.${domain}`, /^v=STSv1/i));
  lines.push(await published(resolver, 'tls-rpt', `_smtp._tls.${domain}`, /^v=TLSRPTv1/i));
  lines.push(await published(resolver, 'bimi', `default._bimi.${fromDomain}`, /^v=BIMI1/i));
  return lines;
}

async function publishedKey(resolver: Resolver, key: DkimKey): Promise<CheckLine> {
  const name = `${key.selector}._domainkey.${key.domain}`;
  const answer = await resolver.resolveTxt(name);
  const verdict = answer.kind === 'txt' ? compare(answer.records, key.publicKeyData) : answer.kind === 'nxdomain' ? `no TXT record at ${name}` : `DNS error: ${answer.detail}`;
  return { check: `dkim key ${key.selector}`, result: verdict === 'ok' ? 'pass' : 'fail', detail: verdict === 'ok' ? `${name} publishes the public half of the configured ${key.algorithm} key` : `${name}: ${verdict}` };
}

async function signedTestMessage(keys: readonly DkimKey[], from: string, domain: string, now: number): Promise<Buffer> {
  const text = [
    `From: Tern pre-flight <${from}>`,
    `To: <check-domain@${domain}>`,
    `Subject: tern check-domain ${domain}`,
    `Date: ${new Date(now).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <check-domain.${now}@${domain}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'A test message signed by Tern and verified locally; it is never sent.',
    '',
  ].join('\r\n');
  const signing = createSigner(keys).begin(now);
  signing.write(Buffer.from(text));
  return Buffer.concat([Buffer.from(await signing.finish()), Buffer.from(text)]);
}

async function spfRecord(resolver: Resolver, domain: string): Promise<CheckLine> {
  const answer = await resolver.resolveTxt(domain);
  if (answer.kind === 'temporary') return { check: 'spf record', result: 'fail', detail: `DNS error: ${answer.detail}` };
  const records = answer.kind === 'txt' ? answer.records.filter((r) => /^v=spf1(\s|$)/i.test(r)) : [];
  if (records.length === 0) return { check: 'spf record', result: 'fail', detail: `${domain} publishes no SPF record (v=spf1)` };
  if (records.length > 1) return { check: 'spf record', result: 'fail', detail: `${domain} publishes ${records.length} SPF records: receivers treat that as a permanent error (RFC 7208 4.5)` };
  return { check: 'spf record', result: 'pass', detail: records[0] as string };
}

function spfLine(ip: string, result: AuthenticateResult): CheckLine {
  const spf = result.spf || undefined;
  const verdict = spf ? spf.status.result : 'none';
  const comment = spf?.status.comment ? ` (${spf.status.comment})` : '';
  return { check: `spf ${ip}`, result: verdict === 'pass' ? 'pass' : 'fail', detail: verdict === 'pass' ? `authorised${comment}` : `${verdict}: not authorised to send for ${spf ? spf.domain : 'the domain'}${comment}` };
}

/** The record (once), then alignment as judged for mail from `ip` (DKIM alone without one). */
function dmarcLines(result: AuthenticateResult, ip: string | undefined): CheckLine[] {
  const dmarc = result.dmarc;
  if (!dmarc || !dmarc.rr) {
    const detail = dmarc && dmarc.error ? dmarc.error : 'no DMARC record at _dmarc of the From domain or its organisational domain';
    return [{ check: 'dmarc record', result: 'fail', detail }, { check: `dmarc${ip ? ` ${ip}` : ''}`, result: 'fail', detail: 'cannot align without a record' }];
  }
  const record: CheckLine = { check: 'dmarc record', result: 'pass', detail: `${dmarc.rr} (policy ${dmarc.policy})` };
  const aligned = [dmarc.alignment.dkim.result ? `DKIM (${dmarc.alignment.dkim.result})` : '', dmarc.alignment.spf.result ? `SPF (${dmarc.alignment.spf.result})` : ''].filter(Boolean);
  const pass = dmarc.status.result === 'pass';
  const how = ip ? `mail from ${ip}` : 'DKIM alone (no --ip)';
  return [record, {
    check: `dmarc${ip ? ` ${ip}` : ''}`,
    result: pass ? 'pass' : 'fail',
    detail: pass ? `aligned through ${aligned.join(' and ')}, judging ${how}` : `${dmarc.status.result}: neither an aligned DKIM signature nor aligned SPF, judging ${how}`,
  }];
}

async function published(resolver: Resolver, check: string, name: string, shape: RegExp): Promise<CheckLine> {
  const answer = await resolver.resolveTxt(name);
  if (answer.kind === 'temporary') return { check, result: 'warn', detail: `${name}: DNS error: ${answer.detail}` };
  const record = answer.kind === 'txt' ? answer.records.find((r) => shape.test(r)) : undefined;
  return { check, result: 'info', detail: record ? `${name}: ${record}` : `none published (${name})` };
}
