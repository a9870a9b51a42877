// Every screen (issue 18.4): a phone (390×844) without horizontal overflow
// on any route, a 1366×768 laptop tab without nested scroll boxes for five
// sources, the 1080p wallboard, and the kiosk/TV mode; screenshots of each
// in docs/screenshots. Real server, PostgreSQL, headless Debian Chromium,
// dark and light.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Env, ROOT, launchBrowser, newPage } from './harness.js';

const SHOTS = path.join(ROOT, 'docs/screenshots');
const ROUTES = ['', '#/runs', '#/records', '#/errors', '#/sources', '#/trends', '#/alerts', '#/exports', '#/record/1', '#/run/1'];
const READY = {
  '': '#health > li', '#/runs': 'table[data-list="runs"] tbody tr', '#/records': 'table[data-list="records"] tbody tr',
  '#/errors': 'table[data-list="errors"] tbody tr', '#/sources': '#sources-list tbody tr', '#/trends': '#views .list-status[data-loaded]',
  '#/alerts': '#alert-history', '#/exports': '#export-form', '#/record/1': '#raw-json', '#/run/1': '#error-summary',
};

let env;
let browser;

before(async () => {
  env = await Env.create();
  browser = await launchBrowser();
  mkdirSync(SHOTS, { recursive: true });
  // five sources with longish names, each a failed run of three records and an error with a long message
  env.sql(`
    insert into ingest.sources (name, kind, expected_interval)
    select s, 'api', '1 minute' from unnest(array['crm-meetings-eu', 'erp-b', 'legacy-ftp-calendar', 'hr', 'billing']) s;
    with r as (insert into ingest.runs (source_id, status, finished_at) select id, 'failed', now() from ingest.sources returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload) select r.id, r.source_id, 'x-' || g, '{"title": "weekly sync"}' from r, generate_series(1, 3) g;
    insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message)
    select r.run_id, r.id, r.source_id, 'error', 'load', 'timeout', 'load timed out after a very long while of waiting for the downstream calendar server'
      from ingest.raw_records r where r.external_id = 'x-1';`);
});

after(async () => {
  await browser?.close();
  await env?.close();
});

const url = (route) => `${env.base}/${route ? `${route}?` : '#'}token=${env.token}`;

/** Elements that scroll (overflow auto/scroll with more content than room). */
const scrollers = (page) => page.evaluate(() => [...document.querySelectorAll('body *')].filter((e) => {
  const s = getComputedStyle(e);
  if (e.offsetParent === null && s.position !== 'fixed') return false;
  return (/(auto|scroll)/.test(s.overflowY) && e.scrollHeight > e.clientHeight + 1) || (/(auto|scroll)/.test(s.overflowX) && e.scrollWidth > e.clientWidth + 1);
}).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className ? `.${String(e.className).split(' ').join('.')}` : ''}`));

for (const scheme of ['dark', 'light']) {
  test(`phone 390×844, ${scheme}: no horizontal overflow on any route`, async () => {
    const page = await newPage(browser, { colorScheme: scheme, viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    const wide = [];
    for (const route of ROUTES) {
      await page.goto(url(route));
      await page.waitForSelector(READY[route], { state: 'attached', timeout: 10_000 });
      await page.waitForSelector('#status[data-state="live"]');
      const w = await page.evaluate(() => [document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]);
      if (w[0] > w[2] || w[1] > w[2]) wide.push(`${route || 'wallboard'}: ${w.join(' / ')}`);
      if (route === '') await page.screenshot({ path: path.join(SHOTS, `wallboard-390x844-${scheme}.png`), fullPage: true });
      if (route === '#/runs' && scheme === 'dark') await page.screenshot({ path: path.join(SHOTS, 'runs-390x844-dark.png') });
    }
    assert.deepEqual(wide, []);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test(`laptop 1366×768, ${scheme}: the wallboard of five sources without a nested scroll box`, async () => {
    const page = await newPage(browser, { colorScheme: scheme, viewport: { width: 1366, height: 768 } });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await page.goto(url(''));
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForFunction(() => document.querySelectorAll('#health > li').length === 5 && document.querySelectorAll('#sources tbody tr[data-source]').length === 5);
    await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas');
    await page.evaluate(() => document.getElementById('toast').setAttribute('hidden', '')); // the sign-in note
    assert.deepEqual(await scrollers(page), []);
    const [sw, sh] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]);
    assert.ok(sw <= 1366 && sh <= 768, `the page is one screen (${sw}×${sh})`);
    for (const n of ['crm-meetings-eu', 'legacy-ftp-calendar']) {
      const full = await page.$eval(`#sources tr[data-source="${n}"] th`, (th) => th.scrollWidth <= th.clientWidth);
      assert.ok(full, `${n} is not cut in the sources table`);
    }
    await page.screenshot({ path: path.join(SHOTS, `wallboard-1366x768-${scheme}.png`) });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test(`1080p wallboard and kiosk mode, ${scheme}: no navigation, bigger type, the kiosk flag stays in the URL`, async () => {
    const page = await newPage(browser, { colorScheme: scheme, viewport: { width: 1920, height: 1080 } });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await page.goto(url(''));
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas');
    await page.evaluate(() => document.getElementById('toast').setAttribute('hidden', ''));
    await page.screenshot({ path: path.join(SHOTS, `wallboard-1920x1080-${scheme}.png`) });
    const normal = await page.evaluate(() => parseFloat(getComputedStyle(document.documentElement).fontSize));
    assert.equal(await page.isVisible('nav.views'), true);

    await page.goto(`${env.base}/#window=1h&kiosk=1&token=${env.token}`);
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas');
    await page.waitForFunction(() => !location.hash.includes('token'));
    assert.match(await page.evaluate(() => location.hash), /kiosk=1/);
    assert.match(await page.evaluate(() => location.hash), /window=1h/);
    for (const sel of ['nav.views', '#who', 'nav.windows', '#theme', '#feed-toggle']) assert.equal(await page.isVisible(sel), false, `${sel} hidden`);
    const big = await page.evaluate(() => parseFloat(getComputedStyle(document.documentElement).fontSize));
    assert.ok(big >= normal * 1.15, `kiosk type ${big}px vs ${normal}px`);
    assert.equal(await page.isVisible('#health > li'), true);
    await page.evaluate(() => document.getElementById('toast').setAttribute('hidden', ''));
    await page.screenshot({ path: path.join(SHOTS, `kiosk-1920x1080-${scheme}.png`) });
    assert.deepEqual(await scrollers(page), []);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
}
