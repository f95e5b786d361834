/**
 * shaping: limits on a delivery path. For now the static defaults (connections, messages per
 * connection, message and connection rates); adaptive rules come later.
 */
export { TokenBucket } from './token-bucket.ts';
