//! The route table of the edge.

mod admin;
mod integers;
mod jobs;
#[cfg(test)]
mod limits_tests;
mod parties;
mod sessions;
#[cfg(test)]
mod test_node;
mod ui;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Extension, Router};

use crate::admission::{Admission, Edge};
use crate::api::NodeApi;
use crate::error::ApiError;
use crate::metrics::{self, HttpMetrics};

/// The request bounds of the edge (`[http]` in `cluster.toml`).
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Requests in progress at once; more get 503 at once (see [`crate::admission`]).
    pub max_in_flight: usize,
}

/// Which routes a listener serves. With one listener it serves them all; an operator who
/// keeps the cluster's layout from clients gives the operator's views a listener of their own
/// (`--admin-listen`). The probes are on both, for load balancers and for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The API and the operator's views.
    All,
    /// The API and the probes only.
    Api,
    /// The operator's views (`/cluster...`, `/metrics`, the dashboard `/ui`) and the probes
    /// only.
    Admin,
}

/// Builds the HTTP edge for `node`: the routes of `surface`, behind the in-flight bound.
pub fn router<N: NodeApi>(
    node: N,
    metrics: HttpMetrics,
    limits: EdgeLimits,
    surface: Surface,
) -> Edge {
    let max_body_bytes = limits.max_body_bytes;
    let admission = Admission::new(limits.max_in_flight, &metrics);
    let probes = Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz::<N>));
    let routes = match surface {
        Surface::All => probes.merge(operator_routes()).merge(api_routes()),
        Surface::Api => probes.merge(api_routes()),
        Surface::Admin => probes.merge(operator_routes()),
    };
    let router = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(users::MaxBodyBytes(max_body_bytes)))
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(metrics),
            metrics::track,
        ));
    // Admission comes before routing: a refusal costs no route lookup and no middleware.
    Edge::new(router, admission)
}

/// The operator's views of the cluster, the dashboard among them.
fn operator_routes<N: NodeApi>() -> Router<N> {
    Router::new()
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/data", get(ui::data::<N>))
        .route("/cluster", get(admin::cluster::<N>))
        .route("/cluster/shards", get(admin::shard_copies::<N>))
        .route("/cluster/locate/{kind}/{key}", get(admin::locate::<N>))
        .route("/metrics", get(admin::metrics::<N>))
}

/// The five services' API.
fn api_routes<N: NodeApi>() -> Router<N> {
    Router::new()
        .route("/api/user", users_root::<N>())
        .route("/api/user/", users_root::<N>())
        .route(
            "/api/user/count",
            get(users::count::<N>).delete(users::delete_count),
        )
        .route(
            "/api/user/{id}",
            get(users::get::<N>).delete(users::delete::<N>),
        )
        .route("/add-session", post(sessions::add::<N>))
        .route("/remove-session", post(sessions::remove::<N>))
        .route("/sessions/{user_id}", get(sessions::count::<N>))
        .route("/jobs", post(jobs::create::<N>))
        .route("/jobs/", post(jobs::create::<N>))
        .route("/jobs/{job_id}", get(jobs::get::<N>))
        .route("/v1/integers", get(integers::latest::<N>))
        .route("/v1/integers/last", get(integers::last::<N>))
        .route("/managers/find", get(parties::find::<N>))
        .route("/parties", post(parties::create::<N>))
        .route("/parties/", post(parties::create::<N>))
        .route("/parties/nearby", get(parties::nearby::<N>))
        .route(
            "/parties/{code}/participants",
            post(parties::join::<N>).get(parties::participants::<N>),
        )
        .route(
            "/parties/{code}/participants/{device_id}",
            axum::routing::delete(parties::leave::<N>),
        )
}

/// `/api/user` and `/api/user/`: create, update and list.
fn users_root<N: NodeApi>() -> MethodRouter<N> {
    post(users::create::<N>)
        .put(users::update::<N>)
        .get(users::list::<N>)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(
            serde_json::json!({ "message": format!("method {method} is not allowed on {}", uri.path()) }),
        ),
    )
}
