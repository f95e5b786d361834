import { useEffect, useMemo, useState } from 'preact/hooks';
import { openStream } from './api.ts';
import { MinuteChart } from './chart.tsx';
import { age, chartData, count, mergeMinute, type MinuteRow } from './format.ts';

interface Overview {
  time: number;
  totals: { received: number; delivered: number; deferred: number; failed: number };
  queue: { recipients: number; messages: number; oldestSeconds: number };
  connections: { in: number; out: number };
  webhook: { pending: number; oldestSeconds: number };
}

const HOURS = [1, 3, 6] as const;

/** Throughput now and over the last hours, the queue and the webhook backlog; live, no reload. */
export function OverviewPage() {
  const [overview, setOverview] = useState<Overview | undefined>();
  const [rows, setRows] = useState<MinuteRow[]>([]);
  const [live, setLive] = useState(false);
  const [hours, setHours] = useState<(typeof HOURS)[number]>(1);
  useEffect(() => {
    const stream = openStream();
    stream.addEventListener('open', () => setLive(true));
    stream.addEventListener('error', () => setLive(false));
    stream.addEventListener('history', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as { rows: MinuteRow[]; overview?: Overview };
      setRows(data.rows);
      if (data.overview) setOverview(data.overview);
    });
    stream.addEventListener('overview', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as { overview: Overview; minute?: MinuteRow };
      setOverview(data.overview);
      setRows((old) => mergeMinute(old, data.minute, 360));
    });
    return () => stream.close();
  }, []);
  const now = overview?.time ?? Date.now();
  const data = useMemo(() => chartData(rows, now, hours * 60), [rows, now, hours]);
  const thisMinute = rows.at(-1);
  return (
    <section>
      <h1>Overview <span class={live ? 'live on' : 'live'} data-testid="live">{live ? 'live' : 'reconnecting…'}</span></h1>
      <div class="tiles">
        <Tile name="received" label="Received" total={overview?.totals.received} minute={thisMinute?.received} />
        <Tile name="delivered" label="Delivered" total={overview?.totals.delivered} minute={thisMinute?.delivered} />
        <Tile name="deferred" label="Deferred" total={overview?.totals.deferred} minute={thisMinute?.deferred} />
        <Tile name="failed" label="Failed" total={overview?.totals.failed} minute={thisMinute?.failed} />
      </div>
      <div class="tiles">
        <Fact name="queue" label="In the queue" value={overview ? `${count(overview.queue.recipients)} recipients` : '–'} detail={overview ? `${count(overview.queue.messages)} messages` : ''} />
        <Fact name="oldest" label="Oldest queued" value={age(overview?.queue.oldestSeconds ?? 0)} detail="since it arrived" />
        <Fact name="connections" label="Connections" value={`${count(overview?.connections.in ?? 0)} in · ${count(overview?.connections.out ?? 0)} out`} detail="SMTP clients · receivers" />
        <Fact name="webhook" label="Webhook backlog" value={`${count(overview?.webhook.pending ?? 0)} events`} detail={`oldest ${age(overview?.webhook.oldestSeconds ?? 0)}`} />
      </div>
      <div class="panel">
        <div class="panel-head">
          <h2>Recipients per minute</h2>
          <div class="range">{HOURS.map((h) => <button type="button" class={h === hours ? 'on' : ''} onClick={() => setHours(h)}>{h} h</button>)}</div>
        </div>
        <MinuteChart data={data} />
      </div>
    </section>
  );
}

function Tile({ name, label, total, minute }: { name: string; label: string; total: number | undefined; minute: number | undefined }) {
  return (
    <div class={`tile ${name}`} data-testid={`tile-${name}`}>
      <div class="label">{label}</div>
      <div class="value" data-testid={`total-${name}`}>{total === undefined ? '–' : count(total)}</div>
      <div class="detail">{count(minute ?? 0)} this minute</div>
    </div>
  );
}

function Fact({ name, label, value, detail }: { name: string; label: string; value: string; detail: string }) {
  return (
    <div class="tile fact" data-testid={`fact-${name}`}>
      <div class="label">{label}</div>
      <div class="value">{value}</div>
      <div class="detail">{detail}</div>
    </div>
  );
}
