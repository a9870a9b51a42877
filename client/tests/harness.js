// Test harness for the browser tests: a fresh database on the PostgreSQL of
// $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
// migrated with the real binary; the real server on a free port; a token
// minted by `ingestwatch token`; psql for pipeline writes; Debian chromium
// driven by playwright-core. Nothing is built here (scripts/browser-tests.sh
// runs `cargo build` first).

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.INGESTWATCH_BIN || path.join(ROOT, 'target/debug/ingestwatch');
const ADMIN_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const SECRET = 'browser-tests-secret-0123456789abcdef';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function dbUrl(name) {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${name}`;
  return u.href;
}

/** Runs SQL through psql against `url`; returns stdout (tuples only, unaligned). */
export function psql(url, sql) {
  return execFileSync('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-c', sql], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** psql in the background (long-running writers); resolves with stdout, rejects on failure. */
export function psqlAsync(url, sql) {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-c', sql], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`psql exited ${code}: ${err}`))));
  });
}

/**
 * A pipeline writing for `secs` seconds: every `everyMs` one statement
 * inserts `batch` records into a run of a random source among the first
 * `sources` (by id), processes the previous batch (about one in ten
 * rejected) and now and then logs an error; runs finish every few seconds.
 */
export function liveWriter(url, { secs = 20, everyMs = 200, batch = 3, sources = 5 } = {}) {
  const steps = Math.round((secs * 1000) / everyMs);
  return psqlAsync(url, `
    do $$
    declare r bigint; s bigint; i int;
    begin
      for i in 1..${steps} loop
        s := (select id from ingest.sources order by id offset floor(random() * ${sources})::int limit 1);
        insert into ingest.runs (source_id) values (s) returning id into r;
        insert into ingest.raw_records (run_id, source_id, external_id, payload)
          select r, s, 'live-' || i || '-' || g, '{}' from generate_series(1, ${batch}) g;
        update ingest.raw_records set status = case when random() < 0.1 then 'rejected' else 'normalized' end, processed_at = now()
          where status = 'pending' and run_id < r;
        if i % 10 = 0 then
          insert into ingest.errors (run_id, source_id, severity, stage, code, message) values (r, s, 'error', 'validate', 'missing_title', 'title is required');
        end if;
        update ingest.runs set status = case when random() < 0.2 then 'failed' else 'succeeded' end, finished_at = now()
          where status = 'running' and id < r;
        commit;
        perform pg_sleep(${everyMs / 1000});
      end loop;
    end $$;`);
}

/** Installs a PerformanceObserver('longtask') summing long tasks into window.__longtasks (call before goto). */
export async function watchLongTasks(page) {
  await page.addInitScript(() => {
    window.__longtasks = { total: 0, count: 0, max: 0 };
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        window.__longtasks.total += e.duration;
        window.__longtasks.count += 1;
        window.__longtasks.max = Math.max(window.__longtasks.max, e.duration);
      }
    }).observe({ type: 'longtask', buffered: true });
  });
}

/** Long tasks since the last call: { total, count, max } (ms). */
export function takeLongTasks(page) {
  return page.evaluate(() => {
    const t = { ...window.__longtasks };
    window.__longtasks = { total: 0, count: 0, max: 0 };
    return t;
  });
}

export class Env {
  static all = new Set();
  static reaper = false;

  static async create() {
    const env = new Env();
    env.dbName = `iw_browser_${process.pid}_${Date.now()}`;
    psql(ADMIN_URL, `create database ${env.dbName}`);
    env.url = dbUrl(env.dbName);
    execFileSync(BIN, ['migrate'], { env: { ...process.env, DATABASE_URL: env.url }, stdio: ['ignore', 'ignore', 'pipe'] });
    env.port = await freePort();
    env.base = `http://127.0.0.1:${env.port}`;
    env.token = execFileSync(BIN, ['token', '--role', 'operator', '--ttl', '2h'], {
      env: { ...process.env, INGESTWATCH_JWT_SECRET: SECRET }, encoding: 'utf8',
    }).trim().split(/\s+/).pop();
    env.logs = [];
    await env.start();
    return env;
  }

  /** Starts (or restarts) the server on the same port and waits for /readyz. */
  async start() {
    const child = spawn(BIN, ['serve'], {
      env: {
        ...process.env,
        DATABASE_URL: this.url,
        INGESTWATCH_LISTEN: `127.0.0.1:${this.port}`,
        INGESTWATCH_JWT_SECRET: SECRET,
        INGESTWATCH_LOG_FORMAT: 'text',
        RUST_LOG: process.env.RUST_LOG || 'warn',
        ...(process.env.INGESTWATCH_CLIENT_DIR ? { INGESTWATCH_CLIENT_DIR: process.env.INGESTWATCH_CLIENT_DIR } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [child.stdout, child.stderr]) s.on('data', (d) => this.logs.push(String(d)));
    this.child = child;
    if (!Env.reaper) {
      // never leave a server behind, even when the test process dies
      Env.reaper = true;
      process.on('exit', () => { for (const e of Env.all) e.child?.kill('SIGKILL'); });
    }
    Env.all.add(this);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}:\n${this.logs.join('')}`);
      try {
        const r = await fetch(`${this.base}/readyz`);
        if (r.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error(`server not ready:\n${this.logs.join('')}`);
      await sleep(100);
    }
  }

  /** SIGKILLs the server (no graceful close frames) and waits for it to exit. */
  async kill() {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode) return;
    const done = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await done;
  }

  sql(q) { return psql(this.url, q); }

  async api(p, init = {}) {
    const r = await fetch(`${this.base}${p}`, {
      ...init, headers: { authorization: `Bearer ${this.token}`, ...(init.headers || {}) },
    });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
    return (r.headers.get('content-type') || '').includes('json') ? r.json() : r.text();
  }

  async close() {
    await this.kill();
    try { psql(ADMIN_URL, `drop database if exists ${this.dbName} with (force)`); } catch { /* best effort */ }
  }
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run'];

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
  });
}

/** A page that records console errors and page errors into `page.problems`. */
export async function newPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1920, height: 1080 }, acceptDownloads: true, ...opts });
  const page = await ctx.newPage();
  page.problems = [];
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  return page;
}

/** Mints a token with the server's secret: `ingestwatch token` (ttl e.g. '5s', '2h'). */
export function mintToken({ role = 'operator', ttl = '2h', subject, sources } = {}) {
  const args = ['token', '--role', role, '--ttl', ttl];
  if (subject) args.push('--subject', subject);
  if (sources) args.push('--sources', sources.join(','));
  return execFileSync(BIN, args, { env: { ...process.env, INGESTWATCH_JWT_SECRET: SECRET }, encoding: 'utf8' })
    .trim().split(/\s+/).pop();
}

/** Polls `fn()` (sync or async) until it returns a truthy value, which it returns; throws after `timeout` ms. */
export async function waitFor(fn, { timeout = 10_000, every = 50, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() <= deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e; }
    await sleep(every);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
}

/** Runs axe-core on the page's document; returns "view/theme: rule: targets" of serious and critical violations. */
export async function axeProblems(page, label) {
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${label}: ${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`);
}
