/**
 * The overview (docs/dashboard.md, "Overview"): what the dashboard shows live and over the last
 * hours, read from Tern's own metrics so the page and Prometheus never disagree. A sample is the
 * metrics' totals now; the history is what changed minute by minute.
 */

export interface OverviewTotals {
  /** Recipients accepted at ingress. */
  readonly received: number;
  readonly delivered: number;
  /** Recipients deferred: a soft bounce, or held back (paused, suspended, warm-up). */
  readonly deferred: number;
  readonly failed: number;
}

export interface Overview {
  readonly time: number;
  readonly totals: OverviewTotals;
  readonly queue: { readonly recipients: number; readonly messages: number; readonly oldestSeconds: number };
  readonly connections: { readonly in: number; readonly out: number };
  readonly webhook: { readonly pending: number; readonly oldestSeconds: number };
}

/** One minute of history: what happened in it (counts, not totals). */
export interface MinuteRow extends OverviewTotals {
  /** The minute's start (ms). */
  readonly minute: number;
}

/** Minutes of history kept: the last six hours. */
export const HISTORY_MINUTES = 360;

/** Every series of the exposition text, summed by metric name and, when asked, one label's value. */
export function readExposition(text: string): { sum(name: string, label?: [string, string]): number } {
  const series: { name: string; labels: string; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (Number.isFinite(value)) series.push({ name: m[1] as string, labels: m[2] ?? '', value });
  }
  return {
    sum(name, label) {
      const wanted = label ? `${label[0]}="${label[1]}"` : undefined;
      return series.filter((s) => s.name === name && (!wanted || s.labels.includes(wanted))).reduce((a, s) => a + s.value, 0);
    },
  };
}

export function overviewOf(metricsText: string, now: number): Overview {
  const m = readExposition(metricsText);
  return {
    time: now,
    totals: {
      received: m.sum('tern_recipients_accepted_total'),
      delivered: m.sum('tern_events_total', ['type', 'delivered']),
      deferred: m.sum('tern_deferrals_total'),
      failed: m.sum('tern_events_total', ['type', 'failed']),
    },
    queue: { recipients: m.sum('tern_queue_recipients'), messages: m.sum('tern_queue_messages'), oldestSeconds: m.sum('tern_queue_oldest_message_age_seconds') },
    connections: { in: m.sum('tern_ingress_sessions'), out: m.sum('tern_delivery_connections') },
    webhook: { pending: m.sum('tern_feedback_pending_events'), oldestSeconds: m.sum('tern_feedback_oldest_pending_age_seconds') },
  };
}

const KEYS = ['received', 'delivered', 'deferred', 'failed'] as const;

/** Minute-by-minute counts from successive samples of the totals. */
export class History {
  readonly #rows: MinuteRow[] = [];
  #last: OverviewTotals | undefined;

  add(sample: Overview): void {
    const minute = Math.floor(sample.time / 60_000) * 60_000;
    const previous = this.#last;
    this.#last = sample.totals;
    if (!previous) return;
    // A counter that went down was reset (a restart): what it says now all happened since.
    const delta = (k: (typeof KEYS)[number]): number => (sample.totals[k] >= previous[k] ? sample.totals[k] - previous[k] : sample.totals[k]);
    const last = this.#rows.at(-1);
    if (last && last.minute === minute) {
      this.#rows[this.#rows.length - 1] = { minute, received: last.received + delta('received'), delivered: last.delivered + delta('delivered'), deferred: last.deferred + delta('deferred'), failed: last.failed + delta('failed') };
    } else {
      this.#rows.push({ minute, received: delta('received'), delivered: delta('delivered'), deferred: delta('deferred'), failed: delta('failed') });
      while (this.#rows.length > HISTORY_MINUTES || (this.#rows[0] && (this.#rows[0] as MinuteRow).minute <= minute - HISTORY_MINUTES * 60_000)) this.#rows.shift();
    }
  }

  /** The current minute's row, if any (what each sample streams). */
  last(): MinuteRow | undefined {
    return this.#rows.at(-1);
  }

  rows(): readonly MinuteRow[] {
    return [...this.#rows];
  }
}
