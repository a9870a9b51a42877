// End-to-end tests of the wallboard's alerts banner, charts and source health
// and of the console views #/trends, #/sources, #/alerts and #/exports,
// against the real server (started with an alert rules file) and PostgreSQL,
// in headless Debian Chromium. One server and one database for the file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Env, ROOT, launchBrowser, newPage, waitFor, axeProblems } from './harness.js';

const SHOTS = path.join(ROOT, 'docs/screenshots');
const require = createRequire(import.meta.url);

// One rule: more than 5 records waiting in a source fires at once (critical).
const RULES = `[settings]
interval = "500ms"

[[rules]]
name = "backlog-high"
condition = "backlog"
above = 5
sources = "each"
severity = "critical"
summary = "more than 5 records waiting"
`;

let env;
let browser;

before(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'iw-views-'));
  writeFileSync(path.join(dir, 'rules.toml'), RULES);
  process.env.INGESTWATCH_ALERTS = path.join(dir, 'rules.toml'); // read by Env.start (this process only)
  env = await Env.create();
  browser = await launchBrowser();
  env.sql(`insert into ingest.sources (name, kind, expected_interval)
           values ('crm', 'api', '1 minute'), ('erp', 'sftp', '5 minutes'), ('hr', 'api', '1 hour')`);
  // crm: 24 processed records now (4 rejected, 3 errors), 10 two days ago, runs; erp: 7 now.
  // Inserted processed, so no backlog (the alert rule) builds up.
  env.sql(`
    with s as (select id from ingest.sources where name = 'crm'),
         r as (insert into ingest.runs (source_id, status, finished_at) select id, 'succeeded', now() from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload, status, processed_at)
    select r.id, r.source_id, 'now-' || g, '{}', case when g <= 4 then 'rejected' else 'normalized' end, now()
      from r, generate_series(1, 24) g`);
  env.sql(`
    with s as (select id from ingest.sources where name = 'crm'),
         r as (insert into ingest.runs (source_id, started_at, status, finished_at)
               select id, now() - interval '2 days', 'failed', now() - interval '2 days' from s returning id, source_id, started_at)
    insert into ingest.raw_records (run_id, source_id, external_id, payload, status, received_at, processed_at)
    select r.id, r.source_id, 'old-' || g, '{}', 'normalized', r.started_at, r.started_at + g * interval '100 ms'
      from r, generate_series(1, 10) g`);
  env.sql(`
    insert into ingest.errors (run_id, source_id, severity, stage, code, message)
    select r.id, r.source_id, 'error', 'load', 'timeout', 'load timed out ' || g
      from (select id, source_id from ingest.runs order by id limit 1) r, generate_series(1, 3) g`);
  env.sql(`
    with s as (select id from ingest.sources where name = 'erp'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload, status, processed_at)
    select r.id, r.source_id, 'erp-' || g, '{}', 'normalized', now() from r, generate_series(1, 7) g`);
  // the server has applied every row (history included) before any page asks
  await waitFor(async () => {
    const b = await env.api('/api/trends?metric=received&bucket=hour&from=' + (Math.floor(Date.now() / 1000) - 7 * 86400) + '&source=crm');
    return b.series.crm.reduce((a, v) => a + v, 0) === 34 && b.series.total.reduce((a, v) => a + v, 0) === 41;
  }, { what: 'the trends to hold the seeded rows' });
});

after(async () => {
  await browser?.close();
  await env?.close();
});

/** Opens `hash` ('' = the wallboard at /wall) with the token in the hash, as a shared link would. */
async function open(page, hash) {
  const [route, query] = hash.split('?');
  const q = new URLSearchParams(query || '');
  q.set('token', env.token);
  await page.goto(route ? `${env.base}/${route}?${q}` : `${env.base}/wall#${q}`);
}

