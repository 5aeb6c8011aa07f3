//! Parties (seed 000): a dispatcher that is a function of any node, and per-region party
//! managers.
//!
//! Each manager (`<region>/m<k>`) has a shard of its own ([`crate::layout`], decision 008),
//! placed on live nodes of its region, or of the nearest region with live nodes
//! (`placement::region_replica_sets`). The manager *is* that shard's owner: `GET
//! /managers/find` reports the owner's node, and the party and the manager's index of open
//! parties (for nearby search) change together in one replicated command, executed by that
//! shard's owner actor. A party code is nine random digits drawn until it hashes to its manager
//! (`ShardLayout::manager_for_key`), so the code alone routes to the manager's shard with no
//! broadcast. Parties therefore survive the loss of any one node like every other shard, stay
//! in their region while it has a live node, and move with their shard.

use futures_util::future::try_join_all;
use rand::Rng;
use serde::{Deserialize, Serialize};
use troupe_actors::parties::{self, CreateParty, JoinParty, Participant, Party};
use troupe_http::views::{ManagerView, NearbyParty, PartyCreated, PartyLeft, PartyMember};
use troupe_http::ApiError;

use crate::codec;
use crate::config::PartiesConfig;
use crate::ids::{NodeId, RegionName, ShardId};
use crate::layout::{Manager, ShardLayout};
use crate::node::Node;
use crate::placement::weight;
use crate::region::{by_distance, distance_km, Region};
use crate::routing::{call_owner, read_shard};
use crate::rpc::wire::Response;
use crate::shard::command::{Command, Decision, Outcome, Query, QueryAnswer};
use crate::shard::draft::Draft;
use crate::shard::{Op, StoreError, Tenant};

/// Codes drawn before giving up on finding a free one (a 9-digit space is never that full).
const CODE_ATTEMPTS: usize = 8;
/// Open parties read from one manager's index for a nearby search.
const INDEX_LIMIT: u32 = 10_000;

/// A manager's index entry for one open party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    code: String,
    region: String,
    lat: f64,
    lng: f64,
    participants: u32,
}

fn index_key(party: &Party) -> Vec<u8> {
    format!("{}/{}", party.manager, party.code).into_bytes()
}

fn index_op(party: &Party) -> Result<Op, StoreError> {
    let entry = IndexEntry {
        code: party.code.clone(),
        region: party.region.clone(),
        lat: party.lat,
        lng: party.lng,
        participants: party.participants.len() as u32,
    };
    Ok(Op {
        tenant: Tenant::PARTY_INDEX,
        key: index_key(party),
        value: Some(codec::encode(&entry)?),
    })
}

fn party_op(party: &Party) -> Result<Op, StoreError> {
    Ok(Op {
        tenant: Tenant::PARTIES,
        key: party.code.as_bytes().to_vec(),
        value: Some(codec::encode(party)?),
    })
}

