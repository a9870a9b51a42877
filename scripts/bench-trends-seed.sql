-- Seed for scripts/bench-trends.sh: 20 sources, 12 months of history:
-- 175,200 runs (hourly per source), 2,000,000 raw records (90 % processed,
-- lag 1 ms .. 3 s log-uniform), 100,000 error rows. Capture triggers are
-- bypassed (superuser: session_replication_role), so the history reaches the
-- server only through the rollup backfill. Scale the 2000000 for more.
--   createdb iw_trends_bench && DATABASE_URL=… ingestwatch migrate
--   psql -d iw_trends_bench -f scripts/bench-trends-seed.sql
set session_replication_role = replica;
insert into ingest.sources (name, kind, expected_interval)
  select 'src-' || lpad(g::text, 2, '0'), 'api', '1 minute' from generate_series(1, 20) g;
insert into ingest.runs (source_id, started_at, finished_at, status)
  select s, t, t + interval '5 minutes',
         (array['succeeded','succeeded','succeeded','failed','partial'])[1 + (random() * 4)::int]
    from generate_series(1, 20) s,
         generate_series(now() - interval '365 days', now() - interval '1 hour', interval '1 hour') t;
insert into ingest.raw_records (source_id, external_id, received_at, payload, status, processed_at)
  select 1 + (g % 20), 'e' || g, ts, jsonb_build_object('title', 'Meeting ' || g, 'n', g),
         case when g % 10 = 0 then 'pending' when g % 10 = 1 then 'rejected' else 'normalized' end,
         case when g % 10 = 0 then null else ts + exp(random() * 8) * interval '1 ms' end
    from (select g, now() - interval '365 days' + (g::float8 / 2000000) * interval '365 days' as ts
            from generate_series(1, 2000000) g) x;
insert into ingest.errors (source_id, occurred_at, severity, stage, code, message)
  select 1 + (g % 20), now() - random() * interval '365 days',
         case when g % 3 = 0 then 'warning' else 'error' end, 'validate', 'E_' || (g % 7), 'm'
    from generate_series(1, 100000) g;
set session_replication_role = origin;
analyze;
