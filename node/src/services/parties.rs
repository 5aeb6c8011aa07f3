//! Parties: a dispatcher that is a function of any node, and per-region party managers.
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
use troupe_actors::parties::{self, CreateParty, JoinParty, NearbySearch, Participant, Party};
use troupe_http::views::{ManagerView, NearbyParty, PartyCreated, PartyLeft, PartyMember};
use troupe_http::ApiError;

use crate::codec;
use crate::config::PartiesConfig;
use crate::ids::{NodeId, RegionName, ShardId};
use crate::layout::{Manager, ShardLayout};
use crate::node::Node;
use crate::placement::weight;
use crate::region::{by_distance, distance_km, Region};
use crate::routing::read_shard;
use crate::services::machine::{self, Decision, Outcome, Service};
use crate::shard::draft::Draft;
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::store::KeyValue;
use crate::shard::{MachineId, Op, StoreError, Tenant};

/// The key space of parties, by code: part of every stored party's key, so never to change.
pub const TENANT: Tenant = Tenant(6);
/// The key space of each manager's open parties, by `manager/code`, for nearby search.
pub const INDEX_TENANT: Tenant = Tenant(7);

/// Codes drawn before giving up on finding a free one (a 9-digit space is never that full).
const CODE_ATTEMPTS: usize = 8;
/// Index entries read from a manager's shard per call of a nearby search, which reads the whole
/// index page by page (each page is one bounded answer).
const INDEX_PAGE: u32 = 2_000;

/// A manager's index entry for one open party.
/// Public so that `troupe-fuzz` decodes it as this service does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The party's code.
    pub code: String,
    /// The party's region.
    pub region: String,
    /// Latitude of the party.
    pub lat: f64,
    /// Longitude of the party.
    pub lng: f64,
    /// How many devices it holds.
    pub participants: u32,
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
        tenant: INDEX_TENANT,
        key: index_key(party),
        value: Some(codec::encode(&entry)?),
    })
}

fn party_op(party: &Party) -> Result<Op, StoreError> {
    Ok(Op {
        tenant: TENANT,
        key: party.code.as_bytes().to_vec(),
        value: Some(codec::encode(party)?),
    })
}

fn load(store: &Draft, shard: ShardId, code: &str) -> Result<Option<Party>, StoreError> {
    match store.get(shard, TENANT, code.as_bytes())? {
        Some(bytes) => Ok(Some(codec::decode(&bytes, codec::Limit::Stored)?)),
        None => Ok(None),
    }
}

/// The parties service's state machine (each manager is its shard's owner).
pub struct Parties {
    /// The party size bound.
    pub config: PartiesConfig,
}

/// What the parties service asks a manager's shard owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PartyCommand {
    /// Open a party (its code is new and hashes to its manager's shard).
    Create(Party),
    /// Add a device to a party (or find it there).
    Join {
        /// The party.
        code: String,
        /// The device.
        device_id: String,
        /// Its name.
        name: String,
    },
    /// Remove a device from a party; the party closes with its last participant.
    Leave {
        /// The party.
        code: String,
        /// The device.
        device_id: String,
    },
}

impl Service for Parties {
    const MACHINE: MachineId = MachineId(6);
    const TENANTS: &'static [Tenant] = &[TENANT, INDEX_TENANT];
    type Command = PartyCommand;

