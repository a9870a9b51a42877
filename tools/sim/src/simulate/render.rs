//! Rendering a meeting into a source's own JSON shape, clean or with a
//! defect applied (missing fields, bad dates, bad zones, too many
//! attendees…).

use super::*;

/// Field names of a source's shape: (JSON pointer of the parent, key).
pub(crate) struct Fields {
    pub(crate) title: (&'static str, &'static str),
    pub(crate) start: (&'static str, &'static str),
    pub(crate) end: (&'static str, &'static str),
    pub(crate) organizer: (&'static str, &'static str),
    pub(crate) zone: (&'static str, &'static str),
    pub(crate) schema: &'static str,
}

pub(crate) fn fields(format: Format) -> Fields {
    match format {
        Format::Crm => Fields {
            title: ("", "Subject"),
            start: ("", "StartDateTime"),
            end: ("", "EndDateTime"),
            organizer: ("/Owner", "Email"),
            zone: ("", "StartDateTime"),
            schema: "crm.event.v3",
        },
        Format::Calendar => Fields {
            title: ("", "summary"),
            start: ("/start", "dateTime"),
            end: ("/end", "dateTime"),
            organizer: ("/organizer", "email"),
            zone: ("/start", "timeZone"),
            schema: "calendar#event",
        },
        Format::Zoom => Fields {
            title: ("/payload/object", "topic"),
            start: ("/payload/object", "start_time"),
            end: ("/payload/object", "duration"),
            organizer: ("/payload/object", "host_email"),
            zone: ("/payload/object", "timezone"),
            schema: "zoom.meeting.created",
        },
        Format::Erp => Fields {
            title: ("", "SUBJECT"),
            start: ("", "START_UTC"),
            end: ("", "END_UTC"),
            organizer: ("", "BOOKED_BY"),
            zone: ("", "START_UTC"),
            schema: "erp.bookings.csv.v2",
        },
        Format::Legacy => Fields {
            title: ("", "Title"),
            start: ("", "Date"),
            end: ("", "EndTime"),
            organizer: ("", "Organiser"),
            zone: ("", "TZ"),
            schema: "legacy.export.v1",
        },
    }
}

/// "Owner.Email" for ("/Owner", "Email").
pub(crate) fn field_name((parent, key): (&str, &str)) -> String {
    let parent = parent.trim_start_matches('/').replace('/', ".");
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn get_field<'a>(v: &'a Value, (parent, key): (&str, &str)) -> Option<&'a Value> {
    v.pointer(parent).and_then(|o| o.get(key))
}

pub(crate) fn set_field(v: &mut Value, (parent, key): (&str, &str), value: Value) {
    if let Some(Value::Object(o)) = v.pointer_mut(parent) {
        o.insert(key.to_string(), value);
    }
}

pub(crate) fn remove_field(v: &mut Value, (parent, key): (&str, &str)) -> Option<Value> {
    match v.pointer_mut(parent) {
        Some(Value::Object(o)) => o.remove(key),
        _ => None,
    }
}

/// Renders `m` in `format`'s shape, applies the defect or quirk, and says
/// what becomes of the record.
pub(crate) fn render(
    format: Format,
    m: &Meeting,
    external_id: &str,
    defect: Option<Defect>,
    quirk: Option<Quirk>,
    rng: &mut StdRng,
) -> (Value, Outcome) {
    let mut v = render_clean(format, m, external_id, rng);
    let f = fields(format);
    if let Some(defect) = defect {
        let issue = apply_defect(format, &f, &mut v, m, external_id, defect, rng);
        return (v, Outcome::Reject(issue));
    }
    let warning = quirk.map(|q| match q {
        Quirk::LongTitle => {
            let length = m.title.chars().count();
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_TRUNCATED_TITLE",
                message: format!("title truncated from {length} to {TITLE_LIMIT} characters"),
                details: json!({ "field": field_name(f.title), "value": m.title.chars().take(40).collect::<String>() + "…", "length": length }),
            }
        }
        Quirk::MissingEnd => {
            remove_field(&mut v, f.end);
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_MISSING_END_TIME",
                message: format!("no {}; assumed a 30-minute meeting", field_name(f.end)),
                details: json!({ "field": field_name(f.end), "value": null, "assumed_minutes": 30 }),
            }
        }
        Quirk::DuplicateAttendee => {
            let who = m.attendees.last().cloned().unwrap_or_default();
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_DUPLICATE_ATTENDEE",
                message: format!("attendee {who} is listed twice"),
                details: json!({ "field": "attendees", "value": who }),
            }
        }
    });
    (v, Outcome::Clean(warning))
}

