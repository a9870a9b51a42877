// End-to-end tests of sign-in, the raw JSON viewer, live console lists and
// keyboard use, against the real server and PostgreSQL in headless Debian
// Chromium. One server and one database for the file. The server's grace
// for an expired WebSocket token is 2 s here, so the token-refresh test ends
// quickly.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Env, launchBrowser, newPage, mintToken, waitFor, axeProblems } from './harness.js';
import { prettyJson } from '../src/prettyjson.js';

const require = createRequire(import.meta.url);
const GRACE_SECS = 2;
process.env.INGESTWATCH_WS_AUTH_GRACE_SECS = String(GRACE_SECS); // read by the server Env starts

let env;
let browser;

before(async () => {
  env = await Env.create();
  browser = await launchBrowser();
  env.sql(`insert into ingest.sources (name, kind) values ('crm', 'api'), ('erp', 'sftp')`);
});

after(async () => {
  await browser?.close();
  await env?.close();
});

/** Inserts a run of `source` with one record per external id; returns the record ids. */
function commitRecords(source, ...externalIds) {
  const values = externalIds.map((x) => `('${x}')`).join(', ');
  return env.sql(`
    with s as (select id from ingest.sources where name = '${source}'),
         r as (insert into ingest.runs (source_id) select id from s returning id, source_id)
    insert into ingest.raw_records (run_id, source_id, external_id, payload)
    select r.id, r.source_id, x.ext, jsonb_build_object('ext', x.ext) from r, (values ${values}) as x(ext)
    returning id`).split('\n');
}

/** A page that counts WebSocket opens and records the frames it sends and receives. */
async function tracedPage(opts) {
  const page = await newPage(browser, opts);
  page.sockets = [];
  page.sent = [];
  page.received = [];
  page.on('websocket', (ws) => {
    page.sockets.push(ws);
    ws.on('framesent', (f) => page.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => { try { page.received.push(JSON.parse(String(f.payload))); } catch { /* not JSON */ } });
  });
  return page;
}

const dialogClosed = (page) => page.waitForFunction(() => !document.getElementById('signin').open);
const firstCol = (page, list, col) => page.$$eval(`table[data-list="${list}"] tbody td[data-col="${col}"]`, (t) => t.map((x) => x.textContent));

async function axe(page, what) {
  if (!(await page.evaluate(() => !!window.axe))) {
    await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  }
  for (const theme of ['dark', 'light']) {
    await page.evaluate((t) => { document.documentElement.dataset.theme = t; }, theme);
    assert.deepEqual(await axeProblems(page, `${what}/${theme}`), []);
  }
}

