-- The read-only role the server connects as in production: SELECT on the
-- ingest and monitor schemas, LISTEN (needs no grant), nothing else.
-- Roles are cluster-wide; the grants below are per database. Set its
-- password out of band: alter role ingestwatch_reader password '...';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'ingestwatch_reader') then
        create role ingestwatch_reader login nosuperuser nocreatedb nocreaterole noinherit;
    end if;
end $$;

alter role ingestwatch_reader set default_transaction_read_only = on;

grant usage on schema ingest, monitor to ingestwatch_reader;
grant select on all tables in schema ingest, monitor to ingestwatch_reader;
alter default privileges in schema ingest grant select on tables to ingestwatch_reader;
alter default privileges in schema monitor grant select on tables to ingestwatch_reader;
