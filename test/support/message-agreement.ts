import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Classifier, QualifiedRecipient } from '../../src/bounce/index.ts';
import { qualifyMessage } from '../../src/bounce/index.ts';

/** ../shared/data/bounce-emails (sisimai's set-of-emails, BSD-2; labels from sisimai's tests). */
export const MESSAGES_DIR = new URL('../../../shared/data/bounce-emails/', import.meta.url).pathname;

export interface MessageLabel { file: string; kind: string; position: number; status: string; replyCode: string; reason: string; hardOrSoft: string; feedbackType: string }

export function loadMessageLabels(dir = MESSAGES_DIR): MessageLabel[] {
  return readFileSync(join(dir, 'labels.tsv'), 'utf8').split('\n').slice(1).filter(Boolean).map((line) => {
    const [file = '', kind = '', position = '1', status = '', replyCode = '', reason = '', hardOrSoft = '', feedbackType = ''] = line.split('\t');
    return { file, kind, position: Number(position), status, replyCode, reason, hardOrSoft, feedbackType };
  });
}

export interface MessageAgreement {
  rows: number;
  found: number;
  kind: number;
  hardSoft: { agree: number; of: number };
  reason: { agree: number; of: number };
  perKind: Record<string, { rows: number; hardSoft: number; hardSoftOf: number; reason: number; reasonOf: number }>;
  misses: { file: string; position: number; want: string; got: string; text?: string }[];
}

const NO_OPINION = new Set(['onhold', 'undefined', '']);

/** The j-th recipient Tern finds in a message against the j-th label (the order sisimai reports them in). */
export function measureMessages(classify: Classifier, labels: readonly MessageLabel[], dir = MESSAGES_DIR): MessageAgreement {
  const byFile = new Map<string, QualifiedRecipient[]>();
  const out: MessageAgreement = { rows: labels.length, found: 0, kind: 0, hardSoft: { agree: 0, of: 0 }, reason: { agree: 0, of: 0 }, perKind: {}, misses: [] };
  for (const label of labels) {
    let got = byFile.get(label.file);
    if (!got) {
      got = qualifyMessage(readFileSync(join(dir, label.file)), classify);
      byFile.set(label.file, got);
    }
    const r = got[label.position - 1];
    const k = (out.perKind[label.kind] ??= { rows: 0, hardSoft: 0, hardSoftOf: 0, reason: 0, reasonOf: 0 });
    k.rows += 1;
    if (r) out.found += 1;
    if (r?.kind === label.kind) out.kind += 1;
    if (label.hardOrSoft !== '') {
      out.hardSoft.of += 1;
      k.hardSoftOf += 1;
      if (r && (r.type === 'hard') === (label.hardOrSoft === 'hard')) {
        out.hardSoft.agree += 1;
        k.hardSoft += 1;
      }
    }
    if (!NO_OPINION.has(label.reason)) {
      out.reason.of += 1;
      k.reasonOf += 1;
      if (r?.reason === label.reason) {
        out.reason.agree += 1;
        k.reason += 1;
      } else out.misses.push({ file: label.file, position: label.position, want: `${label.reason}/${label.hardOrSoft}`, got: r ? `${r.reason}/${r.type} (${r.kind})` : 'nothing found' });
    }
  }
  return out;
}
