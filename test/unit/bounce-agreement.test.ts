import t from 'tap';
import { createClassifier, defaultRules } from '../../src/bounce/index.ts';
import { crossValidate, formatAgreement, loadCorpus, measureAgreement } from '../support/agreement.ts';

/**
 * Agreement with sisimai's labels over test/fixtures/bounces/sync-replies.tsv (BSD-2, licence
 * beside it). The labels are noisy and sometimes need context the text lacks (docs/bounces.md
 * lists the misses we chose to keep), so these are floors under the measured figures, not a
 * table where every row must pass.
 */
// Measured 2026-11-23: hard/soft 93.3 %, reason 86.3 %. The issue aims at 95 % hard/soft; 20 of
// the 25 rows we disagree on say in words that the address does not exist ("User unknown", "This
// user doesn't have a ... account") yet are labelled filtered/rejected/suspend from SMTP context
// the text lacks. Calling those soft would fit the labels and mislead users (docs/bounces.md).
const FLOORS = { hardSoft: 0.95, reason: 0.88 };

t.test('default rules agree with the labelled corpus', async (t) => {
  const agreement = measureAgreement(createClassifier(defaultRules()), loadCorpus());
  // On stderr so `npm test` shows the figures even when the test passes.
  process.stderr.write(`bounce agreement (test/fixtures/bounces/sync-replies.tsv):\n${formatAgreement(agreement)}\n`);
  t.ok(agreement.rows >= 375, `corpus read: ${agreement.rows} rows`);
  t.ok(agreement.hardSoft >= FLOORS.hardSoft, `hard/soft agreement ${(agreement.hardSoft * 100).toFixed(1)}% ≥ ${FLOORS.hardSoft * 100}%`);
  t.ok(agreement.reason >= FLOORS.reason, `reason agreement ${(agreement.reason * 100).toFixed(1)}% ≥ ${FLOORS.reason * 100}%`);
});

t.test('agreement on replies the rules were not written for: 5-fold cross-validation', async (t) => {
  const cv = crossValidate(defaultRules(), loadCorpus());
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  process.stderr.write(`bounce agreement, 5-fold cross-validated: hard/soft ${pct(cv.hardSoft)}; reason ${pct(cv.reason)}; per fold ${cv.perFold.map((f) => `${pct(f.hardSoft)}/${pct(f.reason)} (${f.rulesKept} rules)`).join(', ')}\n`);
  // Measured 2026-12-06: 95.5 % / 86.5 %. The floors are the issue's aims for replies never seen.
  t.ok(cv.hardSoft >= 0.95, `hard/soft ${pct(cv.hardSoft)} ≥ 95%`);
  t.ok(cv.reason >= 0.85, `reason ${pct(cv.reason)} ≥ 85%`);
  t.ok(cv.perFold.every((f) => f.rulesKept < defaultRules().length), 'each fold leaves out the rules only its own rows need');
});

t.test('the agreement measure itself can fail', async (t) => {
  const alwaysSoft = measureAgreement(() => ({ reason: 'onhold', class: 1, category: 'undetermined', type: 'soft', failure: 'Ignored', retry: false, rule: 'x' }), loadCorpus());
  t.ok(alwaysSoft.hardSoft < FLOORS.hardSoft && alwaysSoft.reason < FLOORS.reason, 'a classifier with no opinion is below both floors');
});
