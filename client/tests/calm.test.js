// The wallboard at rest and under live updates (issue 18.5): no endless
// animations (a row flashes once, reduced motion honoured), the event feed as
// "recent incidents" with readable kinds and the raw feed one click away, and
// the main thread's long tasks over 20 s of live updates with 5 sources.
// Real server, PostgreSQL and headless Debian Chromium, dark and light.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, launchBrowser, newPage, waitFor, sleep, liveWriter, watchLongTasks, takeLongTasks } from './harness.js';

let env;
let browser;

before(async () => {
  env = await Env.create();
  browser = await launchBrowser();
  env.sql(`insert into ingest.sources (name, kind, expected_interval)
           select s, 'api', '1 minute' from unnest(array['crm', 'erp', 'hr', 'legacy-ftp', 'billing']) s`);
});

after(async () => {
  await browser?.close();
  await env?.close();
});

async function openWall(page) {
  await page.goto(`${env.base}/wall#token=${env.token}`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10_000 });
}

/** A run of `source` with `n` pending records; returns the run id. */
function run(source, n) {
  return env.sql(`
    with s as (select id from ingest.sources where name = '${source}'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload)
    select r.id, r.source_id, 'e-' || g, '{}' from r, generate_series(1, ${n}) g returning run_id`).split('\n')[0];
}

const running = (page) => page.evaluate(() => document.getAnimations()
  .map((a) => ({ name: a.animationName || a.constructor.name, iterations: a.effect?.getComputedTiming().iterations, state: a.playState })));

for (const scheme of ['dark', 'light']) {
  test(`${scheme}: recent incidents — a failed run, a folded error burst; readable raw kinds one click away; nothing animates for ever`, async () => {
    const page = await newPage(browser, { colorScheme: scheme });
    await page.addInitScript((s) => localStorage.setItem('ingestwatch.theme', s), scheme);
    await openWall(page);
    assert.equal(await page.textContent('#feed-h'), 'Recent incidents');
    assert.equal(await page.isVisible('#incidents-empty'), true);

    const r = run('legacy-ftp', 3); // records received: no incident
    env.sql(`update ingest.runs set status = 'failed', finished_at = now() where id = ${r}`);
    const failed = '#incidents li[data-kind="run_failed"]';
    await page.waitForSelector(failed);
    assert.match(await page.textContent(failed), /^\d\d:\d\d:\d\dRun failedlegacy-ftp$/);
    assert.equal(await page.getAttribute(`${failed} a`, 'href'), '#/runs?source=legacy-ftp&status=failed');
    assert.equal(await page.getAttribute(failed, 'data-level'), 'bad');
    // three error statements within a minute: one row, counted
    for (let i = 0; i < 3; i++) {
      env.sql(`insert into ingest.errors (run_id, source_id, severity, stage, code, message)
               select ${r}, source_id, 'error', 'load', 'timeout', 'load timed out' from ingest.runs where id = ${r}`);
    }
    await page.waitForFunction(() => document.querySelector('#incidents li[data-kind="errors"] a')?.textContent === 'Errors: timeout ×3');
    assert.equal(await page.$$eval('#incidents li[data-kind="errors"]', (l) => l.length), 1);
    assert.equal(await page.$$eval('#incidents li', (l) => l.length), 2, 'received records are no incident');
    assert.equal(await page.isVisible('#feed'), false, 'the raw feed is hidden');

    // the raw feed, one click away, with readable kinds
    await page.click('#feed-toggle');
    await page.waitForSelector('#feed tbody tr');
    assert.equal(await page.textContent('#feed-h'), 'All events');
    assert.equal(await page.getAttribute('#feed-toggle', 'aria-pressed'), 'true');
    const kinds = await page.$$eval('#feed td.kind', (tds) => tds.map((td) => [td.dataset.kind, td.textContent]));
    assert.ok(kinds.some(([k, t]) => k === 'raw_records.insert' && t === 'records received'), JSON.stringify(kinds));
    assert.ok(kinds.some(([k, t]) => k === 'runs.update' && t === 'run updated'), JSON.stringify(kinds));
    assert.ok(kinds.some(([k, t]) => k === 'errors.insert' && t === 'errors logged'), JSON.stringify(kinds));
    await page.click('#feed-toggle');
    await page.waitForSelector('#incidents li');

    // at rest: no animation repeats for ever, and once the flashes are over nothing runs
    assert.deepEqual((await running(page)).filter((a) => a.iterations === Infinity), []);
    await waitFor(async () => (await running(page)).filter((a) => a.state === 'running').length === 0,
      { timeout: 4000, what: 'every animation to end' });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
}

test('reduced motion: a new incident does not flash', async () => {
  const page = await newPage(browser, { reducedMotion: 'reduce' });
  await openWall(page);
  const r = run('crm', 1);
  env.sql(`update ingest.runs set status = 'partial', finished_at = now() where id = ${r}`);
  const li = '#incidents li[data-kind="run_partial"]';
  await page.waitForSelector(li);
  assert.equal(await page.$eval(li, (e) => getComputedStyle(e).animationName), 'none');
  assert.equal(await page.getAttribute(li, 'data-level'), 'warn');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('long tasks over 20 s of live updates with 5 sources: at most 1 s in all', async () => {
  const page = await newPage(browser);
  await watchLongTasks(page);
  await openWall(page);
  await page.waitForSelector('[data-chart="wall-throughput"][data-drawn] canvas', { timeout: 10_000 });
  // the observer works: a 120 ms busy loop is one long task
  await takeLongTasks(page);
  await page.evaluate(() => { setTimeout(() => { const t0 = performance.now(); while (performance.now() - t0 < 120); }, 0); });
  await waitFor(async () => (await page.evaluate(() => window.__longtasks.count)) >= 1, { what: 'the busy loop as a long task' });
  await sleep(1000);
  await takeLongTasks(page); // start-up is not what this measures
  const seq0 = Number((await page.textContent('#seq')).replace(/\D/g, ''));
  await liveWriter(env.url, { secs: 20, everyMs: 200, batch: 3, sources: 5 });
  const t = await takeLongTasks(page);
  const seq1 = Number((await page.textContent('#seq')).replace(/\D/g, ''));
  console.log(`# 5 sources, 20 s live: ${t.count} long tasks, ${Math.round(t.total)} ms in all, longest ${Math.round(t.max)} ms; ${seq1 - seq0} events`);
  assert.ok(seq1 - seq0 >= 100, `live updates arrived (${seq1 - seq0} events)`);
  assert.ok(t.total <= 1000, `long tasks ${Math.round(t.total)} ms over 20 s`);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
