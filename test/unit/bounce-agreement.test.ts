import t from 'tap';
import { createClassifier, defaultRules } from '../../src/bounce/index.ts';
import { formatAgreement, loadCorpus, measureAgreement } from '../support/agreement.ts';

/**
 * Agreement with sisimai's labels over test/fixtures/bounces/sync-replies.tsv (BSD-2, licence
 * beside it). The labels are noisy and sometimes need context the text lacks (docs/bounces.md
 * lists the misses we chose to keep), so these are floors under the measured figures, not a
 * table where every row must pass.
 */
const FLOORS = { hardSoft: 0.95, reason: 0.8 };

t.test('default rules agree with the labelled corpus', async (t) => {
  const agreement = measureAgreement(createClassifier(defaultRules()), loadCorpus());
  t.comment(formatAgreement(agreement));
  t.ok(agreement.rows >= 375, `corpus read: ${agreement.rows} rows`);
  t.ok(agreement.hardSoft >= FLOORS.hardSoft, `hard/soft agreement ${(agreement.hardSoft * 100).toFixed(1)}% ≥ ${FLOORS.hardSoft * 100}%`);
  t.ok(agreement.reason >= FLOORS.reason, `reason agreement ${(agreement.reason * 100).toFixed(1)}% ≥ ${FLOORS.reason * 100}%`);
});

t.test('the agreement measure itself can fail', async (t) => {
  const alwaysSoft = measureAgreement(() => ({ reason: 'onhold', class: 1, category: 'undetermined', type: 'soft', retry: false, rule: 'x' }), loadCorpus());
  t.ok(alwaysSoft.hardSoft < FLOORS.hardSoft && alwaysSoft.reason < FLOORS.reason, 'a classifier with no opinion is below both floors');
});