pub(crate) fn render_clean(
    format: Format,
    m: &Meeting,
    external_id: &str,
    rng: &mut StdRng,
) -> Value {
    let start_utc = m.utc_start();
    let end_utc = m.utc_end();
    match format {
        Format::Crm => json!({
            "attributes": { "type": "Event", "url": format!("/services/data/v59.0/sobjects/Event/{external_id}") },
            "Id": external_id,
            "Subject": m.title,
            "StartDateTime": format!("{}+0000", start_utc.format("%Y-%m-%dT%H:%M:%S%.3f")),
            "EndDateTime": format!("{}+0000", end_utc.format("%Y-%m-%dT%H:%M:%S%.3f")),
            "Location": m.location,
            "Description": m.description,
            "Owner": { "Name": m.organizer.0, "Email": m.organizer.1 },
            "Attendees": m.attendees.iter().map(|a| json!({ "Email": a, "Status": pick(rng, &["Accepted", "New", "Declined"]) })).collect::<Vec<_>>(),
            "AccountName": pick(rng, &["Müller & Söhne GmbH", "O'Brien & Sons, Ltd.", "Globex, Inc.", "株式会社サンプル"]),
            "IsPrivate": rng.random_bool(0.1),
        }),
        Format::Calendar => json!({
            "kind": "calendar#event",
            "id": external_id,
            "iCalUID": format!("{external_id}@google.com"),
            "status": "confirmed",
            "summary": m.title,
            "description": m.description,
            "location": m.location,
            "start": { "dateTime": m.local_rfc3339(m.local_start), "timeZone": m.zone.0 },
            "end": { "dateTime": m.local_rfc3339(m.local_end()), "timeZone": m.zone.0 },
            "organizer": { "email": m.organizer.1, "displayName": m.organizer.0 },
            "attendees": m.attendees.iter().map(|a| json!({ "email": a, "responseStatus": pick(rng, &["accepted", "needsAction", "tentative"]) })).collect::<Vec<_>>(),
            "hangoutLink": format!("https://meet.example/{}", &external_id[..10.min(external_id.len())]),
            "sequence": rng.random_range(0..4),
        }),
        Format::Zoom => json!({
            "event": "meeting.created",
            "event_ts": Utc::now().timestamp_millis(),
            "payload": {
                "account_id": "AbCdEfGhIjKlMnOpQr_stu",
                "operator": m.organizer.1,
                "object": {
                    "id": external_id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(external_id)),
                    "uuid": format!("{}==", random_chars(rng, 22, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")),
                    "topic": m.title,
                    "type": 2,
                    "start_time": format!("{}Z", start_utc.format("%Y-%m-%dT%H:%M:%S")),
                    "duration": m.minutes,
                    "timezone": m.zone.0,
                    "host_email": m.organizer.1,
                    "agenda": m.description,
                    "participants": m.attendees.iter().map(|a| json!({ "email": a })).collect::<Vec<_>>(),
                    "settings": { "join_before_host": rng.random_bool(0.3), "waiting_room": rng.random_bool(0.6) },
                },
            },
        }),
        Format::Erp => json!({
            "BOOKING_NO": external_id,
            "ROOM": pick(rng, &["MUC-3.14", "BER-1.02", "VIE-EG-07", "NYC-22A", "TYO-5F-B"]),
            "SUBJECT": m.title,
            "START_UTC": start_utc.format("%Y-%m-%d %H:%M:%S").to_string(),
            "END_UTC": end_utc.format("%Y-%m-%d %H:%M:%S").to_string(),
            "BOOKED_BY": m.organizer.1,
            "PARTICIPANTS": m.attendees.join(";"),
            "COST_CENTER": format!("{}", rng.random_range(4000..4999)),
            "REMARK": m.description,
            "file": format!("bookings_{}.csv", Utc::now().format("%Y%m%d_%H00")),
            "line": rng.random_range(2..5000),
        }),
        Format::Legacy => json!({
            "MeetingID": external_id,
            "Title": m.title,
            "Date": m.local_start.format("%d.%m.%Y").to_string(),
            "StartTime": m.local_start.format("%H:%M").to_string(),
            "EndTime": m.local_end().format("%H:%M").to_string(),
            "TZ": m.zone.0,
            "Organiser": m.organizer.1,
            "OrganiserName": m.organizer.0,
            "AttendeeList": m.attendees,
            "Room": m.location,
            "Notes": m.description,
        }),
    }
}

/// Breaks `v` as `defect` says and returns the `ingest.errors` row for it.
pub(crate) fn apply_defect(
    format: Format,
    f: &Fields,
    v: &mut Value,
    m: &Meeting,
    external_id: &str,
    defect: Defect,
    rng: &mut StdRng,
) -> Issue {
    let error = |stage, code, message: String, details: Value| Issue {
        severity: "error",
        stage,
        code,
        message,
        details,
    };
    match defect {
        Defect::MissingField => {
            let field = [f.title, f.start, f.organizer][rng.random_range(0..3)];
            remove_field(v, field);
            let name = field_name(field);
            error(
                "validate",
                "E_SCHEMA_MISSING_FIELD",
                format!("required field \"{name}\" is missing ({})", f.schema),
                json!({ "field": name, "value": null, "schema": f.schema }),
            )
        }
        Defect::TzInvalid => {
            let bad = BAD_ZONES[rng.random_range(0..BAD_ZONES.len())];
            let value = if format == Format::Crm {
                // No zone field: the offset is broken instead.
                format!("{}+2500", m.utc_start().format("%Y-%m-%dT%H:%M:%S%.3f"))
            } else {
                bad.to_string()
            };
            set_field(v, f.zone, Value::from(value.clone()));
            let name = field_name(f.zone);
            error(
                "normalize",
                "E_TZ_INVALID",
                format!("unknown time zone or offset in {name}: \"{value}\""),
                json!({ "field": name, "value": value }),
            )
        }
        Defect::DateParse => {
            let value = match format {
                Format::Legacy => ["31.02.2026", "2026-11-26", "26.11.26", "TBD"]
                    [rng.random_range(0..4)]
                .to_string(),
                _ => [
                    format!("{}-11-31 09:00:00", Utc::now().year()),
                    m.utc_start().format("%d/%m/%Y %H:%M").to_string(),
                    "0000-00-00 00:00:00".to_string(),
                ][rng.random_range(0..3)]
                .clone(),
            };
            set_field(v, f.start, Value::from(value.clone()));
            let name = field_name(f.start);
            error(
                "normalize",
                "E_DATE_PARSE",
                format!("cannot parse {name} \"{value}\" as a date"),
                json!({ "field": name, "value": value }),
            )
        }
        Defect::Duplicate => error(
            "validate",
            "E_DUPLICATE_EXTERNAL_ID",
            format!("external_id {external_id} was already ingested; record skipped"),
            json!({ "field": "external_id", "value": external_id }),
        ),
        Defect::AttendeeLimit => error(
            "validate",
            "E_ATTENDEE_LIMIT",
            format!(
                "meeting has {} attendees, the limit is {ATTENDEE_LIMIT}",
                m.attendees.len()
            ),
            json!({ "field": "attendees", "value": m.attendees.len(), "limit": ATTENDEE_LIMIT }),
        ),
        Defect::EndBeforeStart => {
            let end = get_field(v, f.end).cloned().unwrap_or(Value::Null);
            let start = get_field(v, f.start).cloned().unwrap_or(Value::Null);
            let name = field_name(f.end);
            let message = if format == Format::Zoom {
                format!("{name} is {end} minutes: the meeting ends before it starts")
            } else {
                format!("{name} {end} is before the start {start}")
            };
            error(
                "validate",
                "E_END_BEFORE_START",
                message,
                json!({ "field": name, "value": end, "start": start }),
            )
        }
    }
}
