//! The `alerts` feed: frames the alerts view publishes (it serializes
//! publishing and subscribing under its own lock, so a snapshot and the
//! transitions after it never overlap), routed by the subscriber's scope.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::{Hub, Outgoing, Scope, Subscriber};
use crate::auth;

/// One serialized alert frame and the sources it covers (for scoping).
#[derive(Debug, Clone)]
pub struct AlertFrame {
    /// The frame, JSON text.
    pub text: Utf8Bytes,
    /// Sources the alert covers (empty: all sources, or a system alert).
    pub sources: Arc<[String]>,
}

impl Hub {
    /// Publishes one alert frame to the `alerts` subscribers whose scope
    /// covers every source it is about (alerts over all sources and system
    /// alerts go to unscoped subscribers only). The caller serializes
    /// publishing and [`Hub::subscribe_alerts`] (the alerts view's lock).
    pub fn publish_alert(&self, frame: &AlertFrame) {
        let subs: Vec<Arc<Subscriber>> = self
            .alert_subs
            .iter()
            .filter(|s| auth::Scope::of(s.value().1.as_ref()).sees_all(&frame.sources))
            .map(|s| s.value().0.clone())
            .collect();
        for sub in subs {
            self.send(&sub, Outgoing::Alerts(frame.text.clone()));
        }
    }

    /// Registers `sub` on `alerts` for `scope` after queueing `snapshot`
    /// (`None`: the snapshot follows later, see [`Hub::alert_subscribers`]).
    pub fn subscribe_alerts(
        &self,
        sub: &Arc<Subscriber>,
        scope: Scope,
        snapshot: Option<Utf8Bytes>,
    ) {
        if snapshot.is_none_or(|s| self.send(sub, Outgoing::Alerts(s))) {
            self.alert_subs.insert(sub.id, (sub.clone(), scope));
        }
    }

    /// The `alerts` subscribers and their scopes.
    pub fn alert_subscribers(&self) -> Vec<(Arc<Subscriber>, Scope)> {
        self.alert_subs
            .iter()
            .map(|s| (s.value().0.clone(), s.value().1.clone()))
            .collect()
    }

    /// Queues one alerts frame for one subscriber.
    pub fn send_alert(&self, sub: &Arc<Subscriber>, frame: Utf8Bytes) {
        self.send(sub, Outgoing::Alerts(frame));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn alert_frames_go_to_subscribers_whose_scope_covers_them() {
        let hub = Hub::new(16, Arc::default());
        let (all, mut all_rx) = hub.subscriber(8);
        let (crm, mut crm_rx) = hub.subscriber(8);
        hub.subscribe_alerts(&all, None, Some(Utf8Bytes::from_static("s")));
        let scope: Scope = Some(BTreeSet::from(["crm".to_string()]));
        hub.subscribe_alerts(&crm, scope, Some(Utf8Bytes::from_static("s")));
        for sources in [vec!["crm"], vec!["erp"], vec!["crm", "erp"], vec![]] {
            hub.publish_alert(&AlertFrame {
                text: Utf8Bytes::from(sources.join(",")),
                sources: sources.iter().map(|s| s.to_string()).collect(),
            });
        }
        let texts = |rx: &mut mpsc::Receiver<Outgoing>| -> Vec<String> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|o| match o {
                    Outgoing::Alerts(t) => t.as_str().to_string(),
                    _ => String::new(),
                })
                .collect()
        };
        assert_eq!(texts(&mut all_rx), ["s", "crm", "erp", "crm,erp", ""]);
        assert_eq!(texts(&mut crm_rx), ["s", "crm"]);
    }
}
