//! The `exports` feed: progress frames of export jobs, to the subscribers
//! whose token subject started the job (no snapshot).

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::Value;

use super::{Hub, Outgoing, Subscriber};

impl Hub {
    /// Sends one export progress frame to the `exports` subscribers of
    /// `owner` (the token subject that started the job).
    pub fn publish_export(&self, owner: &str, frame: &Value) {
        if self.export_subs.is_empty() {
            return;
        }
        let frame = Utf8Bytes::from(frame.to_string());
        let subs: Vec<Arc<Subscriber>> = self
            .export_subs
            .iter()
            .filter(|s| s.value().1 == owner)
            .map(|s| s.value().0.clone())
            .collect();
        for sub in subs {
            self.send(&sub, Outgoing::Exports(frame.clone()));
        }
    }

    /// Registers `sub` on `exports` for the jobs of `subject`.
    pub fn subscribe_exports(&self, sub: &Arc<Subscriber>, subject: &str) {
        self.export_subs
            .insert(sub.id, (sub.clone(), subject.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Topic;
    use super::*;

    #[test]
    fn export_frames_reach_only_their_owners_exports_subscribers() {
        let hub = Hub::new(16, Arc::default());
        let (sub, mut rx) = hub.subscriber(8);
        let (other, mut other_rx) = hub.subscriber(8);
        hub.subscribe_exports(&sub, "alice");
        hub.subscribe_exports(&other, "bob");
        hub.publish_export(
            "alice",
            &json!({"type": "export", "id": "x", "status": "running", "rows": 5}),
        );
        match rx.try_recv() {
            Ok(Outgoing::Exports(f)) => assert!(f.as_str().contains("\"rows\":5")),
            other => panic!("expected an export frame, got {other:?}"),
        }
        assert!(other_rx.try_recv().is_err(), "bob does not see alice's job");
        hub.unsubscribe(sub.id, Topic::Exports);
        hub.publish_export("alice", &json!({"type": "export"}));
        assert!(rx.try_recv().is_err());
    }
}
