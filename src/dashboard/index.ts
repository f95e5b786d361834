/** dashboard: the browser dashboard's server side (sessions, the overview stream, the built app). */
export { createDashboard, DASHBOARD_LIMITS, type Dashboard, type DashboardOptions, type DashboardPorts } from './http.ts';
export { HISTORY_MINUTES, overviewOf, type MinuteRow, type Overview } from './overview.ts';
export { CSRF_HEADER, SESSION_COOKIE, SESSION_LIMITS } from './session.ts';

/** Where the built app is (dashboard/dist beside src/, or beside dist/src/ once built). */
export const DASHBOARD_ASSETS = new URL('../../dashboard/dist/', import.meta.url).pathname;
