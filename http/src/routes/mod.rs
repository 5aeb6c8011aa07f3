//! The route table of the edge.

mod admin;
mod integers;
mod jobs;
#[cfg(test)]
mod limits_tests;
pub mod openapi;
#[cfg(test)]
mod openapi_tests;
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
use crate::error::{ApiError, ErrorBody};
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
    let table = routes::<N>(surface);
    let document = openapi::Served::new(table.iter().map(|(path, _)| *path).collect());
    let router = table
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            // The document goes to its own route only: as a layer of the whole router it
            // would be cloned into every request.
            let methods = if path == openapi::PATH {
                methods.layer(Extension(document.clone()))
            } else {
                methods
            };
            router.route(path, methods)
        })
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

/// Routes as registered: a path and what each method does there. [`router`] registers nothing
/// else, so the OpenAPI test can hold the document to this table.
type Table<N> = Vec<(&'static str, MethodRouter<N>)>;

/// The routes a listener of `surface` serves.
fn routes<N: NodeApi>(surface: Surface) -> Table<N> {
    let mut table = common_routes();
    match surface {
        Surface::All => {
            table.extend(operator_routes());
            table.extend(api_routes());
        }
        Surface::Api => table.extend(api_routes()),
        Surface::Admin => table.extend(operator_routes()),
    }
    table
}

/// On every listener: the probes, for load balancers and operators, and the document of the
/// listener's routes.
fn common_routes<N: NodeApi>() -> Table<N> {
    vec![
        ("/healthz", get(admin::healthz)),
        ("/readyz", get(admin::readyz::<N>)),
        (openapi::PATH, get(openapi::openapi)),
    ]
}

/// The operator's views of the cluster, the dashboard among them.
fn operator_routes<N: NodeApi>() -> Table<N> {
    vec![
        ("/ui", get(ui::page)),
        ("/ui/", get(ui::page)),
        ("/ui/data", get(ui::data::<N>)),
        ("/cluster", get(admin::cluster::<N>)),
        ("/cluster/shards", get(admin::shard_copies::<N>)),
        ("/cluster/locate/{kind}/{key}", get(admin::locate::<N>)),
        ("/metrics", get(admin::metrics::<N>)),
    ]
}

/// The five services' API. The paths of [`openapi::TRAILING_SLASH`] answer with a trailing
/// slash too.
fn api_routes<N: NodeApi>() -> Table<N> {
    let users_root = || {
        post(users::create::<N>)
            .put(users::update::<N>)
            .get(users::list::<N>)
    };
    vec![
        ("/api/user", users_root()),
        ("/api/user/", users_root()),
        (
            "/api/user/count",
            get(users::count::<N>).delete(users::delete_count),
        ),
        (
            "/api/user/{id}",
            get(users::get::<N>).delete(users::delete::<N>),
        ),
        ("/add-session", post(sessions::add::<N>)),
        ("/remove-session", post(sessions::remove::<N>)),
        ("/sessions/{user_id}", get(sessions::count::<N>)),
        ("/jobs", post(jobs::create::<N>)),
        ("/jobs/", post(jobs::create::<N>)),
        ("/jobs/{job_id}", get(jobs::get::<N>)),
        ("/v1/integers", get(integers::latest::<N>)),
        ("/v1/integers/last", get(integers::last::<N>)),
        ("/managers/find", get(parties::find::<N>)),
        ("/parties", post(parties::create::<N>)),
        ("/parties/", post(parties::create::<N>)),
        ("/parties/nearby", get(parties::nearby::<N>)),
        (
            "/parties/{code}/participants",
            post(parties::join::<N>).get(parties::participants::<N>),
        ),
        (
            "/parties/{code}/participants/{device_id}",
            axum::routing::delete(parties::leave::<N>),
        ),
    ]
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
) -> (axum::http::StatusCode, axum::Json<ErrorBody>) {
    let message = format!("method {method} is not allowed on {}", uri.path());
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody { message }),
    )
}
