//! The edge's OpenAPI 3 document, served at `GET /openapi.json`.
//!
//! It is generated from the routes themselves: each handler carries a `#[utoipa::path]` with its
//! parameters, body and every status it can answer, and the bodies are the very types the
//! handlers serialize (`ToSchema` derives), so the document changes with the code. What no single
//! handler decides is added here, from the same constants the edge uses: the in-flight bound's
//! 503 on every route it counts ([`crate::admission::PROBES`] are exempt), and the trailing-slash
//! aliases. A listener serves the document of its own routes ([`Surface`]): the test
//! `every_route_of_every_surface_is_documented_with_its_methods` holds the route table and the
//! document to each other.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi, ToResponse};

use super::{admin, integers, jobs, parties, sessions, ui, users};
use crate::admission::PROBES;

/// The document of one listener's routes, built on its first request and kept: a node that is
/// never asked for it (or a simulated one, booted many times) does not pay for it.
#[derive(Clone)]
pub(super) struct Served {
    paths: Arc<[&'static str]>,
    json: Arc<OnceLock<Bytes>>,
}

impl Served {
    /// The document of the routes at `paths` (a listener's own).
    pub(super) fn new(paths: Vec<&'static str>) -> Self {
        Self {
            paths: paths.into(),
            json: Arc::default(),
        }
    }

    fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                let mut doc = document();
                doc.paths
                    .paths
                    .retain(|path, _| self.paths.contains(&path.as_str()));
                // Serializing a tree of plain maps and strings cannot fail.
                let json = serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec());
                Bytes::from(json)
            })
            .clone()
    }
}

/// Where the document is served.
pub(super) const PATH: &str = "/openapi.json";

/// `GET /openapi.json`: this document, for the routes of the listener that serves it.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "probes",
    responses(
        (status = 200, description = "This OpenAPI 3 document", content_type = "application/json",
         body = Object),
    )
)]
pub(super) async fn openapi(Extension(served): Extension<Served>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], served.json())
}

/// Paths that also answer with a trailing slash, the same way (clients of the original
/// services called both, and a person types `/ui/` as often as `/ui`). The route table
/// registers both; the document lists both.
pub(super) const TRAILING_SLASH: [&str; 4] = ["/api/user", "/jobs", "/parties", "/ui"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Troupe",
        description = "The HTTP edge of a Troupe node. Any node answers any request: it serves \
                       it or forwards it to the node that owns its key. Every error is JSON \
                       `{\"message\": ...}` (`ErrorBody`).",
        license(name = "Apache-2.0"),
    ),
    paths(
        admin::healthz,
        admin::readyz,
        openapi,
        admin::cluster,
        admin::shard_copies,
        admin::locate,
        admin::metrics,
        ui::page,
        ui::data,
        users::create,
        users::update,
        users::list,
        users::count,
        users::delete_count,
        users::get,
        users::delete,
        sessions::add,
        sessions::remove,
        sessions::count,
        jobs::create,
        jobs::get,
        integers::latest,
        integers::last,
        parties::find,
        parties::create,
        parties::nearby,
        parties::join,
        parties::participants,
        parties::leave,
    ),
    components(
        schemas(crate::error::ErrorBody),
        responses(BadRequest, NotFound, Conflict, TooLarge, Unavailable, StorageFull, Internal),
    ),
    modifiers(&EdgeWide),
    tags(
        (name = "probes", description = "Liveness, readiness and this document"),
        (name = "operator", description = "The operator's views; with `--admin-listen` only on \
                                           the admin listener"),
        (name = "users"),
        (name = "sessions"),
        (name = "jobs"),
        (name = "integers"),
        (name = "parties"),
    )
)]
struct ApiDoc;

/// The document of every route of the edge.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// What the edge does to every route, whichever handler serves it.
struct EdgeWide;

impl Modify for EdgeWide {
    fn modify(&self, doc: &mut Document) {
        let unavailable = Ref::from_response_name(Unavailable::NAME);
        for (path, item) in doc.paths.paths.iter_mut() {
            if PROBES.contains(&path.as_str()) {
                continue;
            }
            for operation in operations(item) {
                // The in-flight bound refuses before routing (`crate::admission`).
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| unavailable.clone().into());
            }
        }
        for path in TRAILING_SLASH {
            let Some(mut alias) = doc.paths.paths.get(path).cloned() else {
                continue;
            };
            for operation in operations(&mut alias) {
                operation.operation_id = operation
                    .operation_id
                    .take()
                    .map(|id| format!("{id}_trailing_slash"));
            }
            doc.paths.paths.insert(format!("{path}/"), alias);
        }
    }
}

/// The operations of a path item, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// An error answer: [`crate::error::ErrorBody`] as JSON.
fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// The reusable error responses of the document, one per [`crate::ApiError`] variant, each
/// under `components/responses` by its type's name.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal;)*) => {$(
        $(#[$doc])*
        pub(super) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error_response($description).build().into())
            }
        }
    )*};
}

error_responses! {
    /// 400: `ApiError::BadRequest`.
    BadRequest => "The request is malformed: the message names the parameter, field or limit";
    /// 404: `ApiError::NotFound`.
    NotFound => "Nothing has this id, code or key";
    /// 409: `ApiError::Conflict`.
    Conflict => "The request conflicts with the current state (the id is taken, the party is \
                 full)";
    /// 413: `ApiError::PayloadTooLarge`.
    TooLarge => "The body is larger than `http.max_body_bytes`, or the change larger than one \
                 replicated entry may carry";
    /// 507: `ApiError::InsufficientStorage`.
    StorageFull => "The node that must store the change is at `storage.writes_percent` of its \
                    map: nothing was written; not retryable until an operator acts";
    /// 500: `ApiError::Internal`.
    Internal => "A bug or a corrupt stored value; the detail is logged";
}

/// 503 with `Retry-After`: `ApiError::Unavailable` and the in-flight bound's refusal.
pub(super) struct Unavailable;

impl Unavailable {
    const NAME: &'static str = "Unavailable";
}

impl<'r> ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let retry_after = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .description(Some("Seconds to wait before retrying"))
            .build();
        let response = error_response(
            "The cluster cannot serve this now: this node is at `http.max_in_flight`, no owner \
             answered within `http.forward_budget_ms`, the outcome of a write is unknown (it may \
             or may not have taken effect), or the node is not ready. Retry after `Retry-After` \
             seconds",
        )
        .header("Retry-After", retry_after)
        .build();
        (Self::NAME, response.into())
    }
}
