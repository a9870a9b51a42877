#!/usr/bin/env python3
"""Operator API benchmark (no dependencies): latency of lists, deep cursor
pages and drill-downs, CSV export throughput, and the server's RSS during
1,000,000-row export jobs. See docs/api.md#measured.

usage: bench.py BASE_URL SERVER_PID   (psql must reach the seeded database as
postgres@127.0.0.1/iw_bench_api; override with PSQL_DB)
"""
import json, time, urllib.request, base64, subprocess, sys, statistics, os, threading
BASE = sys.argv[1]
PID = int(sys.argv[2])
def get(path):
    t = time.perf_counter()
    with urllib.request.urlopen(BASE + path) as r:
        body = r.read()
        st = r.status
    return (time.perf_counter() - t) * 1000, st, body
def psql(q):
    return subprocess.check_output(["psql","-h","127.0.0.1","-U","postgres","-d",os.environ.get("PSQL_DB","iw_bench_api"),"-tAc",q]).decode().strip()
def cursor(sort, v, i):
    return base64.urlsafe_b64encode(json.dumps([sort, v, i], separators=(",", ":")).encode()).decode().rstrip("=")
def bench(name, path, n=200):
    get(path)
    ts = []
    for _ in range(n):
        ms, st, _ = get(path)
        assert st == 200, (path, st)
        ts.append(ms)
    ts.sort()
    print(f"| {name} | {statistics.median(ts):.2f} | {ts[int(n*0.99)-1]:.2f} |")
def micros(q):
    return int(psql(q))
# deep cursors at the middle of each table
r = psql("select (extract(epoch from received_at)*1000000)::bigint || ',' || id from ingest.raw_records order by received_at desc, id desc offset 5000000 limit 1").split(",")
rec_cur = cursor("-received_at", int(r[0]), int(r[1]))
r = psql("select (extract(epoch from started_at)*1000000)::bigint || ',' || id from ingest.runs order by started_at desc, id desc offset 50000 limit 1").split(",")
run_cur = cursor("-started_at", int(r[0]), int(r[1]))
r = psql("select (extract(epoch from occurred_at)*1000000)::bigint || ',' || id from ingest.errors order by occurred_at desc, id desc offset 250000 limit 1").split(",")
err_cur = cursor("-occurred_at", int(r[0]), int(r[1]))
r = psql("select (extract(epoch from received_at)*1000000)::bigint || ',' || id from ingest.raw_records where source_id = 3 order by received_at desc, id desc offset 250000 limit 1").split(",")
src_cur = cursor("-received_at", int(r[0]), int(r[1]))
# ~8,000 rows for the synchronous export, ~1,000,000 for the jobs
SYNC_TO = psql("select to_char((min(received_at) + interval '3 days') at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') from ingest.raw_records")
JOB_TO = psql("select to_char((min(received_at) + interval '36 days') at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') from ingest.raw_records")
run_id = psql("select id from ingest.runs where id = 50000")
rec_id = psql("select id from ingest.raw_records where status = 'rejected' and id > 5000000 order by id limit 1")
print("| request | p50 ms | p99 ms |\n|---|---|---|")
bench("records, first page (50)", "/api/records")
bench("records, page at row 5,000,000 (cursor)", f"/api/records?cursor={rec_cur}")
bench("records, source=source-3, page at its row 250,000", f"/api/records?source=source-3&cursor={src_cur}")
bench("records, first page of 500", "/api/records?limit=500", 50)
bench("runs, first page (50, with counts)", "/api/runs")
bench("runs, page at row 50,000", f"/api/runs?cursor={run_cur}")
bench("runs, status=failed", "/api/runs?status=failed")
bench("errors, first page", "/api/errors")
bench("errors, page at row 250,000", f"/api/errors?cursor={err_cur}")
bench("errors, source=source-3&severity=warning&code=E_5", "/api/errors?source=source-3&severity=warning&code=E_5")
bench("errors, q=ext-77 (trigram)", "/api/errors?q=ext-77", 50)
bench("sources (20, health + figures)", "/api/sources")
bench("run drill-down", f"/api/runs/{run_id}")
bench("record drill-down", f"/api/records/{rec_id}")
def cpu():
    f = open(f"/proc/{PID}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def rss():
    with open(f"/proc/{PID}/status") as f:
        for l in f:
            if l.startswith("VmRSS"):
                return int(l.split()[1]) // 1024
print()
base_rss = rss()
ms, st, body = get(f"/api/export/records.csv?source=source-3,source-4&to={SYNC_TO}")
rows = body.count(b"\r\n") - 1
print(f"sync export: {rows} rows, {len(body)/1e6:.1f} MB in {ms:.0f} ms = {rows/ms*1000:,.0f} rows/s")
ms, st, body = get(f"/api/export/records.csv?source=source-3,source-4&to={SYNC_TO}&include_payload=true")
rows = body.count(b"\r\n") - 1
print(f"sync export with payload: {rows} rows, {len(body)/1e6:.1f} MB in {ms:.0f} ms = {rows/ms*1000:,.0f} rows/s")
peak = [base_rss]
stop = False
def sample():
    while not stop:
        peak[0] = max(peak[0], rss()); time.sleep(0.05)
th = threading.Thread(target=sample); th.start()
for payload in (False, True):
    req = urllib.request.Request(BASE + "/api/exports", data=json.dumps({"kind":"records","filters":{"to":JOB_TO},"include_payload":payload}).encode(), headers={"content-type":"application/json"})
    t = time.perf_counter(); c0 = cpu()
    job = json.loads(urllib.request.urlopen(req).read())
    while True:
        _, _, b = get(f"/api/exports/{job['id']}")
        j = json.loads(b)
        if j["status"] in ("finished", "failed"): break
        time.sleep(0.1)
    el = time.perf_counter() - t; c = cpu() - c0
    print(f"export job (payload={payload}): {j['status']} {j['rows']:,} rows (estimate {j['total_estimate']:,}), {j['bytes']/1e6:.0f} MB in {el:.1f} s = {j['rows']/el:,.0f} rows/s; server CPU {c:.2f} s = {c/j['rows']*1e6:.2f} us/row")
    t = time.perf_counter()
    ms, st, body = get(f"/api/exports/{job['id']}/download")
    print(f"  download {len(body)/1e6:.0f} MB in {ms:.0f} ms")
    del body
stop = True; th.join()
print(f"server RSS: {base_rss} MB before exports, peak {peak[0]} MB during (growth {peak[0]-base_rss} MB)")
