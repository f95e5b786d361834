/** admin: the HTTP listener for operators (/healthz, /metrics, /api/v1/...). */
export { createAdmin, type Admin, type AdminPorts } from './admin.ts';
export { openWrites, type Writes } from './writes.ts';
export type { Suspensions } from './suspensions.ts';
export { drainView, type DrainView } from './readiness.ts';
