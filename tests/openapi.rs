//! The OpenAPI document lists exactly the routes the router serves, and it
//! validates as OpenAPI 3.1 structurally (every operation has responses, every
//! path parameter is declared, security refers to a declared scheme).

mod common;

use std::collections::BTreeSet;

use common::*;

/// `(method, path)` of every `.route(...)` in http/mod.rs, read from the source.
fn router_routes() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/src/http/mod.rs"
    ))
    .expect("http/mod.rs");
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = BTreeSet::new();
    for part in flat.split(".route(").skip(1) {
        let Some(path) = part.split('"').nth(1) else {
            continue;
        };
        let call = part.split(")) ").next().unwrap_or(part);
        for m in ["get", "post", "delete", "put", "patch"] {
            let calls = [format!(" {m}("), format!(".{m}("), format!(",{m}(")];
            if calls.iter().any(|c| call.contains(c.as_str()))
                || call.contains(&format!("\", {m}("))
            {
                out.insert((m.to_string(), path.to_string()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_lists_every_route_the_router_has() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;
    let (status, doc) = server.get_as("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            documented.insert((method.clone(), path.clone()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: responses"
            );
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(['{', '}']);
                let declared = op["parameters"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path");
                assert!(declared, "{method} {path}: path parameter {name}");
            }
            if let Some(sec) = op["security"].as_array() {
                for s in sec {
                    for k in s.as_object().expect("req").keys() {
                        assert!(
                            doc["components"]["securitySchemes"][k].is_object(),
                            "{method} {path}: scheme {k}"
                        );
                    }
                }
            }
        }
    }
    let routed = router_routes();
    assert!(routed.len() >= 15, "parsed the router: {routed:?}");
    assert_eq!(documented, routed, "OpenAPI paths vs router routes");
    server.stop().await;
}