fn load(store: &Draft, shard: ShardId, code: &str) -> Result<Option<Party>, StoreError> {
    match store.get(shard, Tenant::PARTIES, code.as_bytes())? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

fn unknown(code: &str) -> Decision {
    Decision::answer_only(Outcome::NotFound(parties::not_found_message(code)))
}

/// Opens a party unless its code is taken.
pub fn decide_create(store: &Draft, shard: ShardId, party: &Party) -> Result<Decision, StoreError> {
    if load(store, shard, &party.code)?.is_some() {
        return Ok(Decision::answer_only(Outcome::Conflict(format!(
            "party code {} is taken",
            party.code
        ))));
    }
    Ok(Decision {
        outcome: Outcome::Participant {
            party_code: party.code.clone(),
            participant_id: 0,
            existed: false,
        },
        ops: vec![party_op(party)?, index_op(party)?],
        follow_up: None,
    })
}

/// Adds a device to a party, or finds it there; a full party refuses a new device (409).
pub fn decide_join(
    store: &Draft,
    shard: ShardId,
    code: &str,
    device_id: &str,
    name: &str,
    config: &PartiesConfig,
) -> Result<Decision, StoreError> {
    let Some(mut party) = load(store, shard, code)? else {
        return Ok(unknown(code));
    };
    let (participant_id, existed) = match party.join(device_id, name, config.max_participants) {
        Ok(joined) => joined,
        Err(full) => {
            return Ok(Decision::answer_only(Outcome::Conflict(full.message(code))));
        }
    };
    let outcome = Outcome::Participant {
        party_code: code.to_owned(),
        participant_id,
        existed,
    };
    if existed {
        return Ok(Decision::answer_only(outcome));
    }
    Ok(Decision {
        outcome,
        ops: vec![party_op(&party)?, index_op(&party)?],
        follow_up: None,
    })
}

/// Removes a device; the party (and its index entry) goes with its last participant.
pub fn decide_leave(
    store: &Draft,
    shard: ShardId,
    code: &str,
    device_id: &str,
) -> Result<Decision, StoreError> {
    let Some(mut party) = load(store, shard, code)? else {
        return Ok(unknown(code));
    };
    let Some(participant_id) = party.leave(device_id) else {
        let shown: String = device_id.chars().take(64).collect();
        return Ok(Decision::answer_only(Outcome::NotFound(format!(
            "device {shown} is not in party {code}"
        ))));
    };
    let ops = if party.participants.is_empty() {
        vec![
            Op {
                tenant: Tenant::PARTIES,
                key: code.as_bytes().to_vec(),
                value: None,
            },
            Op {
                tenant: Tenant::PARTY_INDEX,
                key: index_key(&party),
                value: None,
            },
        ]
    } else {
        vec![party_op(&party)?, index_op(&party)?]
    };
    Ok(Decision {
        outcome: Outcome::Left {
            party_code: code.to_owned(),
            participant_id,
            host: party.host(),
        },
        ops,
        follow_up: None,
    })
}

fn closest_region(node: &Node, lat: f64, lng: f64) -> Result<&Region, ApiError> {
    by_distance(&node.inner.cluster.regions, lat, lng)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("the region table is empty".into()))
}

/// Picks one of `region`'s managers for `key` (spreads parties and clients over them).
fn pick<'a>(node: &'a Node, region: &RegionName, key: &str) -> Result<&'a Manager, ApiError> {
    node.inner
        .layout
        .managers_of(region)
        .iter()
        .max_by_key(|m| weight(key, &NodeId::new(m.id.as_str())))
        .ok_or_else(|| ApiError::Internal(format!("region {region} has no manager")))
}

/// `GET /managers/find`: the manager of the closest region for this point, and the node that
/// owns its shard (where its parties are).
pub fn find(node: &Node, lat: f64, lng: f64) -> Result<ManagerView, ApiError> {
    let region = closest_region(node, lat, lng)?;
    let manager = pick(node, &region.name, &format!("{lat:.4},{lng:.4}"))?;
    let host = node
        .topology()
        .owner(manager.shard)
        .ok_or_else(|| ApiError::Unavailable {
            message: "no live node can host this region's manager".into(),
            retry_after: std::time::Duration::from_secs(1),
        })?
        .http_addr
        .to_string();
    Ok(ManagerView {
        hostname: host,
        region: region.name.to_string(),
        manager: manager.id.clone(),
    })
}

/// Nine random digits that hash to `manager` (about one draw per manager in the layout).
fn random_code_for(layout: &ShardLayout, manager: &Manager) -> String {
    loop {
        let code =
            crate::random::with(|rng| rng.random_range(100_000_000u32..=999_999_999)).to_string();
        if layout.manager_for_key(&code).map(|m| m.shard) == Some(manager.shard) {
            return code;
        }
    }
}

/// The shard of the manager a party code belongs to.
fn code_shard(node: &Node, code: &str) -> Result<ShardId, ApiError> {
    node.inner
        .layout
        .manager_for_key(code)
        .map(|m| m.shard)
        .ok_or_else(|| ApiError::Internal("the cluster has no party manager".into()))
}

