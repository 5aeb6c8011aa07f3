//! The parties service's routes: the dispatcher (`/managers/find`) and the party manager API.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use troupe_actors::parties::{self, NearbySearch};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{
    BadRequest, Conflict, Internal, NotFound, StorageFull, TooLarge, Unavailable,
};
use super::users::{body_bytes, MaxBodyBytes};
use crate::api::NodeApi;
use crate::error::ApiError;
use crate::views::{ManagerView, NearbyParty, PartyCreated, PartyLeft, PartyMember};

/// `GET /parties/{code}/participants` response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PartyView {
    /// The party.
    party_code: String,
    /// The region it was dispatched to.
    region: String,
    /// The host's participant id (the earliest joiner still in).
    host: Option<u32>,
    /// In join order.
    participants: Vec<ParticipantView>,
}

/// One participant in [`PartyView`].
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ParticipantView {
    /// Id within the party, from 0 (the creator) in join order.
    participant_id: u32,
    /// The participant's device.
    device_id: String,
    /// Display name.
    participant_name: String,
    /// Whether this participant is the host.
    host: bool,
}

/// A `POST /parties` body, as [`parties::parse_create`] accepts it (documentation only: the
/// route validates the raw body itself). `lat` and `lng` come together or not at all.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct CreatePartyBody {
    /// The creator's device: 1 to 128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    device_id: String,
    /// The creator's name, `host` when absent: 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    participant_name: Option<String>,
    /// Where the party is; its region is the closest one (this node's own when absent).
    #[schema(minimum = -90, maximum = 90, nullable = false)]
    lat: Option<f64>,
    /// Where the party is.
    #[schema(minimum = -180, maximum = 180, nullable = false)]
    lng: Option<f64>,
}

/// A `POST /parties/{code}/participants` body, as [`parties::parse_join`] accepts it
/// (documentation only).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinPartyBody {
    /// The joining device: 1 to 128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    device_id: String,
    /// Its display name: 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    participant_name: String,
}

/// A point, in the query (documentation only: [`parties::parse_coordinates`] reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct PointQuery {
    /// Latitude, degrees.
    #[param(minimum = -90, maximum = 90)]
    lat: f64,
    /// Longitude, degrees.
    #[param(minimum = -180, maximum = 180)]
    lng: f64,
}

/// A nearby search's bounds, in the query besides the point (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct NearbyQuery {
    /// Parties farther than this are left out; default 50.
    #[param(exclusive_minimum = 0, maximum = 1000)]
    radius_km: Option<f64>,
    /// Only the nearest this many; default 1000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// The `code` path parameter's documentation.
const CODE: &str = "The party's code: nine digits, not starting with 0 (anything else is 404)";

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn bad(error: troupe_actors::users::ValidationError) -> ApiError {
    ApiError::BadRequest(error.to_string())
}

fn coordinates(params: &HashMap<String, String>) -> Result<(f64, f64), ApiError> {
    parties::parse_coordinates(
        params.get("lat").map(String::as_str),
        params.get("lng").map(String::as_str),
    )
    .map_err(bad)
}

/// `GET /managers/find?lng=X&lat=Y`.
#[utoipa::path(
    get,
    path = "/managers/find",
    operation_id = "find_manager",
    tag = "parties",
    params(PointQuery),
    responses(
        (status = 200, description = "The closest region's manager and its node",
         body = ManagerView),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "find_manager",
    skip_all,
    fields(route = "/managers/find")
)]
pub async fn find<N: NodeApi>(
    State(node): State<N>,
    query: Params,
) -> Result<Json<ManagerView>, ApiError> {
    let (lat, lng) = coordinates(&params(query)?)?;
    node.find_manager(lat, lng).map(Json)
}