    fn decide(
        &self,
        command: PartyCommand,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError> {
        match command {
            PartyCommand::Create(party) => decide_create(state, shard, &party),
            PartyCommand::Join {
                code,
                device_id,
                name,
            } => decide_join(state, shard, &code, &device_id, &name, &self.config),
            PartyCommand::Leave { code, device_id } => {
                decide_leave(state, shard, &code, &device_id)
            }
        }
    }

    fn adds_data(command: &PartyCommand) -> bool {
        !matches!(command, PartyCommand::Leave { .. })
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
        timer: None,
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
        timer: None,
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
                tenant: TENANT,
                key: code.as_bytes().to_vec(),
                value: None,
            },
            Op {
                tenant: INDEX_TENANT,
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
        timer: None,
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
        let command = PartyCommand::Create(party);
        match machine::call::<Parties>(node, shard, &command).await? {
            Outcome::Participant { .. } => {
                return Ok(PartyCreated {
                    party_code: code,
                    participant_id: 0,
                    region: region.name.to_string(),
                })
            }
            Outcome::Conflict(_) => continue,
            other => return Err(unexpected(&other)),
        }
    }
    Err(ApiError::Internal(
        "could not find a free party code".into(),
    ))
}

fn unexpected(outcome: &Outcome) -> ApiError {
    ApiError::Internal(format!(
        "unexpected outcome from the party's owner: {outcome:?}"
    ))
}

async fn party_command(
    node: &Node,
    code: &str,
    command: PartyCommand,
) -> Result<Outcome, ApiError> {
    if !parties::is_code(code) {
        return Err(ApiError::NotFound(parties::not_found_message(code)));
    }
    let shard = code_shard(node, code)?;
    match machine::call::<Parties>(node, shard, &command).await? {
        Outcome::NotFound(message) => Err(ApiError::NotFound(message)),
        Outcome::Conflict(message) => Err(ApiError::Conflict(message)),
        outcome => Ok(outcome),
    }
}

/// `POST /parties/{code}/participants`: `(created, answer)`.
pub async fn join(
    node: &Node,
    code: String,
    request: JoinParty,
) -> Result<(bool, PartyMember), ApiError> {
    let command = PartyCommand::Join {
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
    let command = PartyCommand::Leave {
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
        tenant: TENANT,
        key: code.as_bytes().to_vec(),
    };
    let shard = code_shard(node, &code)?;
    match read_shard(node, shard, query).await? {
        QueryAnswer::Value(Some(bytes)) => {
            codec::decode(&bytes, codec::Limit::Stored).map_err(|e| {
                ApiError::Internal(format!(
                    "stored party {code} in shard {shard} cannot be read: {e}"
                ))
            })
        }
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

/// `GET /parties/nearby`: the nearest `limit` open parties within the radius, nearest first,
/// from every manager of every region the radius touches.
pub async fn nearby(node: &Node, search: NearbySearch) -> Result<Vec<NearbyParty>, ApiError> {
    let regions = touched_regions(
        &node.inner.cluster.regions,
        search.lat,
        search.lng,
        search.radius_km,
    );
    let managers = regions
        .iter()
        .flat_map(|r| node.inner.layout.managers_of(&r.name));
    let lists = try_join_all(managers.map(|manager| async move {
        let read_page = |after: Vec<u8>| async move {
            let query = Query::Scan {
                tenant: INDEX_TENANT,
                after: Some(after),
                limit: INDEX_PAGE,
            };
            match read_shard(node, manager.shard, query).await? {
                QueryAnswer::Items(items) => Ok(items),
                other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
            }
        };
        nearest_in_index(&manager.id, INDEX_PAGE, read_page, &search).await
    }))
    .await?;
    let mut found = lists.into_iter().flatten().collect();
    keep_nearest(&mut found, search.limit);
    Ok(found)
}

/// The nearest `search.limit` parties within the radius among one manager's index entries,
/// read in key order `page` at a time from after the manager's key prefix to its end: every
/// open party is considered, however many the manager has, and at most one page plus the
/// limit are held at once.
async fn nearest_in_index<F, Fut>(
    manager: &str,
    page: u32,
    mut read_page: F,
    search: &NearbySearch,
) -> Result<Vec<NearbyParty>, ApiError>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<KeyValue>, ApiError>>,
{
    let prefix = format!("{manager}/").into_bytes();
    let mut after = prefix.clone();
    let mut found = Vec::new();
    loop {
        let items = read_page(after.clone()).await?;
        let mut done = items.len() < page as usize;
        for (key, value) in items {
            if !key.starts_with(&prefix) {
                // Past this manager's entries (keys are in order).
                done = true;
                break;
            }
            let entry: IndexEntry = codec::decode(&value, codec::Limit::Stored).map_err(|e| {
                let key = String::from_utf8_lossy(&key);
                ApiError::Internal(format!(
                    "stored index entry {key} of manager {manager} cannot be read: {e}"
                ))
            })?;
            found.extend(entry.within(search));
            after = key;
        }
        keep_nearest(&mut found, search.limit);
        if done {
            return Ok(found);
        }
    }
}

/// Sorts nearest first and drops all but the first `limit`.
fn keep_nearest(found: &mut Vec<NearbyParty>, limit: usize) {
    found.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
    found.truncate(limit);
}

impl IndexEntry {
    /// This party as a search result, if it lies within the search's radius.
    fn within(self, search: &NearbySearch) -> Option<NearbyParty> {
        let distance = distance_km(search.lat, search.lng, self.lat, self.lng);
        (distance <= search.radius_km).then_some(NearbyParty {
            party_code: self.code,
            region: self.region,
            lat: self.lat,
            lng: self.lng,
            distance_km: distance,
            participants: self.participants,
        })
    }
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

    /// An index shared by managers m0, m1 and m2 (as a tenant holds it, in key order) that
    /// answers reads a page at a time, counting them.
    struct PagedIndex {
        entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        reads: std::cell::Cell<usize>,
    }

    impl PagedIndex {
        fn new(parties_of_m1: u32) -> Self {
            let mut entries = std::collections::BTreeMap::new();
            for (manager, count) in [("m0", 3), ("m1", parties_of_m1), ("m2", 3)] {
                for i in 0..count {
                    let code = format!("{}", 100_000_000 + i);
                    // Party i of m1 lies i tenths of a degree north of (0, 0).
                    let entry = IndexEntry {
                        code: code.clone(),
                        region: manager.into(),
                        lat: f64::from(i) / 10.0,
                        lng: 0.0,
                        participants: 1,
                    };
                    let key = format!("{manager}/{code}").into_bytes();
                    entries.insert(key, codec::encode(&entry).expect("encode"));
                }
            }
            Self {
                entries,
                reads: Default::default(),
            }
        }

        async fn page_after(&self, after: Vec<u8>, page: u32) -> Result<Vec<KeyValue>, ApiError> {
            self.reads.set(self.reads.get() + 1);
            let after = std::ops::Bound::Excluded(after);
            Ok(self
                .entries
                .range((after, std::ops::Bound::Unbounded))
                .take(page as usize)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    fn search(radius_km: f64, limit: usize) -> NearbySearch {
        NearbySearch {
            lat: 0.0,
            lng: 0.0,
            radius_km,
            limit,
        }
    }

    async fn nearest(index: &PagedIndex, page: u32, search: NearbySearch) -> Vec<String> {
        let read = |after| index.page_after(after, page);
        nearest_in_index("m1", page, read, &search)
            .await
            .expect("search")
            .into_iter()
            .map(|p| p.party_code)
            .collect()
    }

    #[tokio::test]
    async fn a_nearby_search_reads_every_page_of_the_managers_index_and_nothing_of_the_others() {
        // 25 parties, 3 to a page: a search that stopped after any one page would miss some.
        let index = PagedIndex::new(25);
        let all = nearest(&index, 3, search(1000.0, 100)).await;
        let expected: Vec<String> = (0..25).map(|i| format!("{}", 100_000_000 + i)).collect();
        assert_eq!(
            all, expected,
            "every party of m1, nearest first, none of m0 or m2"
        );
        assert_eq!(
            index.reads.get(),
            9,
            "25 entries a page of 3 at a time, then m2's"
        );
    }

    #[tokio::test]
    async fn a_nearby_search_keeps_only_the_nearest_within_the_radius() {
        let index = PagedIndex::new(25);
        // A tenth of a degree of latitude is about 11.1 km.
        let within_60_km = nearest(&index, 4, search(60.0, 100)).await;
        assert_eq!(within_60_km.len(), 6, "{within_60_km:?}");
        let nearest_two = nearest(&index, 4, search(1000.0, 2)).await;
        assert_eq!(nearest_two, ["100000000", "100000001"]);
    }

    #[tokio::test]
    async fn a_nearby_search_of_a_manager_with_no_parties_reads_one_page() {
        let index = PagedIndex::new(0);
        assert!(nearest(&index, 3, search(1000.0, 10)).await.is_empty());
        assert_eq!(index.reads.get(), 1);
    }
}
