//! The `tracing` span of one subscriber connection (id, transport, subject,
//! topics as they change), so every log line of a connection says whose it is.

/// The span every log line of one connection runs in: its id (the hub's
/// subscriber id), transport (`ws`, `sse`) and token subject; `topics` is
/// empty until [`record_topics`].
pub(super) fn connection_span(conn: u64, transport: &'static str, subject: &str) -> tracing::Span {
    tracing::info_span!(
        "subscriber",
        conn,
        transport,
        subject = %subject,
        topics = tracing::field::Empty,
    )
}

/// Records the connection's current topics on its span (`events,kpis`).
pub(super) fn record_topics(span: &tracing::Span, names: &[&str]) {
    span.record("topics", tracing::field::display(names.join(",")));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_log_line_of_a_connection_says_whose_it_is() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = connection_span(7, "ws", "alice");
            span.in_scope(|| tracing::warn!("before subscribing"));
            record_topics(&span, &["events", "kpis"]);
            span.in_scope(|| tracing::warn!("catch-up read failed"));
        });
        let text = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert!(line.contains("conn=7"), "{line}");
            assert!(line.contains("transport=\"ws\""), "{line}");
            assert!(line.contains("subject=alice"), "{line}");
        }
        assert!(!lines[0].contains("topics="), "{}", lines[0]);
        assert!(lines[1].contains("topics=events,kpis"), "{}", lines[1]);
    }
}
