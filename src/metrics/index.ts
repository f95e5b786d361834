/** metrics: the prom-client registry and every metric definition (names prefixed tern_). */
export { createMetrics, type Metrics, type MetricsScope } from './metrics.ts';
export { diskUsage, refreshProcessGauges, type ProcessState } from './process-gauges.ts';
