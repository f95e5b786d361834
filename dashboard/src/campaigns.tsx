import { useState } from 'preact/hooks';
import { api, csrf } from './api.ts';
import { MinuteChart } from './chart.tsx';
import { age, chartData, count } from './format.ts';
import { onLink } from './router.ts';
import { usePoll } from './usePoll.ts';

export interface Kpis {
  id: string; relayed: number; delivered: number; soft_bounces: number; complaints: number; success_pct: number; in_progress: number; last_event: number;
  failed: { total: number; hard: number; soft: number; ignored: number; expired: number };
  failed_by: { reason: Record<string, number>; class: Record<string, number> };
}
interface Entry { t: number; type: string; recipient: string; queue_id: string; code?: number; enhanced?: string; text?: string; reason?: string; class?: number; failure_type?: string; async?: true }
interface TimelineRow { minute: number; relayed: number; delivered: number; soft_bounce: number; failed: number }

/** Momentum's bounce classes (docs/bounces.md). */
const CLASS_NAMES: Record<string, string> = {
  1: 'Undetermined', 10: 'Invalid Recipient', 20: 'Soft Bounce', 21: 'DNS Failure', 22: 'Mailbox Full', 23: 'Too Large', 24: 'Timeout', 25: 'Admin Failure',
  30: 'Generic Bounce: No RCPT', 40: 'Generic Bounce', 50: 'Mail Block', 51: 'Spam Block', 52: 'Spam Content', 53: 'Prohibited Attachment', 54: 'Relaying Denied',
  60: 'Auto-Reply', 70: 'Transient Failure', 80: 'Subscribe', 90: 'Unsubscribe', 100: 'Challenge-Response',
};
const TYPES = ['relayed', 'delivered', 'soft_bounce', 'failed', 'complaint'] as const;
const PAGE = 50;
const campaignPath = (id: string): string => `/api/v1/campaigns/${encodeURIComponent(id)}`;

export function CampaignsPage() {
  const list = usePoll(() => api<{ campaigns: Kpis[] }>('/api/v1/campaigns'), 5_000);
  return (
    <section>
      <h1>Campaigns</h1>
      {list.error && <p class="error">{list.error}</p>}
      <table class="grid" data-testid="campaigns">
        <thead><tr><th>Campaign</th><th class="n">Taken into account</th><th class="n">Sent</th><th class="n">Soft bounces</th><th class="n">Failed</th><th class="n">Success</th><th class="n">In progress</th><th class="n">Complaints</th><th>Last activity</th></tr></thead>
        <tbody>
          {(list.data?.campaigns ?? []).map((c) => (
            <tr data-campaign={c.id}>
              <td><a href={`/dashboard/campaigns/${encodeURIComponent(c.id)}`} onClick={onLink}>{c.id}</a></td>
              <td class="n">{count(c.relayed)}</td><td class="n">{count(c.delivered)}</td><td class="n">{count(c.soft_bounces)}</td>
              <td class="n">{count(c.failed.total)}</td><td class="n">{c.success_pct.toFixed(1)} %</td><td class="n">{count(c.in_progress)}</td>
              <td class="n">{count(c.complaints)}</td><td>{c.last_event ? `${age((Date.now() - c.last_event) / 1000)} ago` : '–'}</td>
            </tr>
          ))}
          {list.data && list.data.campaigns.length === 0 && <tr><td colSpan={9} class="empty">No campaign yet: mail names its campaign in X-Tern-Meta ({'{"campaign": "…"}'}).</td></tr>}
        </tbody>
      </table>
    </section>
  );
}

export function CampaignPage({ id }: { id: string }) {
  const kpis = usePoll(() => api<Kpis>(campaignPath(id)), 5_000, [id]);
  const [hours, setHours] = useState(6);
  const timeline = usePoll(() => api<{ rows: TimelineRow[] }>(`${campaignPath(id)}/timeline?hours=${hours}`), 15_000, [id, hours]);
  const k = kpis.data;
  const data = chartData(timeline.data?.rows ?? [], Date.now(), hours * 60, ['relayed', 'delivered', 'soft_bounce', 'failed']);
  return (
    <section>
      <h1><a href="/dashboard/campaigns" onClick={onLink} class="back">Campaigns</a> / {id}</h1>
      {kpis.error && <p class="error">{kpis.error}</p>}
      <div class="tiles" data-testid="kpis">
        <Kpi name="relayed" label="Taken into account" value={k?.relayed} />
        <Kpi name="delivered" label="Sent" value={k?.delivered} />
        <Kpi name="failed" label="Failed" value={k?.failed.total} />
        <Kpi name="success" label="Success" text={k ? `${k.success_pct.toFixed(1)} %` : '–'} />
        <Kpi name="in_progress" label="In progress" value={k?.in_progress} />
        <Kpi name="soft_bounces" label="Soft bounces" value={k?.soft_bounces} />
        <Kpi name="complaints" label="Complaints" value={k?.complaints} />
      </div>
      <div class="panel">
        <div class="panel-head"><h2>Recipients per minute</h2>
          <div class="range">{[1, 6, 24, 72].map((h) => <button type="button" class={h === hours ? 'on' : ''} onClick={() => setHours(h)}>{h} h</button>)}</div>
        </div>
        <MinuteChart data={data} labels={['relayed', 'delivered', 'soft bounce', 'failed']} />
      </div>
      {k && <Breakdown k={k} />}
      <Log id={id} />
    </section>
  );
}

