-- Seed for the operator API benchmark (docs/api.md#measured): 20 sources,
-- 100,000 runs over 12 months, 10,000,000 raw records, 500,000 errors.
-- Run on a freshly migrated database as a superuser:
--   psql -v ON_ERROR_STOP=1 -d DB -f scripts/bench-api/seed.sql
-- The capture triggers are skipped (session_replication_role = replica):
-- this seeds history, it does not simulate a pipeline. ~8 minutes on 2 cores.
set session_replication_role = replica;
insert into ingest.sources (name, kind, expected_interval)
select 'source-' || g, 'api', '1 minute' from generate_series(1, 20) g;
insert into ingest.runs (source_id, started_at, finished_at, status)
select 1 + (g % 20), t, t + interval '5 minutes',
       case when g % 20 = 0 then 'failed' when g % 7 = 0 then 'partial' else 'succeeded' end
  from (select g, now() - interval '365 days' + g * interval '315 seconds' t
          from generate_series(1, 100000) g) x;
do $$
begin
  for c in 0..9 loop
    insert into ingest.raw_records (run_id, source_id, external_id, received_at, payload, status, processed_at)
    select u.id, u.source_id, 'ext-' || u.id || '-' || k,
           u.started_at + k * interval '3 seconds',
           jsonb_build_object('title', 'Meeting ' || k, 'organizer', 'someone@example.com',
                              'attendees', k % 12, 'room', 'B-' || (k % 40)),
           case when k % 20 = 7 then 'rejected' when u.id > 99990 and k > 50 then 'pending' else 'normalized' end,
           case when u.id > 99990 and k > 50 then null
                else u.started_at + k * interval '3 seconds' + interval '400 ms' end
      from ingest.runs u cross join generate_series(1, 100) k
     where u.id > c * 10000 and u.id <= (c + 1) * 10000;
    commit;
  end loop;
end $$;
insert into ingest.errors (run_id, raw_record_id, source_id, occurred_at, severity, stage, code, message, details)
select r.run_id, r.id, r.source_id, coalesce(r.processed_at, r.received_at),
       case when r.id % 3 = 0 then 'warning' else 'error' end,
       (array['fetch', 'validate', 'normalize', 'load'])[1 + r.id % 4], 'E_' || (r.id % 17),
       'record ' || r.external_id || ': field "start" missing, 50% of batch', '{"field":"start"}'
  from ingest.raw_records r where r.status = 'rejected';
vacuum analyze;
