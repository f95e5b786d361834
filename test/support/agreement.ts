import { readFileSync } from 'node:fs';
import { createClassifier, type Classifier, type Rule } from '../../src/bounce/index.ts';

export interface LabelledReply { code?: number; enhanced?: string; text: string; reason: string; hardOrSoft: 'hard' | 'soft' }

/** test/fixtures/bounces/sync-replies.tsv (sisimai data, BSD-2; licence beside it). */
export function loadCorpus(): LabelledReply[] {
  const lines = readFileSync(new URL('../fixtures/bounces/sync-replies.tsv', import.meta.url), 'utf8').split('\n').slice(1).filter(Boolean);
  return lines.map((line) => {
    const [, code, enhanced, text, reason, hardOrSoft] = line.split('\t') as string[];
    return {
      ...(code ? { code: Number(code) } : {}),
      ...(enhanced ? { enhanced } : {}),
      text: text ?? '',
      reason: reason ?? '',
      hardOrSoft: hardOrSoft === 'hard' ? 'hard' : 'soft',
    };
  });
}

export interface Agreement {
  rows: number;
  hardSoft: number;
  /** Over rows whose label is a real opinion (not onhold/undefined). */
  reason: number;
  labelled: number;
  confusion: Record<'hard' | 'soft', Record<'hard' | 'soft', number>>;
  perReason: { reason: string; support: number; predicted: number; precision: number; recall: number }[];
  misses: { text: string; want: string; got: string; rule: string }[];
}

const NO_OPINION = new Set(['onhold', 'undefined']);

export function measureAgreement(classify: Classifier, corpus: readonly LabelledReply[]): Agreement {
  const confusion = { hard: { hard: 0, soft: 0 }, soft: { hard: 0, soft: 0 } };
  const tp = new Map<string, number>();
  const support = new Map<string, number>();
  const predicted = new Map<string, number>();
  const misses: Agreement['misses'] = [];
  let hardSoft = 0;
  let reasonHits = 0;
  let labelled = 0;
  for (const row of corpus) {
    const got = classify({ ...(row.code ? { code: row.code } : {}), ...(row.enhanced ? { enhanced: row.enhanced } : {}), text: row.text });
    const gotHardness = got.type === 'hard' ? 'hard' : 'soft';
    confusion[row.hardOrSoft][gotHardness] += 1;
    if (gotHardness === row.hardOrSoft) hardSoft += 1;
    if (NO_OPINION.has(row.reason)) continue;
    labelled += 1;
    support.set(row.reason, (support.get(row.reason) ?? 0) + 1);
    predicted.set(got.reason, (predicted.get(got.reason) ?? 0) + 1);
    if (got.reason === row.reason) {
      reasonHits += 1;
      tp.set(row.reason, (tp.get(row.reason) ?? 0) + 1);
    } else {
      misses.push({ text: row.text, want: row.reason, got: got.reason, rule: got.rule });
    }
  }
  const reasons = [...new Set([...support.keys(), ...predicted.keys()])].sort();
  return {
    rows: corpus.length,
    hardSoft: hardSoft / corpus.length,
    reason: reasonHits / labelled,
    labelled,
    confusion,
    perReason: reasons.map((reason) => ({
      reason,
      support: support.get(reason) ?? 0,
      predicted: predicted.get(reason) ?? 0,
      precision: (tp.get(reason) ?? 0) / Math.max(1, predicted.get(reason) ?? 0),
      recall: (tp.get(reason) ?? 0) / Math.max(1, support.get(reason) ?? 0),
    })),
    misses,
  };
}

/**
 * Agreement on replies the rules were not written for, estimated by k-fold cross-validation: for
 * each fold, the rules kept are those that match at least one row of the other folds (a rule
 * only its own fold's rows match was, for this purpose, written for them), and the fold is scored
 * with those alone. The generic fallbacks (enhanced code, reply code) always stay.
 */
export function crossValidate(rules: readonly Rule[], corpus: readonly LabelledReply[], folds = 5): { hardSoft: number; reason: number; perFold: { rows: number; hardSoft: number; reason: number; rulesKept: number }[]; misses: Agreement['misses'] } {
  const foldOf = (row: LabelledReply): number => hash(`${row.code ?? ''} ${row.enhanced ?? ''} ${row.text}`) % folds;
  const perFold = [];
  const misses: Agreement['misses'] = [];
  let hardSoft = 0;
  let reason = 0;
  let labelled = 0;
  for (let k = 0; k < folds; k++) {
    const train = corpus.filter((r) => foldOf(r) !== k);
    const test = corpus.filter((r) => foldOf(r) === k);
    // A rule matching some row of the other folds could have been written from them, whether or
    // not an earlier rule decides that row there.
    const kept = rules.filter((rule) => {
      const alone = createClassifier([rule]);
      return train.some((r) => alone({ ...(r.code ? { code: r.code } : {}), ...(r.enhanced ? { enhanced: r.enhanced } : {}), text: r.text }).rule === rule.id);
    });
    const a = measureAgreement(createClassifier(kept), test);
    perFold.push({ rows: a.rows, hardSoft: a.hardSoft, reason: a.reason, rulesKept: kept.length });
    misses.push(...a.misses);
    hardSoft += a.hardSoft * a.rows;
    reason += a.reason * a.labelled;
    labelled += a.labelled;
  }
  return { hardSoft: hardSoft / corpus.length, reason: reason / labelled, perFold, misses };
}

/** FNV-1a: a fold that depends only on the reply, not on the order of the file. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export function formatAgreement(a: Agreement): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `rows ${a.rows}; hard/soft agreement ${pct(a.hardSoft)}; reason agreement ${pct(a.reason)} over ${a.labelled} rows with a label`,
    `confusion (label → Tern): hard→hard ${a.confusion.hard.hard}, hard→soft ${a.confusion.hard.soft}, soft→hard ${a.confusion.soft.hard}, soft→soft ${a.confusion.soft.soft}`,
    'reason            support predicted precision recall',
    ...a.perReason.map((r) => `${r.reason.padEnd(17)} ${String(r.support).padStart(7)} ${String(r.predicted).padStart(9)} ${pct(r.precision).padStart(9)} ${pct(r.recall).padStart(6)}`),
  ];
  return lines.join('\n');
}

// `node test/support/agreement.ts [--misses|--cv-misses]`: the report, and optionally every miss (on the
// whole corpus, or in cross-validation) with the rule that fired.
if (import.meta.main) {
  const { defaultRules } = await import('../../src/bounce/index.ts');
  const agreement = measureAgreement(createClassifier(defaultRules()), loadCorpus());
  console.log(formatAgreement(agreement));
  const cv = crossValidate(defaultRules(), loadCorpus());
  console.log(`5-fold cross-validated (rules only their fold needs left out): hard/soft ${(cv.hardSoft * 100).toFixed(1)}%, reason ${(cv.reason * 100).toFixed(1)}%`);
  if (process.argv.includes('--misses') || process.argv.includes('--cv-misses')) {
    for (const m of process.argv.includes('--cv-misses') ? cv.misses : agreement.misses) console.log(`${m.want.padEnd(16)} got ${m.got.padEnd(16)} [${m.rule}] ${m.text.slice(0, 160)}`);
  }
}