/** The legend figures of one chart with the window it covers. */
function chartState(page, id) {
  return page.$eval(`[data-chart="${id}"]`, (c) => ({
    from: Number(c.dataset.from), to: Number(c.dataset.to), step: Number(c.dataset.step), drawn: Number(c.dataset.drawn || 0),
    canvas: !!c.querySelector('canvas'),
    figures: Object.fromEntries([...c.querySelectorAll('[data-series]')].map((li) => [li.dataset.series, li.querySelector('b').dataset.figure])),
  }));
}

/** Sum (counts) or peak (lag) of an /api/trends series, as the legend spells it. */
function figure(metric, values) {
  const nums = values.filter((v) => typeof v === 'number');
  if (!nums.length) return '';
  const peak = metric.startsWith('lag_') || metric.startsWith('run_duration_');
  return String(peak ? Math.max(...nums) : nums.reduce((a, v) => a + v, 0));
}

const BUCKET = { 60: 'minute', 3600: 'hour', 86400: 'day' };
const CHARTS = {
  throughput: ['received', 'normalized', 'rejected'], problems: ['errors', 'warnings'],
  lag: ['lag_p50', 'lag_p95', 'lag_p99'], runs: ['runs_started', 'runs_succeeded', 'runs_failed', 'runs_partial'],
  duration: ['run_duration_p50', 'run_duration_p95', 'run_duration_p99'],
};

/** Every chart of the trends view shows what /api/trends answers for its window and source. */
async function assertTrendsMatch(page, source) {
  for (const [id, metrics] of Object.entries(CHARTS)) {
    const c = await chartState(page, id);
    assert.ok(c.canvas && c.drawn > 0, `chart ${id} is drawn`);
    for (const m of metrics) {
      const q = new URLSearchParams({ metric: m, bucket: BUCKET[c.step], from: String(c.from), to: String(c.to) });
      if (source) q.set('source', source);
      const body = await env.api(`/api/trends?${q}`);
      assert.equal(c.figures[m], figure(m, body.series[source || 'total']), `${id}/${m} (${source || 'total'})`);
    }
  }
}