test('sign in by pasting a token: sub, role, expiry; a bad token shows an error and changes nothing', async () => {
  const page = await tracedPage();
  await page.goto(`${env.base}/`);
  // no token: nothing connects, the sign-in dialog opens by itself
  await page.waitForSelector('#signin[open]');
  assert.equal(await page.getAttribute('#status', 'data-state'), 'denied');
  assert.equal(page.sockets.length, 0);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-token');

  const good = mintToken({ role: 'viewer', ttl: '2h', subject: 'ada@example.com' });
  await page.fill('#signin-token', `Bearer ${good}`);
  await page.click('#signin button[type="submit"]');
  await dialogClosed(page);
  await page.waitForSelector('#status[data-state="live"]');
  assert.equal(await page.textContent('#who .who-name'), 'ada@example.com · viewer');
  assert.equal(await page.getAttribute('#who', 'data-role'), 'viewer');
  assert.match(await page.textContent('#who .who-left'), /^(1h 59m|2h 00m)$/);
  assert.match(await page.getAttribute('#who', 'title'), /^expires \d\d:\d\d:\d\d \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ingestwatch.token')), good);

  // the dialog shows who is signed in
  await page.click('#who');
  await page.waitForSelector('#signin[open]');
  assert.equal(await page.textContent('#signin [data-field="sub"]'), 'ada@example.com');
  assert.equal(await page.textContent('#signin [data-field="role"]'), 'viewer');
  assert.match(await page.getAttribute('#signin [data-field="expires"] time', 'title'), / UTC$/);
  assert.match(await page.textContent('#signin [data-field="remaining"]'), /^(1 h 59|2 h 00) min$/);

  // bad tokens: a clear message, and nothing changes
  const sentBefore = page.sent.length;
  await page.fill('#signin-token', 'not-a-token');
  await page.click('#signin button[type="submit"]');
  await waitFor(async () => /not a JWT/.test(await page.textContent('#signin-error')), { what: 'malformed-token message' });
  const forged = `${good.slice(0, -4)}${good.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
  await page.fill('#signin-token', forged);
  await page.click('#signin button[type="submit"]');
  await waitFor(async () => /server refused this token/.test(await page.textContent('#signin-error')), { what: 'refused-token message' });
  assert.ok(await page.$('#signin[open]'), 'the dialog stays open');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ingestwatch.token')), good);
  assert.equal(await page.textContent('#who .who-name'), 'ada@example.com · viewer');
  assert.equal(page.sent.slice(sentBefore).filter((f) => f.includes('"auth"')).length, 0, 'a refused token never reaches the socket');
  assert.equal(page.sockets.length, 1);
  assert.equal(await page.getAttribute('#status', 'data-state'), 'live');
  // the refused REST check is the one failed request the browser logs
  assert.deepEqual(page.problems.splice(0), ['console: Failed to load resource: the server responded with a status of 401 (Unauthorized)']);

  // Escape closes the dialog
  await page.keyboard.press('Escape');
  await dialogClosed(page);

  // sign out: the socket closes, the header says so
  await page.click('#who');
  await page.click('#signout');
  await page.waitForSelector('#status[data-state="denied"]');
  assert.equal(await page.textContent('#who .who-name'), 'Sign in');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ingestwatch.token')), null);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('a fresh token while connected goes in band; the stream outlives the first token', async () => {
  const page = await tracedPage();
  const short = mintToken({ ttl: '5s', subject: 'short-lived' });
  const expiresAt = JSON.parse(Buffer.from(short.split('.')[1], 'base64url').toString()).exp * 1000;
  await page.goto(`${env.base}/#/records?token=${short}`);
  assert.ok(!page.url().includes('token='), 'the token is taken out of the URL');
  await page.waitForSelector('#status[data-state="live"]');
  assert.equal(page.sockets.length, 1);
  assert.ok(!page.sockets[0].url().includes(short), 'the token is not in the WebSocket URL');
  await waitFor(async () => /^\ds$/.test(await page.textContent('#who .who-left')), { what: 'seconds countdown' });
  assert.equal(await page.getAttribute('#who', 'data-tone'), 'warn', 'close to expiry');

  const fresh = mintToken({ ttl: '2h', subject: 'long-lived' });
  await page.click('#who');
  await page.fill('#signin-token', fresh);
  await page.click('#signin button[type="submit"]');
  await dialogClosed(page);
  assert.ok(page.sent.some((f) => { const m = JSON.parse(f); return m.op === 'auth' && m.token === fresh; }), 'op auth sent in band');
  await waitFor(() => page.received.some((m) => m.type === 'authenticated' && m.expires_at * 1000 > Date.now() + 3_600_000),
    { what: 'authenticated for the fresh token' });
  assert.equal(await page.textContent('#who .who-name'), 'long-lived · operator');

  // past the first token's expiry and the server's grace, the same socket still delivers
  await waitFor(() => Date.now() > expiresAt + (GRACE_SECS + 1) * 1000, { timeout: 15_000, every: 200, what: 'first token expiry + grace' });
  const requests = [];
  page.on('request', (r) => { if (r.url().includes('/api/')) requests.push(r.headers().authorization); });
  const [id] = commitRecords('crm', 'after-expiry');
  await page.waitForSelector(`table[data-list="records"] tr[data-id="${id}"]`, { timeout: 5000 });
  assert.equal(page.sockets.length, 1, 'the socket was not reopened');
  assert.ok(!page.sockets[0].isClosed(), 'the socket is still open');
  assert.ok(!page.received.some((m) => m.type === 'error'), 'no token_expired or other error frame');
  assert.equal(await page.getAttribute('#status', 'data-state'), 'live');
  assert.ok(requests.length > 0 && requests.every((h) => h === `Bearer ${fresh}`), 'REST uses the fresh token');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('an expired session says so; signing in again reconnects and resumes', async () => {
  const page = await tracedPage();
  const brief = mintToken({ ttl: '3s', subject: 'brief' });
  await page.goto(`${env.base}/wall#token=${brief}`);
  await page.waitForSelector('#status[data-state="live"]');
  await page.waitForSelector('#who[data-tone="bad"]', { timeout: 10_000 });
  assert.equal(await page.textContent('#who .who-left'), 'expired');
  await waitFor(() => page.received.some((m) => m.type === 'error' && m.code === 'token_expired'), { what: 'token_expired frame' });
  // not refreshed within the grace: closed with 4401, the page says so and stops retrying
  await page.waitForSelector('#status[data-state="denied"]', { timeout: 10_000 });
  assert.match(await page.textContent('#status'), /^signed out — data as of \d\d:\d\d:\d\d$/);
  assert.equal(await page.getAttribute('#app', 'data-stale'), '');
  const received = Number(await page.getAttribute('[data-kpi="received"]', 'data-value'));

  await page.click('#who');
  await page.fill('#signin-token', mintToken({ ttl: '1h', subject: 'back' }));
  await page.click('#signin button[type="submit"]');
  await dialogClosed(page);
  await page.waitForSelector('#status[data-state="live"]');
  assert.equal(page.sockets.length, 2, 'a closed socket is reopened with the new token');
  commitRecords('crm', 'resumed-1', 'resumed-2');
  await page.waitForSelector(`[data-kpi="received"][data-value="${received + 2}"]`);
  assert.equal(await page.textContent('#who .who-name'), 'back · operator');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('raw JSON viewer: exact text, fold and unfold, search, copy raw and copy path, keyboard', async () => {
  const payload = '{"title": "Quarterly review", "cost": 1.50, "big": 12345678901234567890123, '
    + '"tags": ["alpha", "b,c"], "nested": {"empty": {}, "list": [1, {"deep": "needle"}], "quote": "say \\"hi\\""}}';
  const id = env.sql(`insert into ingest.raw_records (source_id, external_id, payload)
    select id, 'viewer-1', '${payload.replace(/'/g, "''")}'::jsonb from ingest.sources where name = 'erp' returning id`);
  const stored = env.sql(`select payload::text from ingest.raw_records where id = ${id}`);

  const page = await tracedPage();
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.base });
  await page.goto(`${env.base}/#/record/${id}?token=${env.token}`);
  await page.waitForSelector('#raw-json .jv-h');
  assert.equal(await page.textContent('#raw-json'), prettyJson(stored), 'exactly the stored text, re-indented');

  const visible = (path) => page.isVisible(`#raw-json [data-path='${path}']`);
  // fold $.nested with its button; its children hide, a summary stands in
  await page.click('#raw-json .jv-e:has(> [data-path="$.nested"]) > .jv-tog');
  assert.equal(await visible('$.nested.quote'), false);
  assert.equal(await page.getAttribute('#raw-json .jv-e:has(> [data-path="$.nested"]) > .jv-tog', 'aria-expanded'), 'false');
  assert.equal(await page.textContent('#raw-json'), prettyJson(stored), 'folding changes no text');
  await page.click('button:text("Expand all")');
  assert.equal(await visible('$.nested.quote'), true);
  await page.click('button:text("Collapse all")');
  assert.equal(await visible('$.nested'), true);
  assert.equal(await visible('$.nested.list'), false);

  // search unfolds to the match, highlights it, selects its node; next/previous cycle
  await page.fill('#raw-json-search', 'NEEDLE');
  await page.waitForSelector('#raw-json mark.jv-cur');
  assert.equal(await page.textContent('#raw-json mark.jv-cur'), 'needle');
  assert.equal(await visible('$.nested.list[1].deep'), true);
  assert.equal(await page.textContent('#raw-json-count'), '1 of 1');
  assert.equal(await page.textContent('#raw-json-path'), '$.nested.list[1].deep');
  await page.fill('#raw-json-search', 'a');
  await waitFor(async () => /^1 of ([2-9]|\d\d+)$/.test(await page.textContent('#raw-json-count')), { what: 'matches of "a"' });
  const total = Number((await page.textContent('#raw-json-count')).split(' of ')[1]);
  assert.ok(total >= 5, `matches in keys and values: ${total}`);
  await page.press('#raw-json-search', 'Enter');
  assert.equal(await page.textContent('#raw-json-count'), `2 of ${total}`);
  await page.press('#raw-json-search', 'Shift+Enter');
  await page.press('#raw-json-search', 'Shift+Enter');
  assert.equal(await page.textContent('#raw-json-count'), `${total} of ${total}`);
  assert.equal(await page.textContent('#raw-json'), prettyJson(stored), 'highlighting changes no text');
  await axe(page, 'record viewer, search');

  // copy raw: exactly as stored; copy path of the selected node
  await page.click('[data-copy="raw"]');
  await waitFor(async () => (await page.evaluate(() => navigator.clipboard.readText())) === stored, { what: 'raw JSON on the clipboard' });
  await page.click('#raw-json [data-path="$.nested.quote"]');
  await page.click('[data-copy="path"]');
  await waitFor(async () => (await page.evaluate(() => navigator.clipboard.readText())) === '$.nested.quote', { what: 'path on the clipboard' });
  await page.click('[data-copy="value"]');
  await waitFor(async () => (await page.evaluate(() => navigator.clipboard.readText())) === '"say \\"hi\\""', { what: 'value on the clipboard' });

  // keyboard: arrows move, Enter folds, ← goes to the parent
  await page.press('#raw-json-search', 'Escape');
  await page.click('button:text("Expand all")');
  await page.focus('#raw-json [data-path="$.title"]');
  await page.keyboard.press('ArrowUp'); // jsonb orders keys by length: big, cost, tags, title, nested
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), '$.tags[1]');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), '$.nested');
  await page.keyboard.press('End');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), '$.nested.quote');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), '$.nested');
  await page.keyboard.press('Enter');
  assert.equal(await visible('$.nested.quote'), false);
  await page.keyboard.press('ArrowRight');
  assert.equal(await visible('$.nested.quote'), true);
  assert.equal(await page.textContent('#raw-json-path'), '$.nested');

  await axe(page, 'record viewer');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('records list: a committed row appears at the top live; paused, it waits until resumed', async () => {
  const page = await tracedPage({ reducedMotion: 'no-preference' });
  await page.goto(`${env.base}/#/records?source=crm&token=${env.token}`);
  await waitFor(async () => /^\d+ records/.test(await page.textContent('.list-status')), { what: 'the first page' });
  assert.equal(await page.getAttribute('[data-live="pause"]', 'aria-pressed'), 'false');

  const [erp] = commitRecords('erp', 'live-erp');
  const [first] = commitRecords('crm', 'live-1');
  await page.waitForSelector(`table[data-list="records"] tbody tr:first-child[data-id="${first}"]`);
  assert.equal(await page.getAttribute(`tr[data-id="${first}"]`, 'class'), 'new', 'a new row is highlighted');
  assert.equal(await page.$eval(`tr[data-id="${first}"]`, (r) => getComputedStyle(r).animationName), 'rowflash');
  assert.equal(await page.$(`tr[data-id="${erp}"]`), null, 'a row outside the filter does not appear');

  await page.click('[data-live="pause"]');
  assert.equal(await page.getAttribute('[data-live="pause"]', 'aria-pressed'), 'true');
  const [second, third] = commitRecords('crm', 'live-2', 'live-3');
  await page.waitForSelector('[data-live="resume"]:text("2 new — resume")');
  assert.equal(await page.$(`tr[data-id="${second}"]`), null, 'paused: not shown');
  await page.click('[data-live="resume"]');
  await page.waitForSelector(`table[data-list="records"] tbody tr:first-child[data-id="${third}"]`);
  assert.deepEqual((await firstCol(page, 'records', 'external_id')).slice(0, 3), ['live-3', 'live-2', 'live-1']);
  assert.equal(await page.isVisible('[data-live="resume"]'), false);
  // a row already shown follows its updates in place
  env.sql(`update ingest.raw_records set status = 'normalized', processed_at = now() where id = ${first}`);
  await page.waitForSelector(`tr[data-id="${first}"] td[data-col="status"]:text("normalized")`);
  assert.equal(await page.$$eval(`tr[data-id="${first}"]`, (r) => r.length), 1);

  // times: the browser's zone, UTC on hover
  const times = await page.$$eval('table[data-list="records"] time', (ts) => ts.map((t) => [t.textContent, t.title, t.dateTime]));
  assert.ok(times.length > 0);
  for (const [text, title, dt] of times) {
    assert.match(title, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.equal(title, `${new Date(dt).toISOString().slice(0, 19).replace('T', ' ')} UTC`);
    assert.equal(text, await page.evaluate((d) => { // 24-hour local time, like the wallboard (issue 18.4)
      const x = new Date(d);
      const p = (n) => String(n).padStart(2, '0');
      return `${x.getFullYear()}-${p(x.getMonth() + 1)}-${p(x.getDate())} ${p(x.getHours())}:${p(x.getMinutes())}:${p(x.getSeconds())}`;
    }, dt));
  }
  await axe(page, 'records live');
  assert.equal(page.sockets.length, 1);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('error log: severity filter and live tail; reduced motion gets no animation', async () => {
  const page = await tracedPage({ reducedMotion: 'reduce' });
  await page.goto(`${env.base}/#/errors?severity=error&stage=load&token=${env.token}`);
  await waitFor(async () => /^\d+ errors/.test(await page.textContent('.list-status')), { what: 'the first page' });
  assert.equal(await page.inputValue('#f-errors-severity'), 'error');
  assert.equal(await page.inputValue('#f-errors-stage'), 'load');
  const ids = env.sql(`
    with s as (select id from ingest.sources where name = 'crm')
    insert into ingest.errors (source_id, severity, stage, code, message)
    select s.id, v.sev, v.stage, v.code, v.msg from s,
      (values ('warning', 'load', 'slow', 'a warning'), ('error', 'fetch', 'http_500', 'wrong stage'),
              ('error', 'load', 'timeout', 'live tail error')) as v(sev, stage, code, msg)
    returning id`).split('\n');
  await page.waitForSelector(`table[data-list="errors"] tbody tr:first-child[data-id="${ids[2]}"]`);
  assert.equal(await page.$(`tr[data-id="${ids[0]}"]`), null);
  assert.equal(await page.$(`tr[data-id="${ids[1]}"]`), null);
  assert.equal(await page.textContent(`tr[data-id="${ids[2]}"] td[data-col="code"]`), 'timeout');
  assert.equal(await page.$eval(`tr[data-id="${ids[2]}"]`, (r) => getComputedStyle(r).animationName), 'none');
  assert.equal(await page.getAttribute(`tr[data-id="${ids[2]}"] time`, 'title').then((t) => t.endsWith(' UTC')), true);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('time filters: local time in the inputs and cells, UTC in the deep link and on hover', async () => {
  const [old] = env.sql(`
    with s as (select id from ingest.sources where name = 'erp')
    insert into ingest.errors (source_id, occurred_at, severity, stage, code, message)
    select s.id, v.at::timestamptz, 'error', 'fetch', 'old', 'from 2020' from s,
      (values ('2020-01-01T00:00:05Z'), ('2020-01-01T00:00:20Z')) as v(at)
    returning id`).split('\n');
  const page = await newPage(browser, { timezoneId: 'Asia/Kolkata' }); // UTC+05:30
  await page.goto(`${env.base}/#/errors?to=2020-01-01T00:00:10Z&token=${env.token}`);
  await page.waitForSelector('table[data-list="errors"] tbody tr');
  assert.deepEqual(await page.$$eval('table[data-list="errors"] tbody tr', (r) => r.map((x) => x.dataset.id)), [old]);
  assert.equal(await page.inputValue('#f-errors-to'), '2020-01-01T05:30:10');
  assert.equal(await page.getAttribute('#f-errors-to', 'title'), '2020-01-01 00:00:10 UTC');
  assert.equal(await page.textContent('td[data-col="occurred_at"] time'), '2020-01-01 05:30:05'); // 24-hour, local (issue 18.4)
  assert.equal(await page.getAttribute('td[data-col="occurred_at"] time', 'title'), '2020-01-01 00:00:05 UTC');

  await page.fill('#f-errors-from', '2020-01-01T05:30:15');
  await page.fill('#f-errors-to', '2020-01-01T05:31:01');
  await page.click('form.filters button[type="submit"]');
  await page.waitForFunction(() => location.hash === '#/errors?from=2020-01-01T00%3A00%3A15Z&to=2020-01-01T00%3A01%3A01Z');
  await page.waitForFunction(() => document.querySelectorAll('table[data-list="errors"] tbody tr').length === 1
    && document.querySelector('td[data-col="message"]').textContent === 'from 2020'
    && document.querySelector('td[data-col="occurred_at"] time').title === '2020-01-01 00:00:20 UTC');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('keyboard only: skip link, the nav and the sign-in are reachable; Enter activates, Escape closes', async () => {
  const page = await tracedPage();
  await page.goto(`${env.base}/wall#token=${env.token}`);
  await page.waitForSelector('#status[data-state="live"]');
  const oneLine = () => page.evaluate(() => Math.abs(document.getElementById('theme').getBoundingClientRect().top
    - document.querySelector('.views a').getBoundingClientRect().top) < 12);
  assert.ok(await oneLine(), 'the header is one line (wallboard)');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  assert.equal(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'solid', 'visible focus ring');
  const order = [];
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.textContent.trim()));
  }
  for (const want of ['Wallboard', 'Runs', 'Records', 'Errors', 'who', 'theme']) assert.ok(order.includes(want), `${want} in ${order}`);
  assert.ok(order.indexOf('Errors') < order.indexOf('who'), 'nav before sign-in');
  await page.focus('a.skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'app');

  await page.focus('.views a[data-view="errors"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('table[data-list="errors"]');
  assert.equal(new URL(page.url()).hash, '#/errors');
  assert.ok(await oneLine(), 'the header is one line (console)');
  // a filter changed from the keyboard re-renders the list and keeps the focus
  await page.focus('#f-errors-severity');
  await page.keyboard.press('ArrowDown');
  await page.waitForFunction(() => location.hash === '#/errors?severity=error');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'f-errors-severity');

  await page.focus('#who');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#signin[open]');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-token');
  await axe(page, 'sign-in dialog');
  await page.keyboard.press('Escape');
  await dialogClosed(page);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'who', 'focus returns to the opener');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('units: token parsing, JSON ranges and paths, which events touch which list', async () => {
  const { cleanToken, tokenProblem, identity, fmtLeft, fmtLeftShort } = await import('../src/signin.js');
  const { parseRanges, childPath } = await import('../src/jsonview.js');
  const { relevant } = await import('../src/livelist.js');
  const jwt = mintToken({ ttl: '1h', subject: 'üñí' });
  assert.equal(cleanToken(`  Bearer ${jwt}\n`), jwt);
  assert.equal(cleanToken(`https://mon.example/#/runs?source=crm&access_token=${jwt}`), jwt);
  assert.equal(tokenProblem(jwt, Date.now()), '');
  assert.equal(identity(jwt).sub, 'üñí', 'UTF-8 claims decode');
  assert.match(tokenProblem(jwt, identity(jwt).exp + 1), /^This token expired at /);
  assert.match(tokenProblem('a.b', 0), /not a JWT/);
  assert.equal(tokenProblem('', 0), 'Paste a token first.');
  assert.deepEqual([fmtLeft(42_000), fmtLeft(252_000), fmtLeft(3_900_000)], ['42 s', '4 min 12 s', '1 h 05 min']);
  assert.deepEqual([fmtLeftShort(42_000), fmtLeftShort(252_000), fmtLeftShort(3_900_000)], ['42s', '4m 12s', '1h 05m']);

  const text = '{"a b": [1.50, -0, 2e+10, true, null, {}], "q": "\\"\\\\", "n": {"x": []}}';
  const root = parseRanges(text);
  assert.deepEqual(root.kids.map((k) => k.key), ['a b', 'q', 'n']);
  assert.deepEqual(root.kids[0].node.kids.map((k) => text.slice(k.node.s, k.node.e)), ['1.50', '-0', '2e+10', 'true', 'null', '{}']);
  assert.equal(text.slice(root.kids[1].node.s, root.kids[1].node.e), '"\\"\\\\"');
  assert.throws(() => parseRanges('{"a": 1,}'), SyntaxError);
  assert.equal(childPath(childPath(childPath('$', 'a b'), 0), 'x_1'), '$["a b"][0].x_1');

  const p = (q) => new URLSearchParams(q);
  assert.equal(relevant('records', p(''), { table: 'raw_records', source: 'crm', sources: ['crm'] }), true);
  assert.equal(relevant('records', p(''), { table: 'errors', source: 'crm', sources: ['crm'] }), false);
  assert.equal(relevant('records', p('source=erp'), { table: 'raw_records', source: 'crm', sources: ['crm'] }), false);
  assert.equal(relevant('records', p('source=erp,crm'), { table: 'raw_records', source: null, sources: ['crm', 'x'] }), true);
  assert.equal(relevant('runs', p(''), { table: 'errors', sources: [] }), true, 'error counts show on runs');
});

test('JSON viewer text equals prettyJson() for awkward payloads', async () => {
  const page = await newPage(browser);
  await page.goto(`${env.base}/#/runs?token=${env.token}`);
  await page.waitForSelector('table[data-list="runs"]');
  const texts = ['{}', '[]', '"x"', '12345678901234567890.000', '[[], {}, [[]], {"": ""}]',
    '{"k": "comma, colon: brace { bracket [ quote \\" backslash \\\\ unicode \\u00e9"}',
    '{"a": {"b": {"c": {"d": [1, [2, [3, {"e": null}]]]}}}}'];
  const out = await page.evaluate(async (ts) => {
    const { createJsonView } = await import('/src/jsonview.js');
    const { prettyJson } = await import('/src/prettyjson.js');
    return ts.map((t) => [createJsonView(t).tree.textContent, prettyJson(t)]);
  }, texts);
  for (const [shown, want] of out) assert.equal(shown, want);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
