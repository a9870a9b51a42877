// End-to-end tests of the client against the real server and PostgreSQL, in
// headless Debian Chromium. One server and one database for the file; the
// tests run in order (the reconnect test kills and restarts the server).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Env, ROOT, launchBrowser, newPage, sleep } from './harness.js';

const SHOTS = path.join(ROOT, 'docs/screenshots');
const require = createRequire(import.meta.url);

let env;
let browser;

before(async () => {
  env = await Env.create();
  browser = await launchBrowser();
  env.sql(`insert into ingest.sources (name, kind, expected_interval)
           values ('crm', 'api', '1 minute'), ('erp', 'sftp', '5 minutes')`);
});

after(async () => {
  await browser?.close();
  await env?.close();
});

/** Waits until `fn()` returns a truthy value; returns it. */
async function until(fn, { timeout = 5000, every = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

const TILE_KEYS = ['received', 'normalized', 'rejected', 'errors', 'warnings', 'backlog',
  'runs_started', 'runs_succeeded', 'runs_failed', 'runs_running'];

async function tiles(page) {
  return page.$$eval('[data-kpi]', (els) => Object.fromEntries(els.map((e) => [e.dataset.kpi, e.dataset.value])));
}

/** A run of `crm` with `n` records: some normalized, one rejected with an error, the rest pending. */
function commitBatch(n, { source = 'crm' } = {}) {
  return env.sql(`
    with s as (select id from ingest.sources where name = '${source}'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload)
    select r.id, r.source_id, 'ext-' || g, jsonb_build_object('n', g)
      from r, generate_series(1, ${n}) g
    returning run_id`).split('\n')[0];
}

async function openWall(page, hash = '') {
  await page.goto(`${env.base}/wall#token=${env.token}${hash}`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10_000 });
}

test('wallboard tiles follow committed rows within 2 s and equal /api/kpis', async () => {
  const page = await newPage(browser);
  await openWall(page);
  assert.ok(!page.url().includes('token='), 'the token is taken out of the URL');
  assert.equal(await page.getAttribute('#who', 'data-role'), 'operator');
  assert.match(await page.getAttribute('#who', 'title'), /^expires \d\d:\d\d:\d\d \(.* UTC\)$/);
  const before = Number((await tiles(page)).received || 0);

  const t0 = Date.now();
  const run = commitBatch(7);
  env.sql(`update ingest.raw_records set status = 'normalized', processed_at = now()
            where run_id = ${run} and external_id in ('ext-1','ext-2','ext-3','ext-4')`);
  env.sql(`update ingest.raw_records set status = 'rejected', processed_at = now()
            where run_id = ${run} and external_id = 'ext-5'`);
  env.sql(`insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message)
           select run_id, id, source_id, 'error', 'validate', 'missing_title', 'title is required'
             from ingest.raw_records where run_id = ${run} and external_id = 'ext-5'`);
  await until(async () => {
    const t = await tiles(page);
    return Number(t.received) === before + 7 && t.errors === '1' && t.rejected === '1' && t.normalized === '4';
  }, { timeout: 2000, what: 'tiles to show the committed rows' });
  const latency = Date.now() - t0;
  console.log(`# tiles updated ${latency} ms after the first statement`);
  assert.ok(latency <= 2000, `tiles updated after ${latency} ms`);

  // Equal to the REST figures of the same window (nothing else writes).
  await sleep(400);
  const api = await env.api('/api/kpis?window=5m');
  const shown = await tiles(page);
  for (const k of TILE_KEYS) {
    assert.equal(shown[k], String(api.total[k]), `tile ${k}`);
  }
  const asShown = (v) => (v == null ? '' : String(v));
  for (const p of ['p95', 'p99']) {
    assert.equal(shown[`lag_${p}`], asShown(api.total.lag_ms[p]), `tile lag_${p}`);
  }
  assert.equal(shown.run_p95, asShown(api.total.run_duration_ms.p95), 'tile run_p95');
  assert.equal(shown.received, '7');
  assert.equal(shown.backlog, '2');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('killing and restarting the server: reconnecting state, then resumes without a reload', async () => {
  const page = await newPage(browser);
  await openWall(page);
  await page.evaluate(() => { window.__noReload = 'still here'; });
  const received = Number((await tiles(page)).received);
  // the page has loaded (its charts' requests are answered), so the kill cuts only the socket
  await page.waitForFunction(() => {
    const charts = [...document.querySelectorAll('#wall-charts [data-chart]')];
    return charts.length > 0 && charts.every((c) => Number(c.dataset.drawn) > 0);
  });
  await page.waitForSelector('#wrong-now[data-loaded="true"]');

  await env.kill();
  await page.waitForSelector('#status[data-state="stale"]', { timeout: 5000 });
  const pill = await page.textContent('#status');
  assert.match(pill, /^reconnecting — data as of \d\d:\d\d:\d\d$/);
  assert.equal(await page.getAttribute('#app', 'data-stale'), '', 'figures are marked stale');

  await env.start();
  await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
  commitBatch(3);
  await until(async () => Number((await tiles(page)).received) === received + 3,
    { timeout: 3000, what: 'catch-up after restart' });
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'no reload happened');
  // the expected connection-refused noise of a dead server is not a page error
  const problems = page.problems.filter((p) => !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(p));
  assert.deepEqual(problems, []);
  await page.context().close();
});

test('screenshots of the wallboard, dark and light', async () => {
  mkdirSync(SHOTS, { recursive: true });
  for (const scheme of ['dark', 'light']) {
    const page = await newPage(browser, { colorScheme: scheme, viewport: { width: 1920, height: 1080 } });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await openWall(page);
    await until(async () => (await tiles(page)).received !== '', { what: 'figures' });
    const run = commitBatch(2, { source: scheme === 'dark' ? 'crm' : 'erp' });
    env.sql(`update ingest.runs set status = 'failed', finished_at = now() where id = ${run}`); // an incident
    await page.waitForSelector('#incidents li[data-kind="run_failed"]');
    await sleep(1800); // let the row flash fade
    await page.screenshot({ path: path.join(SHOTS, `wallboard-${scheme}.png`) });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('accessibility: axe-core finds no serious or critical violations', async () => {
  const page = await newPage(browser);
  await openWall(page);
  // CSP forbids inline scripts in the page, so axe is evaluated through the
  // DevTools protocol (page.evaluate), not injected as a <script>.
  await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const views = [['wallboard', null, '#app'], ['runs', '#/runs', 'table[data-list="runs"] tbody tr'],
    ['errors', '#/errors', 'table[data-list="errors"] tbody tr'], ['record', '#/record/1', '#raw-json'],
    ['run', '#/run/1', '#error-summary']];
  for (const [name, hash, ready] of views) {
    if (hash) await page.evaluate((h) => { location.hash = h; }, hash);
    await page.waitForSelector(ready);
    for (const theme of ['dark', 'light']) {
      await page.evaluate((t) => { document.documentElement.dataset.theme = t; }, theme);
      const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
      const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(bad.map((v) => `${name}/${theme}: ${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`), []);
    }
  }
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('bundle budget: what the first page loads is at most 150 KB gzipped', async () => {
  const page = await newPage(browser);
  const urls = new Set();
  page.on('requestfinished', (r) => { if (r.url().startsWith(env.base)) urls.add(r.url().split('#')[0]); });
  await openWall(page);
  let total = 0;
  for (const u of urls) {
    if (new URL(u).pathname === '/ws') continue;
    const body = Buffer.from(await (await fetch(u)).arrayBuffer());
    total += gzipSync(body, { level: 9 }).length;
  }
  // and every file in client/ that ships, in case some load lazily
  const shipped = ['index.html', 'styles.css', ...readdirSync(path.join(ROOT, 'client/src')).map((f) => `src/${f}`)];
  const all = shipped.reduce((n, f) => n + gzipSync(readFileSync(path.join(ROOT, 'client', f)), { level: 9 }).length, 0);
  console.log(`# first page: ${urls.size} files, ${total} B gzipped; whole client ${all} B gzipped`);
  assert.ok(urls.size >= 3, 'index.html, styles and scripts were loaded');
  assert.ok(total <= 150 * 1024, `first page ${total} B gzipped`);
  assert.ok(all <= 150 * 1024, `whole client ${all} B gzipped`);
  await page.context().close();
});

test('record drill-down shows the exact raw JSON, the normalized meeting and its errors', async () => {
  // jsonb keeps numeric spelling (1.50) and big integers; the view must not round them
  const payload = '{"title": "Quarterly review", "cost": 1.50, "big": 12345678901234567890123, '
    + '"tags": ["a", "b,c"], "nested": {"empty": {}, "list": [], "quote": "say \\"hi\\""}}';
  const id = env.sql(`
    with s as (select id from ingest.sources where name = 'erp'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id),
         rec as (insert into ingest.raw_records (run_id, source_id, external_id, payload, status, processed_at)
                 select id, source_id, 'drill-1', '${payload.replace(/'/g, "''")}'::jsonb, 'normalized', now() from r
                 returning id, run_id, source_id),
         m as (insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count)
               select id, source_id, 'Quarterly review', '2026-11-26T10:00:00Z', '2026-11-26T11:00:00Z', 'ada@example.com', 12 from rec),
         e as (insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message)
               select run_id, id, source_id, 'warning', 'normalize', 'cost_rounded', 'cost has two decimals' from rec)
    select id from rec`);
  const stored = env.sql(`select payload::text from ingest.raw_records where id = ${id}`);

  const page = await newPage(browser);
  await page.goto(`${env.base}/#/records?source=erp&token=${env.token}`);
  assert.ok(!page.url().includes('token='), 'the token is taken out of the URL');
  await page.click(`table[data-list="records"] tr[data-id="${id}"] a`);
  await page.waitForSelector('#raw-json');
  assert.equal(new URL(page.url()).hash, `#/record/${id}`);
  const shown = await page.textContent('#raw-json');
  // the same text as PostgreSQL prints it, only re-indented
  assert.equal(shown.replace(/\n\s*/g, '').replace(/": /g, '":').replace(/, /g, ','),
    stored.replace(/": /g, '":').replace(/, /g, ','));
  assert.match(shown, /"cost": 1\.50,/);
  assert.match(shown, /"big": 12345678901234567890123,/);
  assert.match(shown, /^ {2}"nested": \{$/m);
  assert.equal(await page.textContent('#meeting [data-field="title"]'), 'Quarterly review');
  assert.equal(await page.textContent('#meeting [data-field="attendee_count"]'), '12');
  assert.match(await page.textContent('#record-errors'), /warning · normalize · cost_rounded cost has two decimals/);
  for (const scheme of ['dark', 'light']) {
    await page.evaluate((t) => { document.documentElement.dataset.theme = t; }, scheme);
    await page.screenshot({ path: path.join(SHOTS, `drilldown-${scheme}.png`) });
  }
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('errors list filters by severity/stage/code and its CSV export matches the filter', async () => {
  env.sql(`
    with s as (select id from ingest.sources where name = 'crm'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.errors (run_id, source_id, severity, stage, code, message)
    select r.id, r.source_id, case when g % 3 = 0 then 'warning' else 'error' end,
           case when g % 2 = 0 then 'fetch' else 'load' end, 'code_' || (g % 4), 'message ' || g
      from r, generate_series(1, 24) g`);
  const expected = Number(env.sql(`select count(*) from ingest.errors where severity = 'error' and stage = 'load'`));
  assert.ok(expected > 0);

  const page = await newPage(browser);
  await page.goto(`${env.base}/#/errors?token=${env.token}`);
  await page.waitForSelector('table[data-list="errors"] tbody tr');
  await page.selectOption('#f-errors-severity', 'error');
  await page.waitForFunction(() => location.hash.includes('severity=error'));
  await page.selectOption('#f-errors-stage', 'load');
  await page.waitForFunction(() => location.hash === '#/errors?severity=error&stage=load');
  await page.waitForFunction((n) => document.querySelectorAll('table[data-list="errors"] tbody tr').length === n, expected);
  const sev = await page.$$eval('table[data-list="errors"] td[data-col="severity"]', (t) => t.map((x) => x.textContent));
  assert.ok(sev.every((s) => s === 'error'));

  // code filter via the text box
  await page.fill('#f-errors-code', 'code_1');
  await page.click('form.filters button[type="submit"]');
  await page.waitForFunction(() => location.hash.includes('code=code_1'));
  const codeRows = Number(env.sql(`select count(*) from ingest.errors where severity = 'error' and stage = 'load' and code = 'code_1'`));
  await page.waitForFunction((n) => document.querySelectorAll('table[data-list="errors"] tbody tr').length === n
    && document.querySelector('.list-status').textContent.startsWith(`${n} `), codeRows);

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('button[data-export="errors"]')]);
  assert.equal(download.suggestedFilename(), 'errors.csv');
  const csv = readFileSync(await download.path(), 'utf8');
  const lines = csv.trimEnd().split('\r\n');
  const header = lines[0].split(',');
  const rows = lines.slice(1).map((l) => l.split(','));
  assert.equal(rows.length, codeRows, 'one CSV row per matching error');
  const col = (n) => header.indexOf(n);
  for (const r of rows) {
    assert.equal(r[col('severity')], 'error');
    assert.equal(r[col('stage')], 'load');
    assert.equal(r[col('code')], 'code_1');
  }
  const ids = rows.map((r) => r[col('id')]).sort();
  const dbIds = env.sql(`select id from ingest.errors where severity = 'error' and stage = 'load' and code = 'code_1'`).split('\n').sort();
  assert.deepEqual(ids, dbIds);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('runs list deep link filters by source and links to the run\'s records', async () => {
  const page = await newPage(browser);
  await page.goto(`${env.base}/#/runs?source=erp&token=${env.token}`);
  await page.waitForSelector('table[data-list="runs"] tbody tr');
  const sources = await page.$$eval('table[data-list="runs"] td[data-col="source"]', (t) => t.map((x) => x.textContent));
  assert.ok(sources.length > 0 && sources.every((s) => s === 'erp'), sources.join());
  assert.equal(await page.inputValue('#f-runs-source'), 'erp');
  const runId = await page.getAttribute('table[data-list="runs"] tbody tr:first-child', 'data-id');
  await page.click('table[data-list="runs"] tbody tr:first-child td[data-col="id"] a');
  await page.waitForSelector('#error-summary [data-code="cost_rounded"]');
  assert.equal(new URL(page.url()).hash, `#/run/${runId}`);
  assert.equal(await page.textContent('dd[data-field="received"]'), '1');
  assert.equal(await page.textContent('#error-summary [data-code="cost_rounded"] td.n'), '1');
  await page.click('text=Records of this run');
  await page.waitForSelector('table[data-list="records"] tbody tr');
  assert.match(new URL(page.url()).hash, /^#\/records\?run=\d+$/);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
