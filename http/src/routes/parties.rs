//! The parties service's routes: the dispatcher (`/managers/find`) and the party manager API.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use troupe_actors::parties::{self, NearbySearch};

use super::users::{body_bytes, MaxBodyBytes};
use crate::api::NodeApi;
use crate::error::ApiError;
use crate::views::{ManagerView, NearbyParty, PartyCreated, PartyLeft, PartyMember};

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
#[tracing::instrument(
    level = "debug",
    name = "party_participants",
    skip_all,
    fields(route = "/parties/{code}/participants")
)]
pub async fn participants<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(code) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let party = node.party(code).await?;
    let host = party.host();
    let list: Vec<Value> = party
        .participants
        .iter()
        .map(|p| {
            json!({
                "participant_id": p.participant_id,
                "device_id": p.device_id,
                "participant_name": p.participant_name,
                "host": Some(p.participant_id) == host,
            })
        })
        .collect();
    Ok(Json(json!({
        "party_code": party.code,
        "region": party.region,
        "host": host,
        "participants": list,
    })))
}

/// `DELETE /parties/{code}/participants/{device_id}`: 200.
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
