//! The errors and warnings a run records: fetch errors that fail a run,
//! fetch-retry and load-retry warnings.

use super::*;

/// The error that fails a run at fetch time.
pub(crate) fn fetch_error(format: Format, rng: &mut StdRng, batch: usize) -> Issue {
    let page = batch + 1;
    let (code, message, details) = match (format, rng.random_range(0..2)) {
        (Format::Crm, 0) => (
            "E_FETCH_TIMEOUT",
            format!("GET /services/data/v59.0/query?q=SELECT+…+FROM+Event (page {page}) timed out after 30s"),
            json!({ "page": page, "timeout_s": 30 }),
        ),
        (Format::Crm, _) | (Format::Calendar, 0) => (
            "E_HTTP_503",
            format!("GET page {page} answered 503 Service Unavailable after 3 attempts"),
            json!({ "page": page, "status": 503, "attempts": 3 }),
        ),
        (Format::Calendar, _) => (
            "E_HTTP_401",
            "calendar API rejected the OAuth token (invalid_grant: token expired or revoked)".to_string(),
            json!({ "status": 401, "error": "invalid_grant" }),
        ),
        (Format::Zoom, _) => (
            "E_WEBHOOK_SIGNATURE",
            "x-zm-signature does not match the request body; delivery dropped".to_string(),
            json!({ "header": "x-zm-signature", "delivery": random_chars(rng, 12, b"0123456789abcdef") }),
        ),
        (Format::Erp, 0) => (
            "E_FILE_CHECKSUM",
            format!("bookings_{}.csv: sha256 mismatch, file rejected", Utc::now().format("%Y%m%d_%H00")),
            json!({ "file": format!("bookings_{}.csv", Utc::now().format("%Y%m%d_%H00")), "part": page }),
        ),
        (Format::Erp, _) => (
            "E_FILE_TRUNCATED",
            format!("unexpected end of file in part {page}, line {}", rng.random_range(100..5000)),
            json!({ "part": page }),
        ),
        (Format::Legacy, 0) => (
            "E_SFTP_CONN_RESET",
            "sftp://legacy-ftp.example:22/export/meetings: connection reset by peer".to_string(),
            json!({ "host": "legacy-ftp.example", "port": 22 }),
        ),
        (Format::Legacy, _) => (
            "E_SFTP_AUTH",
            "sftp: authentication failed for user \"ingest\" (publickey)".to_string(),
            json!({ "user": "ingest", "method": "publickey" }),
        ),
    };
    Issue {
        severity: "error",
        stage: "fetch",
        code,
        message,
        details,
    }
}

/// A transient fetch problem that was retried.
pub(crate) fn fetch_retry_warning(format: Format, rng: &mut StdRng, batch: usize) -> Issue {
    let wait = rng.random_range(1..=8);
    let (code, message, details) = match format {
        Format::Legacy => (
            "W_SLOW_TRANSFER",
            format!("export part {} transferred at 12 KiB/s", batch + 1),
            json!({ "part": batch + 1, "kib_per_s": 12 }),
        ),
        _ => (
            "W_HTTP_RETRY",
            format!(
                "429 Too Many Requests on page {}; retried after {wait}s",
                batch + 1
            ),
            json!({ "page": batch + 1, "status": 429, "retry_after_s": wait }),
        ),
    };
    Issue {
        severity: "warning",
        stage: "fetch",
        code,
        message,
        details,
    }
}

/// Logged after a deliberately rolled-back load transaction.
pub(crate) fn load_retry_warning(rng: &mut StdRng, batch: usize, rows: usize) -> Issue {
    let (sqlstate, what) = if rng.random_bool(0.5) {
        ("40P01", "deadlock detected")
    } else {
        ("40001", "could not serialize access")
    };
    Issue {
        severity: "warning",
        stage: "load",
        code: "W_LOAD_RETRY",
        message: format!(
            "{what} while loading batch {}; transaction rolled back, batch will be retried",
            batch + 1
        ),
        details: json!({ "batch": batch + 1, "rows": rows, "sqlstate": sqlstate }),
    }
}
