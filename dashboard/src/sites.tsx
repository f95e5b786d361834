import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { age, count } from './format.ts';
import { usePoll } from './usePoll.ts';

interface Limit { value: number | string; rule: string }
interface Hold { rule: string; until: string; remaining_s: number; reply: string }
interface PathView {
  path: string; source: string; domain: string | null;
  limits: Record<string, Limit>;
  adaptive: { rule: string; action: string; limits?: Record<string, unknown>; remaining_s: number; reply?: string }[];
  paused: Hold | null; failing: Hold | null;
  connections: number; ready: number; queued_recipients: number;
  last_hour: { delivered: number; deferred: number; failed: number; throttled: number; connection_failures: number };
  reputation: { deferred: Record<string, number>; bounced: Record<string, number>; throttle_share: number } | null;
}
interface SiteView { site: string; provider: string | null; connections: number; queued_recipients: number; paths: PathView[] }
interface Suspension { target: string; name: string; reason: string; remaining_s: number }
interface Warmup { source: string; day: number; warm: boolean; paused: boolean; held: string | null; cap: number | null; sent: number; remaining: number | null }
interface Egress { sources: { name: string; address: string; ehlo: string; warmup: Warmup | null }[]; pools: { name: string; sources: { source: string; weight: number }[] }[] }

const LIMIT_NAMES: Record<string, string> = {
  max_connections: 'connections', max_messages_per_connection: 'messages / connection', max_message_rate: 'message rate',
  max_connection_rate: 'connection rate', max_recipients_per_message: 'recipients / message', tls: 'TLS',
};
const DURATIONS = ['15m', '1h', '4h', '24h'] as const;

/** Per site and source: the limits in force and why, holds with time left, and the operator's controls. */
export function SitesPage() {
  const sites = usePoll(() => api<{ sites: SiteView[] }>('/api/v1/sites'), 5_000);
  const suspensions = usePoll(() => api<{ suspensions: Suspension[] }>('/api/v1/suspensions'), 5_000);
  const egress = usePoll(() => api<Egress>('/api/v1/egress'), 15_000);
  const [open, setOpen] = useState<string | undefined>();
  const [notice, setNotice] = useState<string | undefined>();
  const suspended = new Map((suspensions.data?.suspensions ?? []).filter((s) => s.target === 'site').map((s) => [s.name, s]));
  const act = async (call: 'suspend' | 'resume' | 'flush', body: Record<string, string>): Promise<void> => {
    try {
      const answer = await api<Record<string, unknown>>(`/api/v1/${call}`, { method: 'POST', body });
      setNotice(`${call} ${body.site}: ${summary(answer)}`);
    } catch (err) {
      setNotice(`${call} ${body.site} failed: ${(err as Error).message}`);
    }
    sites.refresh();
    suspensions.refresh();
  };
  return (
    <section>
      <h1>Sites and egress</h1>
      {notice && <p class="notice" role="status" data-testid="notice">{notice}</p>}
      {sites.error && <p class="error">{sites.error}</p>}
      <table class="grid" data-testid="sites">
        <thead><tr><th>Site</th><th>Provider</th><th>State</th><th class="n">Conn.</th><th class="n">Queued</th><th class="n">Delivered 1 h</th><th class="n">Deferred 1 h</th><th class="n">Failed 1 h</th><th>Actions</th></tr></thead>
        <tbody>
          {(sites.data?.sites ?? []).map((s) => {
            const hour = sum(s.paths.map((p) => p.last_hour));
            return (
              <>
                <tr data-site={s.site}>
                  <td><button type="button" class="link" onClick={() => setOpen(open === s.site ? undefined : s.site)}>{open === s.site ? '▾' : '▸'} {s.site}</button></td>
                  <td>{s.provider ?? '–'}</td>
                  <td><State site={s} suspension={suspended.get(s.site)} /></td>
                  <td class="n">{s.connections}</td>
                  <td class="n">{count(s.queued_recipients)}</td>
                  <td class="n">{count(hour.delivered)}</td>
                  <td class="n">{count(hour.deferred)}</td>
                  <td class="n">{count(hour.failed)}</td>
                  <td><Actions site={s.site} suspended={suspended.has(s.site)} act={act} /></td>
                </tr>
                {open === s.site && <tr class="detail"><td colSpan={9}>{s.paths.map((p) => <PathDetail path={p} />)}</td></tr>}
              </>
            );
          })}
          {sites.data && sites.data.sites.length === 0 && <tr><td colSpan={9} class="empty">No site has been tried yet.</td></tr>}
        </tbody>
      </table>
      <h2 class="space">Egress sources</h2>
      <Sources egress={egress.data} />
    </section>
  );
}

function State({ site, suspension }: { site: SiteView; suspension: Suspension | undefined }) {
  const badges = [];
  if (suspension) badges.push(<span class="badge bad" data-testid="suspended">suspended, {age(suspension.remaining_s)} left</span>);
  for (const p of site.paths) {
    if (p.paused) badges.push(<span class="badge bad" title={p.paused.reply}>paused by {p.paused.rule}, {age(p.paused.remaining_s)} left</span>);
    if (p.failing) badges.push(<span class="badge bad" title={p.failing.reply}>failing by {p.failing.rule}, {age(p.failing.remaining_s)} left</span>);
    for (const a of p.adaptive) badges.push(<span class="badge warn" title={a.reply ?? ''}>{a.action} by {a.rule}, {age(a.remaining_s)} left</span>);
  }
  return badges.length > 0 ? <>{badges}</> : <span class="badge ok">ok</span>;
}

