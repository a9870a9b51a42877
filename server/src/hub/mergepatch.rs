//! RFC 7396 JSON merge patch: the diff that turns one KPI payload into the
//! next (sent as the `delta` frame), and its application (used by tests and
//! by any Rust subscriber).

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`; `None` when they are equal.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for (k, vb) in b {
                match a.get(k) {
                    Some(va) => {
                        if let Some(p) = diff(va, vb) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), vb.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (a, b) if a == b => None,
        (_, b) => Some(b.clone()),
    }
}

/// Applies a merge patch to `target` (null in the patch removes the key).
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                apply(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_then_apply_round_trips() {
        let a = json!({"5m": {"total": {"received": 1, "lag": {"p50": 3}}, "sources": {"a": 1, "b": 2}}, "x": [1]});
        let b = json!({"5m": {"total": {"received": 2, "lag": {"p50": 3}}, "sources": {"a": 1, "c": 5}}, "x": [1, 2]});
        let p = diff(&a, &b).expect("differs");
        assert_eq!(
            p,
            json!({"5m": {"total": {"received": 2}, "sources": {"b": null, "c": 5}}, "x": [1, 2]})
        );
        let mut t = a.clone();
        apply(&mut t, &p);
        assert_eq!(t, b);
        assert_eq!(diff(&b, &b), None);
    }

    #[test]
    fn null_values_become_removals() {
        let a = json!({"p50": 1});
        let b = json!({"p50": null});
        let p = diff(&a, &b).expect("differs");
        let mut t = a.clone();
        apply(&mut t, &p);
        assert_eq!(t, json!({}));
    }
}
