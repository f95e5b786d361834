/**
 * SMTP TLS Reporting (RFC 8460): what a domain asks for (`_smtp._tls` TXT: where to send), what
 * Tern counts of its sessions to that domain under a policy, and the daily aggregate report.
 * Pure: counting happens in src/tls-policy/reports.ts, sending in the daemon's wiring.
 */
import type { Parsed } from './mta-sts.ts';

export const TLSRPT_LIMITS = {
  /** rua addresses taken from one record; more are ignored. */
  maxRua: 10,
  /** Failure detail lines kept per policy and day (the busiest first); the rest are summed. */
  maxFailureDetails: 1_000,
} as const;


/** The `_smtp._tls` TXT answer (each record's strings joined): where reports go. */
export function parseTlsRptRecord(records: readonly string[]): Parsed<{ rua: string[] }> {
  const rpt = records.filter((r) => /^v=TLSRPTv1\s*(;|$)/.test(r.trim()));
  if (rpt.length === 0) return { ok: false, error: 'no v=TLSRPTv1 record' };
  if (rpt.length > 1) return { ok: false, error: `${rpt.length} v=TLSRPTv1 records: none is taken (RFC 8460 §3)` };
  const field = (rpt[0] as string).split(';').map((f) => f.trim()).find((f) => f.startsWith('rua='));
  if (!field) return { ok: false, error: 'no rua= field' };
  const rua = field.slice(4).split(',').map((u) => u.trim()).filter((u) => u !== '').slice(0, TLSRPT_LIMITS.maxRua);
  const good = rua.filter((u) => /^mailto:[^@\s]+@[^@\s]+$/i.test(u) || /^https:\/\/[^\s]+$/i.test(u));
  if (good.length === 0) return { ok: false, error: `rua "${field.slice(4, 80)}" has no mailto: or https: address` };
  return { ok: true, value: { rua: good.map((u) => (u.toLowerCase().startsWith('mailto:') ? `mailto:${decodeURIComponent(u.slice(7))}` : u)) } };
}

/** A session under a receiver's policy, as delivery tells it (structurally: delivery is not imported). */
export interface PolicySessionFacts {
  readonly result?: 'success' | 'failure';
  readonly failure?: string;
  readonly route: { readonly mx?: string; readonly remoteIp?: string; readonly sourceIp?: string };
  readonly sts?: { readonly mode: string; readonly mx: readonly string[]; readonly maxAgeSeconds?: number };
  readonly tlsa?: readonly { readonly usage: number; readonly selector: number; readonly matchingType: number; readonly data: Buffer }[];
}

/** What a report counts of one session: its policy in the report's terms (STS text, TLSA records), its result, where. */
export function sessionOf(facts: PolicySessionFacts): SessionResult {
  const { sts, tlsa, route } = facts;
  const policy: ReportPolicy = sts
    ? { type: 'sts', strings: ['version: STSv1', `mode: ${sts.mode}`, ...sts.mx.map((m) => `mx: ${m}`), ...(sts.maxAgeSeconds !== undefined ? [`max_age: ${sts.maxAgeSeconds}`] : [])], mxHosts: sts.mx }
    : { type: 'tlsa', strings: (tlsa ?? []).map((r) => `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString('hex')}`) };
  return {
    policy, success: facts.result === 'success',
    ...(facts.failure ? { resultType: facts.failure } : {}),
    ...(route.sourceIp ? { sendingIp: route.sourceIp } : {}),
    ...(route.mx ? { receivingMx: route.mx } : {}),
    ...(route.remoteIp ? { receivingIp: route.remoteIp } : {}),
  };
}

/** The policy a session ran under, as a report names it (RFC 8460 §4.3). */
export interface ReportPolicy {
  readonly type: 'sts' | 'tlsa' | 'no-policy-found';
  /** The policy's text, a line an element (STS), or each TLSA record in presentation form. */
  readonly strings: readonly string[];
  /** STS: the policy's mx patterns. */
  readonly mxHosts?: readonly string[];
}

/** One session, as counted. */
export interface SessionResult {
  readonly policy: ReportPolicy;
  readonly success: boolean;
  readonly resultType?: string;
  readonly sendingIp?: string;
  readonly receivingMx?: string;
  readonly receivingIp?: string;
}

