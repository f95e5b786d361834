/**
 * suppression: addresses that hard-bounced or complained, refused at RCPT per sender domain for
 * a while (docs/bounces.md, "Suppression"; off unless suppression.enabled).
 */
export { createSuppressionStore, type SuppressionStore } from './store.ts';
export { suppressionView } from './view.ts';