/// `POST /parties`.
pub async fn create(node: &Node, request: CreateParty) -> Result<PartyCreated, ApiError> {
    let region = match request.location {
        Some((lat, lng)) => closest_region(node, lat, lng)?.clone(),
        None => node
            .inner
            .cluster
            .region(&node.inner.region)
            .cloned()
            .ok_or_else(|| ApiError::Internal("this node's region is not in the table".into()))?,
    };
    let at = request.location.unwrap_or((region.lat, region.lng));
    let layout = &node.inner.layout;
    let manager = pick(node, &region.name, &request.device_id)?;
    let shard = manager.shard;
    let host = Participant {
        participant_id: 0,
        device_id: request.device_id,
        participant_name: request.participant_name,
    };
    for _ in 0..CODE_ATTEMPTS {
        let code = random_code_for(layout, manager);
        let party = Party::new(
            code.clone(),
            region.name.to_string(),
            manager.id.clone(),
            at,
            host.clone(),
        );
        let command = Command::CreateParty(party);
        match call_owner(node, shard, command).await? {
            Response::Outcome(Outcome::Participant { .. }) => {
                return Ok(PartyCreated {
                    party_code: code,
                    participant_id: 0,
                    region: region.name.to_string(),
                })
            }
            Response::Outcome(Outcome::Conflict(_)) => continue,
            other => return Err(unexpected(&other)),
        }
    }
    Err(ApiError::Internal(
        "could not find a free party code".into(),
    ))
}

fn unexpected(answer: &Response) -> ApiError {
    ApiError::Internal(format!(
        "unexpected answer from the party's owner: {answer:?}"
    ))
}

async fn party_command(node: &Node, code: &str, command: Command) -> Result<Outcome, ApiError> {
    if !parties::is_code(code) {
        return Err(ApiError::NotFound(parties::not_found_message(code)));
    }
    let shard = code_shard(node, code)?;
    match call_owner(node, shard, command).await? {
        Response::Outcome(Outcome::NotFound(message)) => Err(ApiError::NotFound(message)),
        Response::Outcome(Outcome::Conflict(message)) => Err(ApiError::Conflict(message)),
        Response::Outcome(outcome) => Ok(outcome),
        other => Err(unexpected(&other)),
    }
}