/** A day's counts for one policy domain, as kept on disk between sessions and the report. */
export interface DayCounts {
  /** Keyed by JSON of the policy. */
  readonly policies: Record<string, { policy: ReportPolicy; success: number; failure: number; details: Record<string, number> }>;
}

export function countSession(day: DayCounts, s: SessionResult): void {
  const key = JSON.stringify(s.policy);
  const entry = (day.policies[key] ??= { policy: s.policy, success: 0, failure: 0, details: {} });
  if (s.success) {
    entry.success++;
    return;
  }
  entry.failure++;
  const detail = JSON.stringify([s.resultType ?? 'validation-failure', s.sendingIp ?? '', s.receivingMx ?? '', s.receivingIp ?? '']);
  if (detail in entry.details || Object.keys(entry.details).length < TLSRPT_LIMITS.maxFailureDetails) entry.details[detail] = (entry.details[detail] ?? 0) + 1;
}

/** Counts of several shards (or runs) of one day, added. */
export function mergeDays(days: readonly DayCounts[]): DayCounts {
  const out: DayCounts = { policies: {} };
  for (const day of days) {
    for (const [key, p] of Object.entries(day.policies)) {
      const into = (out.policies[key] ??= { policy: p.policy, success: 0, failure: 0, details: {} });
      into.success += p.success;
      into.failure += p.failure;
      for (const [d, n] of Object.entries(p.details)) into.details[d] = (into.details[d] ?? 0) + n;
    }
  }
  return out;
}

export interface ReportMeta {
  readonly organization: string;
  readonly contact: string;
  readonly reportId: string;
  /** The UTC day reported, YYYY-MM-DD. */
  readonly date: string;
  readonly domain: string;
}

/** The aggregate report (RFC 8460 §4.4), as JSON is sent. */
export function buildReport(meta: ReportMeta, day: DayCounts): Record<string, unknown> {
  return {
    'organization-name': meta.organization,
    'date-range': { 'start-datetime': `${meta.date}T00:00:00Z`, 'end-datetime': `${meta.date}T23:59:59Z` },
    'contact-info': meta.contact,
    'report-id': meta.reportId,
    policies: Object.values(day.policies).map((p) => ({
      policy: {
        'policy-type': p.policy.type,
        ...(p.policy.type === 'no-policy-found' ? {} : { 'policy-string': p.policy.strings }),
        'policy-domain': meta.domain,
        ...(p.policy.mxHosts ? { 'mx-host': p.policy.mxHosts } : {}),
      },
      summary: { 'total-successful-session-count': p.success, 'total-failure-session-count': p.failure },
      ...(p.failure > 0 ? {
        'failure-details': Object.entries(p.details).sort((a, b) => b[1] - a[1]).map(([d, n]) => {
          const [result, sending, mx, ip] = JSON.parse(d) as string[];
          return {
            'result-type': result,
            ...(sending ? { 'sending-mta-ip': sending } : {}),
            ...(mx ? { 'receiving-mx-hostname': mx } : {}),
            ...(ip ? { 'receiving-ip': ip } : {}),
            'failed-session-count': n,
          };
        }),
      } : {}),
    })),
  };
}

/** The mail a `mailto:` rua gets (RFC 8460 §5.3): multipart/report, report-type=tlsrpt, the gzip attached. */
export function reportMail(meta: ReportMeta, from: string, to: string, gzipped: Buffer, messageId: string, date: Date): string {
  const boundary = `tlsrpt-${meta.reportId}`;
  const name = `${meta.organization}!${meta.domain}!${Math.floor(Date.parse(`${meta.date}T00:00:00Z`) / 1000)}!${Math.floor(Date.parse(`${meta.date}T23:59:59Z`) / 1000)}!${meta.reportId}.json.gz`;
  const base64 = gzipped.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  return [
    `From: ${from}`,
    `To: ${to}`,
    `Subject: Report Domain: ${meta.domain} Submitter: ${meta.organization} Report-ID: <${meta.reportId}>`,
    `Date: ${date.toUTCString()}`,
    `Message-ID: <${messageId}>`,
    `TLS-Report-Domain: ${meta.domain}`,
    `TLS-Report-Submitter: ${meta.organization}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This is an aggregate TLS report from ${meta.organization} for ${meta.domain}, ${meta.date} (RFC 8460).`,
    '',
    `--${boundary}`,
    `Content-Type: application/tlsrpt+gzip; name="${name}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${name}"`,
    '',
    base64.trimEnd(),
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
}
