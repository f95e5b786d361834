import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { DASHBOARD_ASSETS } from '../../src/dashboard/index.ts';
import { ADMIN_TOKEN, adminFetch, startTern, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { worldForFile } from '../support/world.ts';

/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against a real
 * Tern relaying to a loopback sink (docs/dashboard.md): nothing but the sign-in page without the
 * token, the overview's counts rising live as mail goes out, a forged cross-site call refused.
 * TERN_SCREENSHOTS=DIR saves each page there (docs/dashboard.md's pictures).
 */
const CHROMIUM = process.env.TERN_CHROMIUM ?? '/usr/bin/chromium';
const files = worldForFile(t);
let tern: RunningTern;
let browser: Browser;
let base: string;

t.before(async () => {
  if (!existsSync(`${DASHBOARD_ASSETS}/app.js`)) execFileSync(process.execPath, ['dashboard/build.ts'], { stdio: 'ignore' });
  const spool = files.tempDir();
  tern = await startTern(testConfig({ dnsServer: files.world.dns.server, deliveryPort: files.world.port, spoolDir: spool.path }));
  base = `http://127.0.0.1:${tern.adminPort}`;
  // As root (CI containers), Chromium's sandbox cannot start; the pages are Tern's own.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
t.teardown(async () => {
  await browser?.close();
  await tern?.stop();
});

async function screenshot(page: Page, name: string): Promise<void> {
  const dir = process.env.TERN_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${base}/dashboard/`);
  await page.fill('#token', token);
  await Promise.all([page.waitForResponse((r) => r.url().endsWith('/dashboard/login') && r.request().method() === 'POST'), page.click('button[type=submit]')]);
  await page.waitForLoadState('domcontentloaded');
}

t.test('without the token, nothing but the sign-in page', async (t) => {
  for (const path of ['/dashboard/', '/dashboard/assets/app.js', '/dashboard/api/stream', '/dashboard/campaigns']) {
    const res = await fetch(`${base}${path}`, { redirect: 'manual' });
    t.equal(res.status, 303, `${path}: sent to sign in`);
    t.equal(res.headers.get('location'), '/dashboard/login');
  }
  t.equal((await fetch(`${base}/api/v1/queue`)).status, 401, 'the API without a token or a session');
  t.equal((await fetch(`${base}/api/v1/queue`, { headers: { cookie: 'tern_session=made-up', 'x-tern-csrf': 'x' } })).status, 401, 'nor with a made-up session');

  const page = await browser.newPage();
  await page.goto(`${base}/dashboard/`);
  t.match(page.url(), /\/dashboard\/login$/, 'the browser lands on the sign-in page');
  await screenshot(page, 'login');
  await signIn(page, 'not-the-token');
  t.match(await page.textContent('p.error'), /not the admin token/, 'a wrong token is refused, and said so');
  t.match(page.url(), /\/dashboard\/login$/);
  await page.close();
});

t.test('signed in: the overview counts rise live as mail goes out', async (t) => {
  const page = await browser.newPage();
  // Works with no network: nothing is fetched from anywhere but Tern's admin listener.
  const foreign: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(base)) foreign.push(r.url());
  });
  await signIn(page, ADMIN_TOKEN);
  t.match(page.url(), /\/dashboard\/$/, 'the overview');
  await page.waitForSelector('[data-testid=live].on', { timeout: 10_000 });
  const delivered = async (): Promise<number> => Number((await page.textContent('[data-testid=total-delivered]'))?.replace(/\D/g, '') || 0);
  const before = await delivered();
  for (let i = 0; i < 6; i++) t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [`r${i}@a.test`], message({ to: `r${i}@a.test` })), /^250 /);
  await until(async () => (await delivered()) >= before + 6, 15_000, 'six more delivered on the page');
  t.ok((await delivered()) >= before + 6, 'delivered rose by the six messages, with no reload');
  const received = Number((await page.textContent('[data-testid=total-received]'))?.replace(/\D/g, '') || 0);
  t.ok(received >= 6, `received shows ${received}`);
  t.match(await page.textContent('[data-testid=tile-delivered] .detail'), /this minute/);
  t.ok(await page.isVisible('.chart canvas'), 'the per-minute chart is drawn');
  await screenshot(page, 'overview');
  t.same(foreign, [], 'no request left the admin listener (no CDN, no fonts)');

  // The page's own API calls carry the session and its CSRF token; a forged one carries the cookie only.
  // Run in the page (a string: this file is not compiled against the DOM).
  const calls = await page.evaluate(`(async () => {
    const csrf = document.querySelector('meta[name="tern-csrf"]').content;
    const withToken = await fetch('/api/v1/queue', { headers: { 'x-tern-csrf': csrf } });
    const forged = await fetch('/api/v1/flush', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"domain":"a.test"}' });
    return { withToken: withToken.status, forged: forged.status };
  })()`);
  t.same(calls, { withToken: 200, forged: 401 }, 'the API answers the page, not a request without the CSRF header');

  await page.click('button.signout');
  await page.waitForURL(/\/dashboard\/login$/);
  await page.goto(`${base}/dashboard/`);
  t.match(page.url(), /\/dashboard\/login$/, 'signed out: the session is gone');
  await page.close();
});

t.test('sites: suspend from the page holds the site\'s mail, the page shows it, resume releases it', async (t) => {
  const page = await browser.newPage();
  await signIn(page, ADMIN_TOKEN);
  const received = (to: string): boolean => [...files.world.sinks.values()].some((sink) => sink.received.some((m) => m.rcptTo.includes(to)));
  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['first@a.test'], message({ to: 'first@a.test' })), /^250 /);
  await until(() => received('first@a.test'), 10_000, 'a first delivery, so the site is known');

  await page.click('nav a[href="/dashboard/sites"]');
  const row = page.locator('tr[data-site="mx1.a.test"]');
  await row.waitFor({ timeout: 10_000 });
  t.match(await row.textContent(), /ok/, 'the site, not held');
  await row.getByRole('button', { name: 'Suspend…' }).click();
  await row.getByLabel('for how long').selectOption('4h');
  await row.getByLabel('reason').fill('complaints spike');
  await row.getByRole('button', { name: 'Suspend', exact: true }).click();
  await row.locator('[data-testid=suspended]').waitFor({ timeout: 10_000 });
  t.match(await row.locator('[data-testid=suspended]').textContent(), /suspended, [34] h/, 'the page shows the suspension and its time left');
  t.match(await page.textContent('[data-testid=notice]'), /suspend mx1\.a\.test: suspended until/);
  const list = (await (await adminFetch(tern.adminPort, '/api/v1/suspensions')).json()) as { suspensions: { name: string; reason: string }[] };
  t.match(list.suspensions, [{ name: 'mx1.a.test', reason: 'complaints spike' }], 'the admin API has it');

  t.match(await sendMail(tern.smtpPort, 'news@campaign.test', ['held@a.test'], message({ to: 'held@a.test' })), /^250 /);
  await until(async () => /tern_deferrals_total\{[^}]*reason="suspended"[^}]*\} [1-9]/.test(await (await adminFetch(tern.adminPort, '/metrics')).text()), 10_000, 'the new mail held as suspended');
  t.notOk(received('held@a.test'), 'held, not delivered');
  await row.getByRole('button', { name: /mx1\.a\.test/ }).click();
  const detail = page.locator('tr.detail');
  t.match(await detail.textContent(), /connections10defaults/, 'each limit, its value and the rule that set it');
  await screenshot(page, 'sites');

  await row.getByRole('button', { name: 'Resume' }).click();
  await until(() => received('held@a.test'), 10_000, 'resumed: the held mail goes');
  await until(async () => (await row.textContent())?.includes('ok'), 10_000, 'the page shows the site free again');
  const audit = readFileSync(join(tern.config.admin.state_dir, 'audit.log'), 'utf8');
  t.match(audit, /"action":"suspend".*"remote":"[^"]+ \(dashboard\)"/, 'the audit log says the suspension came from the dashboard');
  t.match(audit, /"action":"resume"/);
  await page.close();
});

t.test('campaigns: the list and a campaign\'s KPIs match the API; its failures, log, search and CSV export', async (t) => {
  const page = await browser.newPage();
  await signIn(page, ADMIN_TOKEN);
  const meta = 'X-Tern-Meta: {"campaign":"spring-sale"}';
  for (const to of ['ann@a.test', 'bob@a.test', 'cy@a.test', 'user-unknown@a.test']) {
    t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [to], message({ to, headers: [meta] })), /^250 /);
  }
  const kpis = async () => (await (await adminFetch(tern.adminPort, '/api/v1/campaigns/spring-sale')).json()) as { relayed: number; delivered: number; failed: { total: number }; success_pct: number };
  await until(async () => { const k = await kpis(); return k.delivered === 3 && k.failed.total === 1; }, 15_000, 'three delivered, one failed');

  await page.click('nav a[href="/dashboard/campaigns"]');
  const row = page.locator('tr[data-campaign="spring-sale"]');
  await row.waitFor({ timeout: 10_000 });
  t.same(await row.locator('td').allTextContents().then((cells) => cells.slice(0, 8)), ['spring-sale', '4', '3', '0', '1', '75.0 %', '0', '0'], 'the list: taken into account 4, sent 3, no soft bounce, failed 1, success 75 %, none in progress, no complaint');
  await row.getByRole('link', { name: 'spring-sale' }).click();
  await page.waitForURL(/\/dashboard\/campaigns\/spring-sale$/);
  const k = await kpis();
  const tile = async (name: string): Promise<string> => (await page.locator(`[data-testid=kpi-${name}] .value`).textContent()) ?? '';
  await until(async () => (await tile('delivered')) === String(k.delivered), 10_000, 'the KPI tiles filled');
  t.same({ relayed: await tile('relayed'), delivered: await tile('delivered'), failed: await tile('failed'), success: await tile('success') },
    { relayed: String(k.relayed), delivered: String(k.delivered), failed: String(k.failed.total), success: `${k.success_pct.toFixed(1)} %` }, 'the page\'s KPIs are the API\'s');
  t.match(await page.textContent('[data-testid=breakdown]'), /userunknown1.*10 Invalid Recipient1/, 'failures by reason and by class');

  const log = page.locator('[data-testid=log]');
  await until(async () => (await log.locator('tr.entry').count()) >= 8, 10_000, 'the log: relayed and a final event for each recipient');
  await log.getByLabel('search by recipient').fill('user-unknown');
  await until(async () => (await log.locator('tr.entry').count()) === 2, 10_000, 'search narrows to one recipient');
  t.match(await log.locator('tr.entry.failed').textContent(), /user-unknown@a\.test.*550 5\.1\.1.*userunknown \(hard, class 10\)/);
  await log.getByLabel('status').selectOption('failed');
  await until(async () => (await log.locator('tr.entry').count()) === 1, 10_000, 'and the status filter to its failure');
  await screenshot(page, 'campaign');

  const [download] = await Promise.all([page.waitForEvent('download'), log.getByRole('link', { name: 'Export CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  t.equal(csv[0], 'time,type,recipient,queue_id,code,enhanced,reason,class,failure_type,cause,async,text');
  t.equal(csv.length, 2, 'the export holds what the page shows: one row');
  t.match(csv[1], /,failed,user-unknown@a\.test,.*,550,5\.1\.1,userunknown,10,hard,bounce,/);
  t.equal((await fetch(`${base}/api/v1/campaigns/spring-sale/log.csv`)).status, 401, 'the export link is nothing without the session');
  await page.close();
});

t.test('a sign-in posted from another site is refused', async (t) => {
  const res = await fetch(`${base}/dashboard/login`, {
    method: 'POST', redirect: 'manual', headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN_TOKEN}`,
  });
  t.equal(res.status, 403);
  t.equal(res.headers.get('set-cookie'), null, 'and no session is made');
});
