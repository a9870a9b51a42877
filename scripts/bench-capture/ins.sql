insert into ingest.raw_records (run_id, source_id, external_id, payload) select 1, 1, 'ext-' || g, jsonb_build_object('title', 'Meeting ' || g, 'n', g) from generate_series(1, :rows) g;