function Actions({ site, suspended, act }: { site: string; suspended: boolean; act: (call: 'suspend' | 'resume' | 'flush', body: Record<string, string>) => Promise<void> }) {
  const [asking, setAsking] = useState(false);
  const [duration, setDuration] = useState<string>('1h');
  const [reason, setReason] = useState('');
  if (asking) {
    return (
      <form class="inline" onSubmit={(e) => { e.preventDefault(); setAsking(false); void act('suspend', { site, duration, reason: reason || 'suspended from the dashboard' }); }}>
        <select value={duration} onChange={(e) => setDuration((e.target as HTMLSelectElement).value)} aria-label="for how long">{DURATIONS.map((d) => <option value={d}>{d}</option>)}</select>
        <input placeholder="reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} aria-label="reason" />
        <button type="submit" class="danger">Suspend</button>
        <button type="button" onClick={() => setAsking(false)}>Cancel</button>
      </form>
    );
  }
  return (
    <span class="actions">
      {suspended
        ? <button type="button" onClick={() => void act('resume', { site })}>Resume</button>
        : <button type="button" onClick={() => setAsking(true)}>Suspend…</button>}
      <button type="button" onClick={() => void act('flush', { site })}>Flush</button>
    </span>
  );
}

function PathDetail({ path }: { path: PathView }) {
  const deferred = Object.entries(path.reputation?.deferred ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <div class="path">
      <h3>Source <code>{path.source}</code>{path.domain ? <> · domain <code>{path.domain}</code></> : null}</h3>
      <div class="cols">
        <table class="mini">
          <thead><tr><th>Limit</th><th>Value</th><th>Set by</th></tr></thead>
          <tbody>{Object.entries(LIMIT_NAMES).filter(([k]) => path.limits[k]).map(([k, label]) => {
            const l = path.limits[k] as Limit;
            return <tr><td>{label}</td><td>{String(l.value)}</td><td class={l.rule.startsWith('adaptive:') ? 'warn' : ''}>{l.rule}</td></tr>;
          })}</tbody>
        </table>
        <table class="mini">
          <thead><tr><th>Deferred, by reason</th><th class="n">Count</th></tr></thead>
          <tbody>
            {deferred.length === 0 ? <tr><td colSpan={2} class="empty">none</td></tr> : deferred.map(([reason, n]) => <tr><td>{reason}</td><td class="n">{count(n)}</td></tr>)}
            <tr><td>throttled, last hour</td><td class="n">{count(path.last_hour.throttled)}</td></tr>
            <tr><td>connection failures, last hour</td><td class="n">{count(path.last_hour.connection_failures)}</td></tr>
          </tbody>
        </table>
      </div>
      {path.adaptive.map((a) => <p class="hold">Adaptive rule <b>{a.rule}</b>: {a.action} {a.limits ? JSON.stringify(a.limits) : ''}, {age(a.remaining_s)} left{a.reply ? ` — after “${a.reply}”` : ''}</p>)}
      {path.paused && <p class="hold">Paused by <b>{path.paused.rule}</b>, {age(path.paused.remaining_s)} left — after “{path.paused.reply}”</p>}
    </div>
  );
}

function Sources({ egress }: { egress: Egress | undefined }) {
  if (!egress) return <p class="empty">…</p>;
  if (egress.sources.length === 0) return <p class="empty">No egress sources configured: mail leaves from the system's default address (docs/egress.md).</p>;
  return (
    <table class="grid" data-testid="sources">
      <thead><tr><th>Source</th><th>Address</th><th>EHLO</th><th>Warm-up</th><th class="n">Sent today</th><th class="n">Cap</th><th class="n">Remaining</th></tr></thead>
      <tbody>{egress.sources.map((s) => (
        <tr>
          <td>{s.name}</td><td><code>{s.address}</code></td><td>{s.ehlo}</td>
          <td>{!s.warmup ? 'none' : s.warmup.warm ? 'warm' : `day ${s.warmup.day}${s.warmup.paused ? ', paused' : ''}${s.warmup.held ? `, held: ${s.warmup.held}` : ''}`}</td>
          <td class="n">{s.warmup ? count(s.warmup.sent) : '–'}</td>
          <td class="n">{s.warmup?.cap ?? '–'}</td>
          <td class="n">{s.warmup?.remaining ?? '–'}</td>
        </tr>
      ))}</tbody>
    </table>
  );
}

function sum(hours: PathView['last_hour'][]): PathView['last_hour'] {
  return hours.reduce((a, h) => ({ delivered: a.delivered + h.delivered, deferred: a.deferred + h.deferred, failed: a.failed + h.failed, throttled: a.throttled + h.throttled, connection_failures: a.connection_failures + h.connection_failures }), { delivered: 0, deferred: 0, failed: 0, throttled: 0, connection_failures: 0 });
}

function summary(answer: Record<string, unknown>): string {
  if (answer.suspended) return `suspended until ${new Date((answer.suspended as { until: string }).until).toLocaleString()}`;
  if (answer.resumed) return `resumed, ${(answer.released as { recipients?: number } | undefined)?.recipients ?? 0} recipients released`;
  return `${String(answer.recipients ?? 0)} recipients retried now`;
}
