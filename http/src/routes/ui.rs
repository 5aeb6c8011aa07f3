//! The live dashboard: the page (`GET /ui`) and what it polls (`GET /ui/data`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::api::NodeApi;
use crate::dashboard::PAGE;
use crate::error::ApiError;
use crate::views::DashboardView;

/// The page may run its own inline script and style and fetch from its own origin, nothing
/// else: no CDN, no external request of any kind.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:";

/// `GET /ui`: the dashboard page, served from the binary.
#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "dashboard_page",
    tag = "operator",
    responses(
        (status = 200, description = "The live dashboard: one HTML page with its script",
         body = String, content_type = "text/html"),
    )
)]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        PAGE,
    )
}

/// `GET /ui/data`: the cluster as the page shows it, with every live node's own statistics,
/// gathered by this node.
#[utoipa::path(
    get,
    path = "/ui/data",
    operation_id = "dashboard_data",
    tag = "operator",
    responses(
        (status = 200, description = "The cluster as the dashboard shows it, with every live \
         node's own request statistics and recent events", body = DashboardView),
    )
)]
pub async fn data<N: NodeApi>(State(node): State<N>) -> Result<impl IntoResponse, ApiError> {
    let view: DashboardView = node.dashboard().await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use prometheus_client::registry::Registry;
    use tower::ServiceExt;

    use super::super::test_node::{MemoryNode, LIMIT};
    use crate::{EdgeLimits, HttpMetrics, Surface};

    /// GETs `uri` from the edge of `surface`: status, content type and body.
    async fn get(surface: Surface, uri: &str) -> (StatusCode, String, String) {
        let edge = crate::router(
            MemoryNode::default(),
            HttpMetrics::register(&mut Registry::default()),
            EdgeLimits {
                max_body_bytes: LIMIT,
                max_in_flight: 16,
            },
            surface,
        );
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = edge.oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_dashboard_page_is_html_from_the_binary_that_fetches_nothing_from_elsewhere() {
        for uri in ["/ui", "/ui/"] {
            let (status, content_type, body) = get(Surface::All, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert!(content_type.starts_with("text/html"), "{content_type}");
            assert!(body.contains("<html") && body.contains("id=\"shards\""));
            for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
                assert!(!body.contains(external), "the page loads {external}");
            }
        }
    }

    #[tokio::test]
    async fn the_dashboard_data_is_json_with_the_cluster_and_each_nodes_report() {
        let (status, content_type, body) = get(Surface::Admin, "/ui/data").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let view: crate::views::DashboardView = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(view.cluster.node, "n1");
        assert_eq!(view.nodes.len(), 1);
        assert!(view.nodes[0].report.is_some());
    }

    #[tokio::test]
    async fn the_dashboard_is_an_operator_view_kept_off_the_client_listener() {
        for uri in ["/ui", "/ui/data"] {
            let (status, _, body) = get(Surface::Api, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("json error");
            assert!(body["message"].is_string());
            assert_eq!(get(Surface::Admin, uri).await.0, StatusCode::OK, "{uri}");
        }
    }
}
