//! The five simulated sources: their payload shapes ([`Format`]), the defects
//! and quirks they produce, their rates and expected intervals
//! ([`SOURCES`]), and the constants that tune the simulation.

use super::*;

/// How often the progress line is logged.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(30);
/// Share of transactions rolled back on purpose.
pub(crate) const ROLLBACK_RATE: f64 = 0.02;
/// Reject rate of a source during its bad minute.
pub(crate) const BAD_MINUTE_REJECT_RATE: f64 = 0.4;
/// Traffic multiplier during a burst.
pub(crate) const BURST_FACTOR: f64 = 5.0;
/// A run whose rejected share is above this (and at least 2 records) ends `partial`.
pub(crate) const PARTIAL_THRESHOLD: f64 = 0.10;
/// Concurrent (not stalled) runs per writer.
pub(crate) const RUNS_PER_WRITER: usize = 3;
/// More attendees than this is `E_ATTENDEE_LIMIT`.
pub(crate) const ATTENDEE_LIMIT: usize = 200;
/// Longer titles are truncated to this many characters (`W_TRUNCATED_TITLE`).
pub(crate) const TITLE_LIMIT: usize = 200;

/// Payload shape of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Salesforce-like `Event` objects.
    Crm,
    /// Google-Calendar-like events.
    Calendar,
    /// Zoom `meeting.created` webhook bodies.
    Zoom,
    /// Rows of an ERP room-booking CSV, as JSON.
    Erp,
    /// A legacy export with local dates, times and a time-zone name.
    Legacy,
}

/// Why a record is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    /// A required field is missing (validate).
    MissingField,
    /// An unknown time zone or offset (normalize).
    TzInvalid,
    /// A date that does not parse (normalize).
    DateParse,
    /// The external id was ingested before (validate).
    Duplicate,
    /// More than [`ATTENDEE_LIMIT`] attendees (validate).
    AttendeeLimit,
    /// The meeting ends before it starts (validate).
    EndBeforeStart,
}

/// A warning on a record that is still normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quirk {
    /// Title longer than [`TITLE_LIMIT`].
    LongTitle,
    /// No end time or duration: 30 minutes assumed.
    MissingEnd,
    /// An attendee listed twice.
    DuplicateAttendee,
}

/// One simulated source and its behaviour.
#[derive(Debug)]
pub(crate) struct SourceProfile {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) interval_secs: u64,
    /// Relative share of new runs.
    pub(crate) weight: u32,
    /// Batches per run (inclusive range).
    pub(crate) batches: (usize, usize),
    /// Records per batch (inclusive range, within 1–50).
    pub(crate) batch_size: (usize, usize),
    pub(crate) reject_rate: f64,
    pub(crate) warning_rate: f64,
    /// Chance that a batch fetch fails (the run then ends `failed`).
    pub(crate) fetch_fail_rate: f64,
    /// Chance of a fetch-stage retry warning before a batch.
    pub(crate) retry_warning_rate: f64,
    /// Whether the source stalls now and then.
    pub(crate) stalls: bool,
    pub(crate) format: Format,
    /// Reject reasons and their weights.
    pub(crate) defects: &'static [(Defect, u32)],
    /// `INSERT INTO ingest.meetings … SELECT` from this source's payloads; `$1` = ids.
    pub(crate) normalize_sql: &'static str,
}

/// Builds a source's normalizing `INSERT … SELECT` from its column expressions over `p` (the payload).
macro_rules! normalize_sql {
    ($title:literal, $starts:literal, $ends:literal, $organizer:literal, $attendees:literal) => {
        concat!(
            "insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count) ",
            "select r.id, r.source_id, ", $title, ", ", $starts, ", ", $ends, ", ", $organizer, ", ", $attendees, " ",
            "from ingest.raw_records r cross join lateral (select r.payload as p) j ",
            "where r.id = any($1::bigint[]) and r.status = 'pending' ",
            "order by r.id on conflict (raw_record_id) do nothing"
        )
    };
}

