//! `/openapi.json` against the route table: every route of every surface is in the document with
//! exactly the methods it answers, the document is well formed, and its limits are the ones the
//! routes enforce.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tower::ServiceExt;

use super::test_node::{MemoryNode, LIMIT};
use super::{openapi, routes, Surface};
use crate::metrics::HttpMetrics;

/// Methods a route may answer; `HEAD` follows `GET` in axum and is not listed on its own.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

fn edge(surface: Surface) -> crate::Edge {
    crate::router(
        MemoryNode::default(),
        HttpMetrics::register(&mut Registry::default()),
        crate::EdgeLimits {
            max_body_bytes: LIMIT,
            max_in_flight: 1024,
        },
        surface,
    )
}

async fn send(edge: &crate::Edge, method: Method, uri: &str) -> (StatusCode, Vec<u8>, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let response = edge.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .expect("body");
    (status, body.to_vec(), content_type)
}

/// `/parties/{code}/participants` with each parameter replaced by a plain value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

fn document() -> Value {
    serde_json::to_value(openapi::document()).expect("document as JSON")
}

#[tokio::test]
async fn every_route_of_every_surface_is_documented_with_its_methods() {
    for surface in [Surface::All, Surface::Api, Surface::Admin] {
        let edge = edge(surface);
        let (status, body, content_type) = send(&edge, Method::GET, "/openapi.json").await;
        assert_eq!(status, StatusCode::OK, "{surface:?}");
        assert_eq!(content_type, "application/json");
        let served: Value = serde_json::from_slice(&body).expect("JSON document");
        let paths = served["paths"].as_object().expect("paths");

        let registered: BTreeSet<&str> = routes::<MemoryNode>(surface)
            .iter()
            .map(|(path, _)| *path)
            .collect();
        let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            registered, documented,
            "{surface:?}: routes and document differ"
        );

        for (path, item) in paths {
            for method in METHODS {
                let key = method.as_str().to_ascii_lowercase();
                let in_document = item.get(&key).is_some();
                let (status, body, _) = send(&edge, method.clone(), &concrete(path)).await;
                let answered = status != StatusCode::METHOD_NOT_ALLOWED;
                assert_eq!(
                    in_document,
                    answered,
                    "{surface:?} {method} {path}: documented {in_document}, answered {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: &str, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push((at.to_owned(), target)),
                    _ => refs(inner, &format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                refs(inner, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_with_unique_operations_declared_parameters_and_no_dangling_ref() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut operation_ids = BTreeSet::new();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let operations = item.as_object().expect("path item");
        assert!(!operations.is_empty(), "{path}");
        for (method, operation) in operations {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_owned()), "{id} twice");
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .inspect(|p| assert_eq!(p["required"], true, "{method} {path}"))
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
            for status in responses.keys() {
                let code: u16 = status.parse().expect("numeric status");
                assert!((100..600).contains(&code), "{method} {path}: {status}");
            }
        }
    }

    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(!found.is_empty());
    for (at, target) in found {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: {target} resolves to nothing"
        );
    }
}

#[test]
fn every_route_but_the_probes_documents_the_in_flight_bounds_503_with_retry_after() {
    let doc = document();
    let unavailable = &doc["components"]["responses"]["Unavailable"];
    assert!(unavailable["headers"]["Retry-After"].is_object());
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let has_503 = operation["responses"].get("503").is_some();
            let counted = !crate::admission::PROBES.contains(&path.as_str());
            assert!(!counted || has_503, "{method} {path} lacks 503");
        }
    }
}

#[test]
fn the_documented_limits_are_the_ones_the_routes_enforce() {
    use troupe_actors::{jobs, parties, sessions, users};
    let doc = document();
    let schema = |name: &str, field: &str, key: &str| -> u64 {
        doc["components"]["schemas"][name]["properties"][field][key]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.{field}.{key}"))
    };
    let limits = [
        (
            schema("CreateUserBody", "name", "maxLength"),
            users::MAX_NAME_CHARS,
        ),
        (
            schema("UpdateUserBody", "name", "maxLength"),
            users::MAX_NAME_CHARS,
        ),
        (
            schema("CreateUserBody", "email", "maxLength"),
            users::MAX_EMAIL_CHARS,
        ),
        (
            schema("UpdateUserBody", "email", "maxLength"),
            users::MAX_EMAIL_CHARS,
        ),
        (
            schema("CreateJobBody", "object_id", "maxLength"),
            jobs::MAX_OBJECT_ID_BYTES,
        ),
        (
            schema("CreatePartyBody", "device_id", "maxLength"),
            parties::MAX_DEVICE_ID_BYTES,
        ),
        (
            schema("JoinPartyBody", "device_id", "maxLength"),
            parties::MAX_DEVICE_ID_BYTES,
        ),
        (
            schema("CreatePartyBody", "participant_name", "maxLength"),
            parties::MAX_NAME_CHARS,
        ),
        (
            schema("JoinPartyBody", "participant_name", "maxLength"),
            parties::MAX_NAME_CHARS,
        ),
    ];
    for (i, (documented, enforced)) in limits.into_iter().enumerate() {
        assert_eq!(documented, enforced as u64, "limit {i}");
    }
    let user_id = doc["paths"]["/add-session"]["post"]["parameters"][0]["schema"]["maxLength"]
        .as_u64()
        .expect("user_id maxLength");
    assert_eq!(user_id, sessions::MAX_USER_ID_BYTES as u64);
    let offset = doc["paths"]["/api/user"]["get"]["parameters"][0]["schema"]["maximum"]
        .as_u64()
        .expect("offset maximum");
    assert_eq!(offset, super::users::MAX_OFFSET);
}