function Kpi({ name, label, value, text }: { name: string; label: string; value?: number | undefined; text?: string }) {
  return <div class="tile fact" data-testid={`kpi-${name}`}><div class="label">{label}</div><div class="value">{text ?? (value === undefined ? '–' : count(value))}</div></div>;
}

function Breakdown({ k }: { k: Kpis }) {
  const rows = (o: Record<string, number>): [string, number][] => Object.entries(o).sort((a, b) => b[1] - a[1]);
  return (
    <div class="cols space" data-testid="breakdown">
      <table class="grid narrow"><thead><tr><th>Failed, by type</th><th class="n">Recipients</th></tr></thead>
        <tbody>{(['hard', 'soft', 'ignored'] as const).map((t) => <tr><td>{t}</td><td class="n">{count(k.failed[t])}</td></tr>)}<tr><td>of which expired</td><td class="n">{count(k.failed.expired)}</td></tr></tbody>
      </table>
      <table class="grid narrow"><thead><tr><th>By reason</th><th class="n">Recipients</th></tr></thead>
        <tbody>{rows(k.failed_by.reason).map(([r, n]) => <tr><td>{r}</td><td class="n">{count(n)}</td></tr>)}{Object.keys(k.failed_by.reason).length === 0 && <tr><td colSpan={2} class="empty">no failure</td></tr>}</tbody>
      </table>
      <table class="grid narrow"><thead><tr><th>By class</th><th class="n">Recipients</th></tr></thead>
        <tbody>{rows(k.failed_by.class).map(([c, n]) => <tr><td>{c} {CLASS_NAMES[c] ?? ''}</td><td class="n">{count(n)}</td></tr>)}{Object.keys(k.failed_by.class).length === 0 && <tr><td colSpan={2} class="empty">no failure</td></tr>}</tbody>
      </table>
    </div>
  );
}

function Log({ id }: { id: string }) {
  const [recipient, setRecipient] = useState('');
  const [type, setType] = useState('');
  const [offset, setOffset] = useState(0);
  const query = new URLSearchParams({ ...(recipient ? { recipient } : {}), ...(type ? { type } : {}) });
  const page = usePoll(() => api<{ entries: Entry[]; more: boolean }>(`${campaignPath(id)}/log?${query.toString()}&offset=${offset}&limit=${PAGE}`), 10_000, [id, recipient, type, offset]);
  return (
    <div class="panel space" data-testid="log">
      <div class="panel-head">
        <h2>Delivery log</h2>
        <form class="inline" onSubmit={(e) => e.preventDefault()}>
          <input type="search" placeholder="recipient contains…" value={recipient} aria-label="search by recipient" onInput={(e) => { setRecipient((e.target as HTMLInputElement).value); setOffset(0); }} />
          <select value={type} aria-label="status" onChange={(e) => { setType((e.target as HTMLSelectElement).value); setOffset(0); }}>
            <option value="">every status</option>{TYPES.map((t) => <option value={t}>{t}</option>)}
          </select>
          <a class="button" href={`${campaignPath(id)}/log.csv?${new URLSearchParams({ ...Object.fromEntries(query), csrf: csrf() }).toString()}`} download>Export CSV</a>
        </form>
      </div>
      <table class="grid">
        <thead><tr><th>Time</th><th>Status</th><th>Recipient</th><th>Reply</th><th>Reason</th></tr></thead>
        <tbody>
          {(page.data?.entries ?? []).map((e) => (
            <tr class={`entry ${e.type}`}>
              <td>{new Date(e.t).toLocaleString()}</td><td>{e.type}{e.async ? ' (after delivery)' : ''}</td><td>{e.recipient}</td>
              <td>{e.code ? `${e.code}${e.enhanced ? ` ${e.enhanced}` : ''} ${e.text ?? ''}` : ''}</td>
              <td>{e.reason ? `${e.reason} (${e.failure_type}, class ${e.class})` : ''}</td>
            </tr>
          ))}
          {page.data && page.data.entries.length === 0 && <tr><td colSpan={5} class="empty">Nothing matches.</td></tr>}
        </tbody>
      </table>
      <div class="pager">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>Newer</button>
        <span>{page.data ? `${offset + 1}–${offset + page.data.entries.length}` : ''}</span>
        <button type="button" disabled={!page.data?.more} onClick={() => setOffset(offset + PAGE)}>Older</button>
      </div>
    </div>
  );
}
