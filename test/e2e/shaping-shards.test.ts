/**
 * The MX-rules scenarios of shaping.test.ts again, through two delivery shards (ADR 0010): the
 * path every machine with three or more CPUs takes by default. The coordinator holds the limits
 * and counts every shard's sessions; a tarpit, an `observed` cut and a 421 must read the same
 * as through one loop.
 */
process.env.TERN_TEST_THREADS = '2';
await import('./shaping.test.ts');
