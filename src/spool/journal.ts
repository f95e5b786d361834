import type { RecipientState } from '../model/envelope.ts';
import type { JournalRecord } from '../model/journal.ts';

/** Journal lines are JSON, one per decision, appended beside the message file. */

export function encodeJournal(records: readonly JournalRecord[]): string {
  return records.map((r) => `${JSON.stringify(r)}\n`).join('');
}

/** A torn last line (crash mid-append) is ignored; so is any line that does not parse. */
export function parseJournal(text: string): JournalRecord[] {
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  const records: JournalRecord[] = [];
  for (const line of complete.split('\n')) {
    if (line === '') continue;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch {
      // a line torn by a crash and then appended to: skip it; the recipient is retried at worst
    }
  }
  return records;
}

/** Fold records into per-recipient state; later records win. */
export function replayJournal(count: number, records: readonly JournalRecord[]): RecipientState[] {
  const states: RecipientState[] = Array.from({ length: count }, () => ({ attempts: 0, nextAt: 0 }));
  for (const rec of records) {
    const state = states[rec.r];
    if (!state || state.final) continue;
    state.attempts = rec.n;
    if (rec.reply) state.lastReply = rec.reply;
    if (rec.t === 'final') state.final = rec.v;
    else {
      state.nextAt = rec.next;
      if (rec.p) state.path = rec.p;
    }
  }
  return states;
}