/// `POST /parties/{code}/participants`: `(created, answer)`.
pub async fn join(
    node: &Node,
    code: String,
    request: JoinParty,
) -> Result<(bool, PartyMember), ApiError> {
    let command = Command::JoinParty {
        code: code.clone(),
        device_id: request.device_id,
        name: request.participant_name,
    };
    match party_command(node, &code, command).await? {
        Outcome::Participant {
            party_code,
            participant_id,
            existed,
        } => Ok((
            !existed,
            PartyMember {
                party_code,
                participant_id,
            },
        )),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// `DELETE /parties/{code}/participants/{device_id}`.
pub async fn leave(node: &Node, code: String, device_id: String) -> Result<PartyLeft, ApiError> {
    let command = Command::LeaveParty {
        code: code.clone(),
        device_id,
    };
    match party_command(node, &code, command).await? {
        Outcome::Left {
            party_code,
            participant_id,
            host,
        } => Ok(PartyLeft {
            party_code,
            participant_id,
            host,
            closed: host.is_none(),
        }),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// `GET /parties/{code}/participants`.
pub async fn get(node: &Node, code: String) -> Result<Party, ApiError> {
    if !parties::is_code(&code) {
        return Err(ApiError::NotFound(parties::not_found_message(&code)));
    }
    let query = Query::Get {
        tenant: Tenant::PARTIES,
        key: code.as_bytes().to_vec(),
    };
    match read_shard(node, code_shard(node, &code)?, query).await? {
        QueryAnswer::Value(Some(bytes)) => codec::decode(&bytes)
            .map_err(|e| ApiError::Internal(format!("stored party cannot be read: {e}"))),
        QueryAnswer::Value(None) => Err(ApiError::NotFound(parties::not_found_message(&code))),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}

/// Regions whose parties may lie within `radius_km` of the point: a party belongs to the
/// region closest to it, so its region's centre is at most `2 × radius + d0` away, where `d0`
/// is the distance from the point to its own closest region.
fn touched_regions(regions: &[Region], lat: f64, lng: f64, radius_km: f64) -> Vec<&Region> {
    let ordered = by_distance(regions, lat, lng);
    let Some(nearest) = ordered.first() else {
        return Vec::new();
    };
    let d0 = distance_km(lat, lng, nearest.lat, nearest.lng);
    ordered
        .into_iter()
        .filter(|r| distance_km(lat, lng, r.lat, r.lng) <= 2.0 * radius_km + d0)
        .collect()
}

/// `GET /parties/nearby`: open parties within the radius, nearest first.
pub async fn nearby(
    node: &Node,
    lat: f64,
    lng: f64,
    radius_km: f64,
) -> Result<Vec<NearbyParty>, ApiError> {
    let regions = touched_regions(&node.inner.cluster.regions, lat, lng, radius_km);
    let managers = regions
        .iter()
        .flat_map(|r| node.inner.layout.managers_of(&r.name));
    let lists = try_join_all(managers.map(|manager| async move {
        let query = Query::Prefix {
            tenant: Tenant::PARTY_INDEX,
            prefix: format!("{}/", manager.id).into_bytes(),
            limit: INDEX_LIMIT,
        };
        match read_shard(node, manager.shard, query).await? {
            QueryAnswer::Items(items) => Ok(items),
            other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        }
    }))
    .await?;
    let mut found = Vec::new();
    for (_, value) in lists.into_iter().flatten() {
        let entry: IndexEntry = codec::decode(&value)
            .map_err(|e| ApiError::Internal(format!("stored index cannot be read: {e}")))?;
        let distance = distance_km(lat, lng, entry.lat, entry.lng);
        if distance <= radius_km {
            found.push(NearbyParty {
                party_code: entry.code,
                region: entry.region,
                lat: entry.lat,
                lng: entry.lng,
                distance_km: distance,
                participants: entry.participants,
            });
        }
    }
    found.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<Region> {
        [
            ("dublin", 53.35, -6.26),
            ("london", 51.51, -0.13),
            ("tokyo", 35.41, 139.42),
        ]
        .into_iter()
        .map(|(name, lat, lng)| Region {
            name: RegionName::new(name),
            lat,
            lng,
            managers: None,
        })
        .collect()
    }

    /// The start-up check of `parties.max_participants` (decision 017) relies on this bound.
    #[test]
    fn a_join_into_a_party_of_the_largest_participants_stays_within_the_change_bound() {
        let region = "r".repeat(40);
        let participant = |i: u32| Participant {
            participant_id: i,
            device_id: format!("{i:0>width$}", width = parties::MAX_DEVICE_ID_BYTES),
            participant_name: "\u{1F600}".repeat(parties::MAX_NAME_CHARS),
        };
        for count in [1, 2, 17, 300] {
            let mut party = Party::new(
                "123456789".into(),
                region.clone(),
                format!("{region}/m999"),
                (-89.999_999, -179.999_999),
                participant(u32::MAX - 1_000),
            );
            party.next_id = u32::MAX - 999;
            for i in 1..count {
                let device = participant(i).device_id;
                party
                    .join(&device, &participant(i).participant_name, count)
                    .expect("room");
            }
            assert_eq!(party.participants.len(), count as usize);
            let change: usize = [party_op(&party), index_op(&party)]
                .into_iter()
                .map(|op| op.expect("encodes").bytes())
                .sum();
            let bound = parties::max_join_change_bytes(count, region.len());
            assert!(change <= bound, "{count} participants: {change} > {bound}");
        }
    }

    #[test]
    fn a_search_near_a_border_touches_both_regions_but_not_far_ones() {
        let table = table();
        // Between Dublin and London, 250 km radius.
        let touched: Vec<String> = touched_regions(&table, 52.4, -3.2, 250.0)
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(touched, ["dublin", "london"]);
        let small: Vec<String> = touched_regions(&table, 53.35, -6.26, 1.0)
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(small, ["dublin"]);
    }

    #[test]
    fn codes_are_nine_digits_that_hash_to_their_manager() {
        let layout = ShardLayout::new(64, &table(), 2);
        for manager in layout.managers() {
            for _ in 0..10 {
                let code = random_code_for(&layout, manager);
                assert!(parties::is_code(&code), "{code}");
                assert_eq!(layout.manager_for_key(&code), Some(manager));
            }
        }
    }
}