test('trends: range picker and source selector drive the URL; charts show what /api/trends answers', async () => {
  const page = await newPage(browser, { colorScheme: 'dark' });
  await open(page, '#/trends');
  await page.waitForSelector('#views [data-chart="throughput"][data-drawn]');
  assert.equal(await page.getAttribute('.range-picker [data-range="24h"]', 'aria-pressed'), 'true', 'default range');

  await page.click('.range-picker [data-range="7d"]');
  await page.waitForFunction(() => location.hash === '#/trends?range=7d');
  await page.waitForSelector('#views[data-range="7d"] [data-chart="throughput"][data-step="3600"]');
  await page.selectOption('#trends-source', 'crm');
  await page.waitForFunction(() => location.hash === '#/trends?range=7d&source=crm');
  await page.waitForSelector('#views[data-range="7d"][data-source="crm"] .list-status[data-loaded]');
  await page.waitForFunction(() => document.querySelector('[data-chart="throughput"]').dataset.drawn > 0);

  const c = await chartState(page, 'throughput');
  assert.equal(c.to - c.from, 7 * 86400, 'seven days of hour buckets');
  assert.equal(c.figures.received, '34', 'crm: 24 records now and 10 two days ago');
  assert.equal(c.figures.rejected, '4');
  assert.equal((await chartState(page, 'problems')).figures.errors, '3');
  await assertTrendsMatch(page, 'crm');

  // the data table holds every bucket, equal to the API's series (it is
  // filled by the details' `toggle` event, which fires after the click)
  const api = await env.api(`/api/trends?metric=received&bucket=hour&from=${c.from}&to=${c.to}&source=crm`);
  await page.click('[data-chart="throughput"] summary');
  await page.waitForFunction((n) => document.querySelectorAll('[data-chart="throughput"] tbody tr').length >= n,
    api.t.length);
  const cells = await page.$$eval('[data-chart="throughput"] tbody tr', (rows) => rows.map((r) => [Number(r.dataset.t),
    r.querySelectorAll('td')[0].dataset.value]));
  assert.deepEqual(cells.map(([t]) => t), api.t);
  assert.deepEqual(cells.map(([, v]) => Number(v)), api.series.crm);

  // all sources: erp's 7 records count too
  await page.selectOption('#trends-source', '');
  await page.waitForFunction(() => location.hash === '#/trends?range=7d');
  await page.waitForSelector('#views[data-source=""] .list-status[data-loaded]');
  await page.waitForFunction(() => document.querySelector('[data-chart="throughput"] [data-series="received"] b').dataset.figure === '41');
  await assertTrendsMatch(page, '');

  // a short range has minute buckets and follows the live edge
  await page.click('.range-picker [data-range="1h"]');
  await page.waitForSelector('#views[data-range="1h"] [data-chart="throughput"][data-step="60"]');
  await page.waitForFunction(() => document.querySelector('[data-chart="throughput"] [data-series="received"] b').dataset.figure === '31');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, 'trends-dark.png') });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('trends: a deep link #/trends?range=7d&source=crm restores the view', async () => {
  const page = await newPage(browser);
  await open(page, '#/trends?range=7d&source=crm');
  assert.ok(!page.url().includes('token='), 'the token is taken out of the URL');
  await page.waitForSelector('#views[data-range="7d"][data-source="crm"] .list-status[data-loaded]');
  await page.waitForFunction(() => document.querySelector('[data-chart="runs"]').dataset.drawn > 0);
  assert.equal(new URL(page.url()).hash, '#/trends?range=7d&source=crm');
  assert.equal(await page.getAttribute('.range-picker [data-range="7d"]', 'aria-pressed'), 'true');
  assert.equal(await page.getAttribute('.range-picker [data-range="24h"]', 'aria-pressed'), 'false');
  assert.equal(await page.inputValue('#trends-source'), 'crm');
  assert.equal(await page.getAttribute('.views a[data-view="trends"]', 'aria-current'), 'page');
  await assertTrendsMatch(page, 'crm');
  const runs = await chartState(page, 'runs');
  assert.equal(runs.figures.runs_failed, '1', 'the failed run two days ago');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('wallboard: last-hour charts equal /api/trends and the health grid shows each source\'s state', async () => {
  const page = await newPage(browser);
  await open(page, '');
  await page.waitForSelector('#status[data-state="live"]');
  await page.waitForFunction(() => document.querySelector('[data-chart="wall-throughput"]')?.dataset.drawn > 0
    && document.querySelector('[data-chart="wall-throughput"] [data-series="received"] b').dataset.figure === '31');
  const c = await chartState(page, 'wall-throughput');
  assert.equal(c.step, 60);
  const api = await env.api(`/api/trends?metric=received&bucket=minute&from=${c.from}&to=${c.to}`);
  assert.equal(c.figures.received, figure('received', api.series.total));
  assert.equal((await chartState(page, 'wall-errors')).figures.errors, '3');

  // crm: its newest finished run succeeded, 4 of 24 processed rejected (≥ 5 %) → warning;
  // erp: fresh, nothing wrong → healthy; hr: never received a record → stale
  await page.waitForSelector('#health [data-source="hr"]');
  const health = await page.$$eval('#health [data-source]', (cards) => Object.fromEntries(cards.map((c) => [c.dataset.source,
    [c.dataset.health, c.querySelector('.health-age').textContent]])));
  assert.deepEqual(Object.keys(health).sort(), ['crm', 'erp', 'hr']);
  assert.equal(health.crm[0], 'warning');
  assert.match(health.crm[1], /^last record (just now|\d+ s ago)$/);
  assert.equal(health.erp[0], 'healthy');
  assert.deepEqual(health.hr, ['stale', 'no record yet']);
  assert.match(await page.getAttribute('#health [data-source="crm"]', 'title'), /16\.6% rejected \(5 min\)|16\.7% rejected/);
  assert.equal(await page.getAttribute('#alert-banner', 'data-level'), 'ok');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('alerts: an alert fired by pipeline writes shows in the banner, the badge, the health grid and #/alerts', async () => {
  const page = await newPage(browser, { colorScheme: 'light' });
  await open(page, '');
  await page.waitForSelector('#alert-banner[data-level="ok"]');

  // 8 records waiting in erp: backlog 8 > 5
  env.sql(`
    with s as (select id from ingest.sources where name = 'erp'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload)
    select r.id, r.source_id, 'wait-' || g, '{}' from r, generate_series(1, 8) g`);
  const chip = '#alert-banner li[data-rule="backlog-high"][data-instance="erp"][data-state="firing"]';
  await page.waitForSelector(chip, { timeout: 10_000 });
  assert.equal(await page.getAttribute('#alert-banner', 'data-level'), 'critical');
  assert.match(await page.textContent(chip), /^backlog-high · erp · 8 records \(limit 5 records\) · firing/);
  assert.equal(await page.textContent('#alert-count'), '1');
  await page.waitForSelector('#health [data-source="erp"][data-health="failing"]');

  // #/alerts: the active alert and its transition, as the API has them
  await page.click('#alert-banner a.alert-head');
  await page.waitForFunction(() => location.hash === '#/alerts');
  await page.waitForSelector('#active-alerts tr[data-rule="backlog-high"][data-instance="erp"][data-state="firing"]');
  const [fired] = (await env.api('/api/alerts/history?rule=backlog-high&source=erp')).transitions;
  assert.equal(fired.state, 'firing');
  await page.waitForSelector(`#alert-history tr[data-id="${fired.id}"]`);
  assert.match(await page.textContent(`#alert-history tr[data-id="${fired.id}"]`), /backlog-high.*erp.*→ firing.*critical.*8 records.*5 records/);
  await page.screenshot({ path: path.join(SHOTS, 'alerts-light.png') });

  // processing the records resolves it: gone from the active list, on top of the history, live
  env.sql(`update ingest.raw_records set status = 'normalized', processed_at = now() where external_id like 'wait-%'`);
  await page.waitForSelector('#active-alerts', { state: 'hidden', timeout: 10_000 });
  await page.waitForSelector('#alert-history tbody tr:first-child b[data-state="resolved"]');
  const [resolved] = (await env.api('/api/alerts/history?rule=backlog-high&source=erp')).transitions;
  assert.equal(resolved.state, 'resolved');
  assert.equal(await page.getAttribute('#alert-history tbody tr:first-child', 'data-id'), String(resolved.id));
  assert.equal(await page.isHidden('#alert-count'), true, 'no badge without active alerts');

  // the history filter is in the URL
  await page.selectOption('#f-alerts-state', 'resolved');
  await page.waitForFunction(() => location.hash === '#/alerts?state=resolved');
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#alert-history tbody tr');
    return rows.length === 1 && rows[0].dataset.id === String(id);
  }, resolved.id);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

for (const scheme of ['dark', 'light']) {
  test(`one story, ${scheme}: the Backlog tile turns red while its alert fires; legends say peak/total; tiles say their time basis`, async () => {
    const page = await newPage(browser, { colorScheme: scheme });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await open(page, '');
    await page.waitForSelector('#alert-banner[data-level="ok"]');
    const tile = '.tile:has([data-kpi="backlog"])';
    assert.equal(await page.getAttribute(tile, 'data-alert'), null);
    const calm = await page.$eval(`${tile} .num`, (n) => getComputedStyle(n).color);

    env.sql(`insert into ingest.sources (name, kind) values ('story', 'api') on conflict (name) do nothing`);
    env.sql(`
      with s as (select id from ingest.sources where name = 'story'),
           r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
      insert into ingest.raw_records (run_id, source_id, external_id, payload)
      select r.id, r.source_id, 'story-' || g, '{}' from r, generate_series(1, 8) g`);
    await page.waitForSelector(`${tile}[data-alert="bad"]`, { timeout: 10_000 });
    assert.equal(await page.textContent(`${tile} .tile-alert`), 'alert firing: backlog-high');
    const [red, bad] = await page.$eval(`${tile} .num`, (n) => [getComputedStyle(n).color,
      (() => { const p = document.createElement('span'); p.style.color = 'var(--bad)'; document.body.append(p); const c = getComputedStyle(p).color; p.remove(); return c; })()]);
    assert.equal(red, bad, 'the figure is in the bad colour');
    assert.notEqual(red, calm);
    assert.equal(await page.getAttribute('.tile:has([data-kpi="lag_p95"])', 'data-alert'), null, 'other tiles stay calm');

    // legends name their figure; tiles name their time basis
    await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas');
    assert.equal(await page.textContent('[data-chart="wall-throughput"] [data-series="received"] .fig-kind'), 'total ');
    assert.equal(await page.textContent('[data-chart="wall-lag95"] [data-series="lag_p95"] .fig-kind'), 'peak ');
    assert.ok(await page.isVisible('[data-chart="wall-lag95"] [data-series="lag_p95"] .fig-kind'));
    assert.equal(await page.textContent('.tile:has([data-kpi="received"]) h2 small'), 'by arrival');
    assert.equal(await page.textContent('.tile:has([data-kpi="normalized"]) h2 small'), 'by processing');

    env.sql(`update ingest.raw_records set status = 'normalized', processed_at = now() where external_id like 'story-%'`);
    await page.waitForFunction((t) => !document.querySelector(t).hasAttribute('data-alert'), tile, { timeout: 10_000 });
    assert.equal(await page.$(`${tile} .tile-alert`), null);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
}

test('exports: a job started from the list filter shows progress, and its CSV holds exactly the filter\'s rows', async () => {
  env.sql(`
    insert into ingest.errors (run_id, source_id, severity, stage, code, message)
    select r.id, r.source_id, case when g % 3 = 0 then 'warning' else 'error' end,
           case when g % 2 = 0 then 'fetch' else 'load' end, 'code_' || (g % 5), 'bulk ' || g
      from (select id, source_id from ingest.runs order by id limit 1) r, generate_series(1, 12000) g`);
  const where = `severity = 'error' and stage = 'load'`;
  const expected = Number(env.sql(`select count(*) from ingest.errors where ${where}`));
  assert.ok(expected > 4000, `${expected} rows: more than a synchronous page`);

  const page = await newPage(browser);
  // progress comes over the socket (topic exports) and the job's row follows it
  const frames = [];
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    const f = JSON.parse(String(payload));
    if (f.type === 'export') frames.push(f);
  }));
  await open(page, '#/errors?severity=error&stage=load');
  await page.waitForSelector('table[data-list="errors"] tbody tr');
  await page.click('.views a[data-view="exports"]');
  await page.waitForSelector('#export-form');
  assert.equal(await page.inputValue('#x-kind'), 'errors', 'prefilled from the list viewed');
  assert.equal(await page.inputValue('#x-severity'), 'error');
  assert.equal(await page.inputValue('#x-stage'), 'load');

  await page.click('#export-form button[type="submit"]');
  const row = '#export-jobs tbody tr[data-status="finished"]';
  await page.waitForSelector(row, { timeout: 30_000 });
  const id = await page.getAttribute(row, 'data-id');
  const mine = frames.filter((f) => f.id === id);
  assert.deepEqual(mine.at(-1), { type: 'export', id, status: 'finished', rows: expected });
  assert.ok(mine.some((f) => f.status === 'running'), mine.map((f) => f.status).join(' → '));
  assert.equal(await page.getAttribute(`${row} td[data-col="rows"]`, 'data-value'), String(expected));
  const prog = await page.$eval(`${row} progress`, (p) => [p.value, p.max]);
  assert.equal(prog[0], prog[1], 'progress full');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`${row} button:text("Download")`)]);
  assert.match(download.suggestedFilename(), /^errors-[0-9a-f]{8}\.csv$/);
  const lines = readFileSync(await download.path(), 'utf8').trimEnd().split('\r\n');
  const header = lines[0].split(',');
  const rows = lines.slice(1).map((l) => l.split(','));
  assert.equal(rows.length, expected);
  for (const r of rows) {
    assert.equal(r[header.indexOf('severity')], 'error');
    assert.equal(r[header.indexOf('stage')], 'load');
  }
  const ids = rows.map((r) => r[header.indexOf('id')]).sort();
  assert.deepEqual(ids, env.sql(`select id from ingest.errors where ${where}`).split('\n').sort());

  // the job list survives a reload (this browser remembers its jobs); delete the file
  await page.reload();
  await page.waitForSelector(row);
  await page.click(`${row} button:text("Delete")`);
  await page.waitForSelector('#export-jobs tbody tr[data-status="deleted"]');
  await page.screenshot({ path: path.join(SHOTS, 'exports-light.png') });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('sources view lists every source with health, freshness and links', async () => {
  const page = await newPage(browser, { colorScheme: 'dark' });
  await open(page, '#/sources');
  await page.waitForSelector('#sources-list tr[data-source="hr"]');
  const api = await env.api('/api/sources?limit=500');
  const shown = await page.$$eval('#sources-list tbody tr', (rows) => rows.map((r) => r.dataset.source));
  assert.deepEqual([...shown].sort(), api.items.map((s) => s.name).sort());
  assert.equal(await page.textContent('#sources-list tr[data-source="hr"] [data-col="health"]'), 'stale');
  assert.equal(await page.textContent('#sources-list tr[data-source="hr"] [data-col="expected"]'), '1 h');
  assert.match(await page.textContent('#sources-list tr[data-source="erp"] [data-col="last"]'), /^last record (just now|\d+ (s|min) ago)$/);
  await page.click('#sources-list tr[data-source="erp"] th a');
  await page.waitForFunction(() => location.hash === '#/trends?source=erp');
  await page.waitForSelector('#views[data-source="erp"] .list-status[data-loaded]');
  await page.evaluate(() => { location.hash = '#/sources'; });
  await page.waitForSelector('#sources-list tr[data-source="hr"]');
  await page.screenshot({ path: path.join(SHOTS, 'sources-dark.png') });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('accessibility: axe-core finds no serious or critical violations on the new views, dark and light', async () => {
  const page = await newPage(browser);
  await open(page, '');
  await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const views = [
    ['wallboard', null, '[data-chart="wall-lag95"][data-drawn] canvas'],
    ['sources', '#/sources', '#sources-list tr[data-source="hr"]'],
    ['trends', '#/trends?range=30d&source=crm', '#views[data-range="30d"] [data-chart="lag"][data-drawn] canvas'],
    ['alerts', '#/alerts', '#alert-history tbody tr'],
    ['exports', '#/exports', '#export-form'],
  ];
  const problems = [];
  for (const [name, hash, ready] of views) {
    if (hash) await page.evaluate((h) => { location.hash = h; }, hash);
    await page.waitForSelector(ready);
    if (name === 'trends') await page.click('[data-chart="throughput"] summary'); // the data table too
    for (const theme of ['dark', 'light']) {
      await page.evaluate((t) => { document.documentElement.dataset.theme = t; }, theme);
      problems.push(...await axeProblems(page, `${name}/${theme}`));
    }
  }
  assert.deepEqual(problems, []);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('bundle budget: the wallboard with its charts loads at most 150 KB gzipped; the whole client too', async () => {
  const page = await newPage(browser);
  const urls = new Set();
  page.on('requestfinished', (r) => { if (r.url().startsWith(env.base)) urls.add(r.url().split('#')[0]); });
  await open(page, '');
  await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas');
  let total = 0;
  for (const u of urls) {
    const p = new URL(u).pathname;
    if (p === '/ws' || p.startsWith('/api/')) continue;
    total += gzipSync(Buffer.from(await (await fetch(u)).arrayBuffer()), { level: 9 }).length;
  }
  assert.ok([...urls].some((u) => u.endsWith('/vendor/uPlot.esm.js')), 'uPlot was loaded');
  const files = (dir) => readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return f === 'tests' || f === 'node_modules' ? [] : files(p);
    return [p];
  });
  const all = files(path.join(ROOT, 'client')).reduce((n, f) => n + gzipSync(readFileSync(f), { level: 9 }).length, 0);
  console.log(`# wallboard with charts: ${urls.size} files, ${total} B gzipped; whole client ${all} B gzipped`);
  assert.ok(total <= 150 * 1024, `wallboard ${total} B gzipped`);
  assert.ok(all <= 150 * 1024, `whole client ${all} B gzipped`);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('source health thresholds (sources.js) and trend windows (trends.js), without a browser', async () => {
  const { sourceHealth, HEALTH } = await import('../src/sources.js');
  const { rangeWindow, RANGES } = await import('../src/trends.js');
  const now = Date.parse('2026-11-26T10:00:00Z');
  const ago = (s) => new Date(now - s * 1000).toISOString();
  const src = (extra) => ({ name: 'crm', expected_interval_secs: 60, last_record_at: ago(10), ...extra });
  const fig = (normalized, rejected, errors = 0) => ({ received: normalized + rejected, normalized, rejected, errors });
  const state = (s, live = null, alerts = []) => sourceHealth(s, live, alerts, now).state;

  assert.equal(state(src()), 'healthy');
  assert.equal(state(src({ expected_interval_secs: null, last_record_at: ago(86_400) })), 'healthy', 'no interval: never late');
  assert.equal(state(src({ last_record_at: ago(61) })), 'warning', 'late past 1 × E');
  assert.equal(state(src({ last_record_at: ago(180) })), 'warning', 'still late at 3 × E');
  assert.equal(state(src({ last_record_at: ago(181) })), 'stale');
  assert.equal(state(src({ last_record_at: ago(181) }), { last_received_at: ago(5) }), 'healthy', 'the live figures are fresher');
  assert.equal(state(src({ last_record_at: null })), 'stale', 'never received');
  assert.equal(state(src(), fig(95, 5)), 'warning', `${HEALTH.rejectWarn * 100} % rejected`);
  assert.equal(state(src(), fig(96, 4)), 'healthy');
  assert.equal(state(src(), fig(80, 20)), 'failing', `${HEALTH.rejectFail * 100} % rejected`);
  assert.equal(state(src(), fig(5, 4)), 'healthy', 'rates need 10 records');
  assert.equal(state(src(), fig(100, 0, 5)), 'warning', 'errors per record');
  assert.equal(state(src({ last_run: { id: 1, status: 'failed' } })), 'failing');
  assert.equal(state(src({ last_run: { id: 1, status: 'partial' } })), 'warning');
  const alert = (severity, st) => [{ rule: 'r', source: 'crm', sources: ['crm'], severity, state: st }];
  assert.equal(state(src(), null, alert('critical', 'firing')), 'failing');
  assert.equal(state(src(), null, alert('critical', 'pending')), 'warning');
  assert.equal(state(src(), null, alert('warning', 'firing')), 'warning');
  assert.equal(state(src(), null, [{ ...alert('critical', 'firing')[0], source: 'erp', sources: ['erp'] }]), 'healthy');
  assert.equal(state(src({ last_record_at: null, last_run: { id: 2, status: 'failed' } })), 'failing', 'failing wins over stale');

  for (const [name, r] of Object.entries(RANGES)) {
    const w = rangeWindow(name, now + 1500);
    assert.equal(w.to - w.from, r.secs, name);
    assert.equal(w.to % w.step, 0, `${name} ends on a bucket boundary`);
    assert.ok(w.from * 1000 < now && now + 1500 < w.to * 1000, `${name} holds now`);
    assert.ok(r.secs / w.step <= 1440, `${name}: at most 1,440 points`);
  }
});
