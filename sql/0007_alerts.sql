-- Alerts: the only tables the server writes (history of transitions, the
-- current state per alert instance, webhook deliveries as an outbox). They
-- live in `monitor`, next to the outbox, never in `ingest`. The server's role
-- `ingestwatch_reader` stays read-only by default and may INSERT/UPDATE
-- exactly these tables (and use their sequences); it writes them in explicit
-- `read write` transactions on the leader's session.

create table if not exists monitor.alert_transitions (
    id              bigint generated always as identity primary key,
    rule            text not null,
    -- the source name, 'a,b' for sources together, '' for all sources / system
    instance        text not null,
    condition       text not null,
    -- the one source of the instance, when one
    source          text,
    -- every source the instance covers ('{}': all sources, or a system alert)
    sources         text[] not null default '{}',
    from_state      text not null check (from_state in ('inactive', 'pending', 'firing', 'resolved')),
    to_state        text not null check (to_state in ('inactive', 'pending', 'firing', 'resolved')),
    value           double precision,
    threshold       double precision not null,
    unit            text not null,
    severity        text not null,
    labels          jsonb not null default '{}',
    summary         text,
    at              timestamptz not null,
    -- the same for every delivery of the transition, whichever leader sends it
    idempotency_key text not null unique
);

create index if not exists alert_transitions_at_idx on monitor.alert_transitions (at);
create index if not exists alert_transitions_rule_idx on monitor.alert_transitions (rule, id);

-- The current state of each instance: its last transition.
create table if not exists monitor.alert_state (
    rule          text not null,
    instance      text not null,
    state         text not null check (state in ('inactive', 'pending', 'firing', 'resolved')),
    since         timestamptz not null,
    transition_id bigint not null references monitor.alert_transitions (id),
    primary key (rule, instance)
);

-- One row per (transition, receiver), written with the transition: the
-- receiver's queue is its undelivered rows, so a new leader resumes them.
create table if not exists monitor.alert_deliveries (
    id              bigint generated always as identity primary key,
    transition_id   bigint not null references monitor.alert_transitions (id),
    receiver        text not null,
    idempotency_key text not null,
    attempts        integer not null default 0,
    last_status     integer,
    last_error      text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    -- attempts exhausted, or refused by the receiver (4xx)
    failed_at       timestamptz,
    created_at      timestamptz not null default now(),
    unique (idempotency_key, receiver)
);

create index if not exists alert_deliveries_undelivered_idx on monitor.alert_deliveries (receiver, id)
    where delivered_at is null and failed_at is null;

grant select on monitor.alert_transitions, monitor.alert_state, monitor.alert_deliveries
    to ingestwatch_reader;
grant insert, update on monitor.alert_transitions, monitor.alert_state, monitor.alert_deliveries
    to ingestwatch_reader;
do $$
begin
    execute format('grant usage on sequence %s, %s to ingestwatch_reader',
                   pg_get_serial_sequence('monitor.alert_transitions', 'id'),
                   pg_get_serial_sequence('monitor.alert_deliveries', 'id'));
end $$;