/// The demo sources.
pub(crate) static SOURCES: [SourceProfile; 5] = [
    SourceProfile {
        name: "crm-meetings",
        kind: "api",
        interval_secs: 30,
        weight: 25,
        batches: (1, 3),
        batch_size: (5, 25),
        reject_rate: 0.04,
        warning_rate: 0.02,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.03,
        stalls: false,
        format: Format::Crm,
        defects: &[
            (Defect::MissingField, 4),
            (Defect::TzInvalid, 2),
            (Defect::Duplicate, 3),
            (Defect::AttendeeLimit, 1),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'Subject', 200)",
            "(p->>'StartDateTime')::timestamptz",
            "coalesce((p->>'EndDateTime')::timestamptz, (p->>'StartDateTime')::timestamptz + interval '30 minutes')",
            "lower(p#>>'{Owner,Email}')",
            "coalesce(jsonb_array_length(p->'Attendees'), 0)"
        ),
    },
    SourceProfile {
        name: "calendar-sync",
        kind: "api",
        interval_secs: 60,
        weight: 15,
        batches: (1, 4),
        batch_size: (10, 40),
        reject_rate: 0.03,
        warning_rate: 0.03,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.04,
        stalls: false,
        format: Format::Calendar,
        defects: &[
            (Defect::MissingField, 3),
            (Defect::TzInvalid, 4),
            (Defect::Duplicate, 2),
            (Defect::AttendeeLimit, 1),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'summary', 200)",
            "(p#>>'{start,dateTime}')::timestamptz",
            "coalesce((p#>>'{end,dateTime}')::timestamptz, (p#>>'{start,dateTime}')::timestamptz + interval '30 minutes')",
            "lower(p#>>'{organizer,email}')",
            "coalesce(jsonb_array_length(p->'attendees'), 0)"
        ),
    },
    SourceProfile {
        name: "erp-bookings",
        kind: "file",
        interval_secs: 300,
        weight: 5,
        batches: (3, 8),
        batch_size: (30, 50),
        reject_rate: 0.06,
        warning_rate: 0.02,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.0,
        stalls: false,
        format: Format::Erp,
        defects: &[
            (Defect::MissingField, 4),
            (Defect::DateParse, 3),
            (Defect::Duplicate, 4),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'SUBJECT', 200)",
            "(p->>'START_UTC')::timestamp at time zone 'UTC'",
            "coalesce(nullif(p->>'END_UTC', '')::timestamp, (p->>'START_UTC')::timestamp + interval '30 minutes') at time zone 'UTC'",
            "lower(p->>'BOOKED_BY')",
            "coalesce(array_length(string_to_array(nullif(p->>'PARTICIPANTS', ''), ';'), 1), 0)"
        ),
    },
    SourceProfile {
        name: "zoom-webhooks",
        kind: "webhook",
        interval_secs: 10,
        weight: 40,
        batches: (1, 1),
        batch_size: (1, 5),
        reject_rate: 0.05,
        warning_rate: 0.01,
        fetch_fail_rate: 0.005,
        retry_warning_rate: 0.0,
        stalls: false,
        format: Format::Zoom,
        defects: &[
            (Defect::MissingField, 2),
            (Defect::TzInvalid, 1),
            (Defect::Duplicate, 5),
            (Defect::AttendeeLimit, 2),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p#>>'{payload,object,topic}', 200)",
            "(p#>>'{payload,object,start_time}')::timestamptz",
            "(p#>>'{payload,object,start_time}')::timestamptz + make_interval(mins => coalesce((p#>>'{payload,object,duration}')::int, 30))",
            "lower(p#>>'{payload,object,host_email}')",
            "coalesce(jsonb_array_length(p#>'{payload,object,participants}'), 0)"
        ),
    },
    SourceProfile {
        name: "legacy-ftp",
        kind: "sftp",
        interval_secs: 120,
        weight: 15,
        batches: (1, 3),
        batch_size: (10, 30),
        reject_rate: 0.07,
        warning_rate: 0.03,
        fetch_fail_rate: 0.03,
        retry_warning_rate: 0.02,
        stalls: true,
        format: Format::Legacy,
        defects: &[
            (Defect::MissingField, 2),
            (Defect::TzInvalid, 4),
            (Defect::DateParse, 3),
            (Defect::Duplicate, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'Title', 200)",
            "(to_date(p->>'Date', 'DD.MM.YYYY') + (p->>'StartTime')::time) at time zone (p->>'TZ')",
            "(to_date(p->>'Date', 'DD.MM.YYYY') + coalesce((p->>'EndTime')::time, (p->>'StartTime')::time + interval '30 minutes')) at time zone (p->>'TZ')",
            "lower(p->>'Organiser')",
            "coalesce(jsonb_array_length(p->'AttendeeList'), 0)"
        ),
    },
];

// Time-based effects
