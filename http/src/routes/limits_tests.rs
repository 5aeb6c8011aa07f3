//! The edge's own limits, through the whole router: bounded metric labels and the in-flight
//! bound's 503.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use super::test_node::{app_with, MemoryNode};
use crate::metrics::HttpMetrics;

async fn send(app: &crate::Edge, method: Method, uri: &str) -> axum::response::Response {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    app.clone().oneshot(request).await.expect("infallible")
}

fn rendered(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode");
    text
}

#[tokio::test]
async fn request_metrics_keep_a_bounded_label_set_whatever_method_and_path_clients_send() {
    let mut registry = Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    let app = app_with(&MemoryNode::default(), metrics, 1024);
    for i in 0..200 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).expect("method token");
        send(&app, method, &format!("/no/such/path/{i}")).await;
        send(&app, Method::GET, &format!("/random-{i}")).await;
    }
    let text = rendered(&registry);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("troupe_http_requests_total{"))
        .collect();
    assert!(
        series.len() <= 4,
        "expected a handful of series, got {}:\n{}",
        series.len(),
        series.join("\n")
    );
    assert!(
        series
            .iter()
            .any(|l| l.contains("method=\"other\"") && l.contains("route=\"unmatched\"")),
        "unknown methods share one label value:\n{text}"
    );
    assert!(
        !text.contains("FOO"),
        "a client's method token became a label:\n{text}"
    );
}

#[tokio::test]
async fn past_the_in_flight_bound_a_request_gets_503_with_retry_after_at_once_and_is_counted() {
    let mut registry = Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    let node = MemoryNode::default();
    let app = app_with(&node, metrics, 2);
    let hold = node.gate.clone().write_owned().await;
    // Two requests fill the bound and wait at the gate.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, Method::GET, "/api/user/count").await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !rendered(&registry).contains("troupe_http_in_flight 2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never got in"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        send(&app, Method::GET, "/api/user/count"),
    )
    .await
    .expect("a refusal does not wait for a place");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json body");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("http.max_in_flight"), "{message}");

    // Probes are not counted against the bound.
    assert_eq!(
        send(&app, Method::GET, "/healthz").await.status(),
        StatusCode::OK
    );
    let text = rendered(&registry);
    assert!(
        text.contains("troupe_http_rejected_total{reason=\"in_flight\"} 1"),
        "{text}"
    );

    drop(hold);
    for request in held {
        let response = request.await.expect("request task");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(rendered(&registry).contains("troupe_http_in_flight 0"));
    assert_eq!(
        send(&app, Method::GET, "/api/user/count").await.status(),
        StatusCode::OK
    );
}