/// `POST /parties`: 201.
#[utoipa::path(
    post,
    path = "/parties",
    operation_id = "create_party",
    tag = "parties",
    request_body(content = CreatePartyBody, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Created, the creator its host", body = PartyCreated),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "create_party",
    skip_all,
    fields(route = "/parties")
)]
pub async fn create<N: NodeApi>(
    State(node): State<N>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PartyCreated>), ApiError> {
    let request = parties::parse_create(&body_bytes(body, limit)?).map_err(bad)?;
    let created = node.create_party(request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST /parties/{code}/participants`: 201 when added, 200 when the device was already in.
#[utoipa::path(
    post,
    path = "/parties/{code}/participants",
    operation_id = "join_party",
    tag = "parties",
    params(("code" = String, Path, min_length = 1, description = CODE)),
    request_body(content = JoinPartyBody, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "The device was already in: its participant",
         body = PartyMember),
        (status = 201, description = "Joined", body = PartyMember),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "join_party",
    skip_all,
    fields(route = "/parties/{code}/participants")
)]
pub async fn join<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PartyMember>), ApiError> {
    let Path(code) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let request = parties::parse_join(&body_bytes(body, limit)?).map_err(bad)?;
    let (added, member) = node.join_party(code, request).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member)))
}

/// `GET /parties/{code}/participants`: ids, names, and which one is host.
#[utoipa::path(
    get,
    path = "/parties/{code}/participants",
    operation_id = "party_participants",
    tag = "parties",
    params(("code" = String, Path, min_length = 1, description = CODE)),
    responses(
        (status = 200, description = "The party and its participants", body = PartyView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "party_participants",
    skip_all,
    fields(route = "/parties/{code}/participants")
)]
pub async fn participants<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PartyView>, ApiError> {
    let Path(code) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let party = node.party(code).await?;
    let host = party.host();
    let participants = party
        .participants
        .into_iter()
        .map(|p| ParticipantView {
            host: Some(p.participant_id) == host,
            participant_id: p.participant_id,
            device_id: p.device_id,
            participant_name: p.participant_name,
        })
        .collect();
    Ok(Json(PartyView {
        party_code: party.code,
        region: party.region,
        host,
        participants,
    }))
}

/// `DELETE /parties/{code}/participants/{device_id}`: 200.
#[utoipa::path(
    delete,
    path = "/parties/{code}/participants/{device_id}",
    operation_id = "leave_party",
    tag = "parties",
    params(
        ("code" = String, Path, min_length = 1, description = CODE),
        ("device_id" = String, Path, min_length = 1, max_length = 128,
         description = "The leaving device"),
    ),
    responses(
        (status = 200, description = "Left; the host may have changed", body = PartyLeft),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "leave_party",
    skip_all,
    fields(route = "/parties/{code}/participants/{device_id}")
)]
pub async fn leave<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<PartyLeft>, ApiError> {
    let Path((code, device_id)) =
        path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    if device_id.len() > parties::MAX_DEVICE_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "device_id must be at most {} bytes",
            parties::MAX_DEVICE_ID_BYTES
        )));
    }
    node.leave_party(code, device_id).await.map(Json)
}

/// `GET /parties/nearby?lat=&lng=&radius_km=&limit=`.
#[utoipa::path(
    get,
    path = "/parties/nearby",
    operation_id = "nearby_parties",
    tag = "parties",
    params(PointQuery, NearbyQuery),
    responses(
        (status = 200, description = "Open parties within the radius, nearest first",
         body = Vec<NearbyParty>),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "nearby_parties",
    skip_all,
    fields(route = "/parties/nearby")
)]
pub async fn nearby<N: NodeApi>(
    State(node): State<N>,
    query: Params,
) -> Result<Json<Vec<NearbyParty>>, ApiError> {
    let params = params(query)?;
    let (lat, lng) = coordinates(&params)?;
    let search = NearbySearch {
        lat,
        lng,
        radius_km: parties::parse_radius(params.get("radius_km").map(String::as_str))
            .map_err(bad)?,
        limit: parties::parse_nearby_limit(params.get("limit").map(String::as_str)).map_err(bad)?,
    };
    node.nearby_parties(search).await.map(Json)
}
