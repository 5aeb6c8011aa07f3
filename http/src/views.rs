//! JSON bodies of the admin routes and the results the node hands the user routes. These are
//! also what a forwarding hop carries back, so they derive `Deserialize` too.

use serde::{Deserialize, Serialize};
use troupe_actors::users::{User, UserId};
use utoipa::ToSchema;

/// `GET /cluster`: this node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    /// Cluster name.
    pub cluster: String,
    /// The node that answered.
    pub node: String,
    /// Every member this node knows of, live or dead, sorted by id.
    pub members: Vec<MemberView>,
    /// Number of shards, hash shards and party manager shards (fixed for the life of the
    /// cluster).
    pub shard_count: u32,
    /// Replication factor.
    pub replication_factor: usize,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardView>,
    /// Shards this node is moving right now (empty when placement and copies agree).
    #[serde(default)]
    pub transit: Vec<TransitView>,
    /// Whether this node holds the owner lease: a majority of the members confirmed within the
    /// lease that they reach it. Without it the node answers nothing from its copies and takes
    /// no shard over (docs/ARCHITECTURE.md, "Lease").
    #[serde(default)]
    pub lease_held: bool,
    /// Sizes of this node's gossip tables: they stay bounded whatever arrives on the gossip
    /// port.
    #[serde(default)]
    pub gossip_tables: GossipTablesView,
}

/// Sizes of a node's gossip tables, in [`ClusterView`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GossipTablesView {
    /// Node states chitchat holds (members, refused nodes, dead ones not yet forgotten).
    pub nodes: usize,
    /// Nodes refused from the membership and listed.
    pub refused: usize,
    /// Nodes whose heartbeats are tracked for leases.
    pub heard: usize,
}

/// A shard in transit at the node that answered, in [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitView {
    /// Shard number.
    pub shard: u32,
    /// `taking-over` (placement made this node the owner; it is sealing the shard and bringing
    /// copies up to date), `installing` (this node's copy is being filled from a snapshot),
    /// `pre-copying` / `pre-copied` (this node is joining; the shard's owner is to copy / has
    /// copied it here before this node becomes ready) or `replicas-waiting` (this node serves
    /// the shard; new replicas wait for placement to hold still).
    pub state: String,
    /// The epoch this node's copy follows, as `term@owner`.
    pub epoch: Option<String>,
    /// Changes applied to this node's copy so far: catch-up progress.
    pub applied: u64,
    /// For `replicas-waiting`: the nodes waiting to become replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// For `replicas-waiting`: milliseconds until they are brought in, unless placement
    /// changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_in_ms: Option<u64>,
}

/// One member in [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// Node id.
    pub node_id: String,
    /// Incarnation; a restarted node has a higher one.
    pub generation: u64,
    /// Region from the region table.
    pub region: String,
    /// `joining`, `ready` or `leaving` as the node published it.
    pub status: String,
    /// Whether the failure detector considers the node alive.
    pub live: bool,
    /// Advertised HTTP address.
    pub http_addr: String,
    /// Advertised RPC address.
    pub rpc_addr: String,
    /// Gossip address.
    pub gossip_addr: String,
}

/// One shard's replica set in [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardView {
    /// Shard number.
    pub shard: u32,
    /// Owner, absent when no node is ready.
    pub owner: Option<String>,
    /// Other members of the replica set, in order.
    pub replicas: Vec<String>,
    /// For a party manager's shard, the manager (`<region>/m<k>`): its parties live here,
    /// placed on nodes of its region. Absent for hash shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

/// `GET /cluster/locate/{kind}/{key}`: where a key lives, filled in by the node that served it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Located {
    /// Entity kind, as asked.
    pub kind: String,
    /// Entity key, as asked.
    pub key: String,
    /// Shard of the key.
    pub shard: u32,
    /// Owner of the shard in the serving node's view.
    pub owner: String,
    /// Replicas of the shard (owner excluded), in order.
    pub replicas: Vec<String>,
    /// The node that actually handled the request: equals `owner` when forwarding worked.
    pub served_by: String,
}

/// One page of `GET /api/user`, as the node gathers it across shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserPage {
    /// The users of the page, in the node's listing order.
    pub users: Vec<User>,
    /// Number of users in the cluster, so clients know when to stop paging.
    pub total: u64,
    /// The id of the page's last user when more users follow it: the `after` of the next page.
    pub next_after: Option<UserId>,
}

/// Where a page of `GET /api/user` starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListFrom {
    /// After skipping this many users in id order (refused above a bound at the edge: the skip
    /// costs one step per user).
    Offset(u64),
    /// Right after this id (need not exist): a range read in every shard, O(limit).
    After(UserId),
}

/// `GET /cluster/shards`: this node's copy of one shard (only shards it holds data or an epoch
/// for), to compare copies across nodes and watch catch-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardCopyView {
    /// Shard number.
    pub shard: u32,
    /// `owner`, `replica` or `none` in this node's current placement.
    pub role: String,
    /// The epoch this copy follows, as `term@owner`.
    pub epoch: Option<String>,
    /// Whether this node serves the shard as its owner right now.
    pub serving: bool,
    /// Whether the current owner brought this copy up to date since this process started.
    pub synced: bool,
    /// Last applied change.
    pub applied: u64,
    /// A snapshot install is in progress.
    pub installing: bool,
    /// Entities in the copy.
    pub entities: u64,
    /// Hash of the copy's contents (equal on two nodes means equal contents), hex.
    pub digest: String,
}

/// `GET /managers/find`: the party manager for a point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagerView {
    /// Advertised HTTP address of the node hosting the manager.
    pub hostname: String,
    /// The region closest to the point.
    pub region: String,
    /// The manager's name (`<region>/m<k>`).
    pub manager: String,
}

/// `POST /parties` (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartyCreated {
    /// Nine digits.
    pub party_code: String,
    /// The creator's id: 0.
    pub participant_id: u32,
    /// The region the party was dispatched to.
    pub region: String,
}

/// `POST /parties/{code}/participants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartyMember {
    /// The party.
    pub party_code: String,
    /// The participant.
    pub participant_id: u32,
}

/// `DELETE /parties/{code}/participants/{device_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartyLeft {
    /// The party.
    pub party_code: String,
    /// Who left.
    pub participant_id: u32,
    /// The host now (absent once the party closed).
    pub host: Option<u32>,
    /// Whether the party closed (its last participant left).
    pub closed: bool,
}

/// One entry of `GET /parties/nearby`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NearbyParty {
    /// The party.
    pub party_code: String,
    /// Its region.
    pub region: String,
    /// Location.
    pub lat: f64,
    /// Location.
    pub lng: f64,
    /// Distance from the searched point.
    pub distance_km: f64,
    /// Participants now.
    pub participants: u32,
}

/// `GET /ui/data`: everything the dashboard (`GET /ui`) shows, gathered by the node that serves
/// the page from its own view and every live member's [`NodeReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DashboardView {
    /// The serving node's view of the cluster: members by region, status, generation and
    /// liveness, and the shard table (owner and replicas).
    pub cluster: ClusterView,
    /// When the view was gathered, Unix milliseconds on the serving node's clock.
    pub at_ms: u64,
    /// One entry per member, in member order: its own report, or why there is none.
    pub nodes: Vec<NodeEntry>,
    /// Every shard, in shard order: where its serving owner stands, and the nodes moving it.
    pub shards: Vec<ShardState>,
    /// The party managers, by region then name: each is a shard of its own.
    pub managers: Vec<ManagerRow>,
    /// Recent events, newest first: membership as the serving node saw it, ownership as each
    /// node that took a shard over or handed one off reported it.
    pub events: Vec<EventView>,
}

/// One member in [`DashboardView`]: its report, or why the serving node has none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeEntry {
    /// Node id.
    pub node: String,
    /// What the node reported about itself.
    pub report: Option<NodeReport>,
    /// Why there is no report (the node is dead, or did not answer in time).
    pub error: Option<String>,
}

/// What one node reports about itself: its request statistics (from its own metrics), the
/// positions of its copies, its shards in transit and its recent events. Nodes exchange it as
/// JSON, so the dashboard can change without changing the inter-node protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeReport {
    /// The reporting node.
    pub node: String,
    /// When it reported, Unix milliseconds on its clock.
    pub at_ms: u64,
    /// Its HTTP requests over the last few seconds.
    pub requests: RequestStats,
    /// The shards it holds a copy of (those with an epoch), in shard order.
    #[serde(default)]
    pub copies: Vec<CopyView>,
    /// The shards it is moving right now (as in [`ClusterView::transit`]).
    #[serde(default)]
    pub transit: Vec<TransitView>,
    /// Its recent events, oldest first.
    #[serde(default)]
    pub events: Vec<EventView>,
}

/// One copy of a shard in a [`NodeReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopyView {
    /// Shard number.
    pub shard: u32,
    /// The epoch the copy follows, as `term@owner`.
    pub epoch: Option<String>,
    /// Last applied change.
    pub applied: u64,
    /// Whether the reporting node serves the shard as its owner.
    pub serving: bool,
}

/// A node's HTTP requests over a recent window, per route and in all, from its own request
/// metrics (`troupe_http_request_duration_seconds`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestStats {
    /// The window the rates and percentiles cover, in milliseconds.
    pub window_ms: u64,
    /// Every route but the dashboard's own (`/ui...`), together.
    pub total: RouteStats,
    /// Each route with requests in the window, busiest first.
    pub routes: Vec<RouteStats>,
}

/// Requests of one route (or of all) in [`RequestStats`]'s window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteStats {
    /// Route pattern, `unmatched`, or `all`.
    pub route: String,
    /// Requests answered in the window.
    pub requests: u64,
    /// Requests per second.
    pub per_second: f64,
    /// Median latency in milliseconds (within its histogram bucket), absent without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, absent without requests.
    pub p99_ms: Option<f64>,
    /// Requests answered with a 5xx status: the node failed them.
    pub errors: u64,
    /// Requests answered with a 4xx status: the client's mistakes (or a missing entity).
    pub client_errors: u64,
}

/// One membership or ownership event a node recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// When, Unix milliseconds on the recording node's clock.
    pub at_ms: u64,
    /// The node that recorded it.
    pub node: String,
    /// `joined`, `restarted`, `ready`, `leaving`, `died`, `alive` (membership) or `sealed`,
    /// `handed-off` (ownership).
    pub kind: String,
    /// The event in a sentence.
    pub text: String,
    /// For membership events (and only for them), the member it is about.
    #[serde(default)]
    pub member: Option<String>,
    /// For ownership events, the shard.
    #[serde(default)]
    pub shard: Option<u32>,
    /// For ownership events, the owner before (absent for a copy that followed no epoch).
    #[serde(default)]
    pub old_owner: Option<String>,
    /// For ownership events, the owner after.
    #[serde(default)]
    pub new_owner: Option<String>,
    /// For `sealed`, the new epoch, as `term@owner`.
    #[serde(default)]
    pub epoch: Option<String>,
}

/// One shard in [`DashboardView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardState {
    /// Shard number.
    pub shard: u32,
    /// The node serving it as owner, if one reported so.
    pub served_by: Option<String>,
    /// The epoch of that copy (or, while nobody serves it, of the placement owner's copy).
    pub epoch: Option<String>,
    /// The applied position of that copy.
    pub applied: Option<u64>,
    /// The nodes moving the shard right now, and how far each is.
    pub transit: Vec<TransitAt>,
}

/// A node moving a shard, in [`ShardState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitAt {
    /// The node.
    pub node: String,
    /// Its state, as in [`TransitView::state`].
    pub state: String,
    /// Its copy's applied position.
    pub applied: u64,
}

/// A party manager in [`DashboardView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagerRow {
    /// The manager's region.
    pub region: String,
    /// The manager (`<region>/m<k>`).
    pub manager: String,
    /// Its shard.
    pub shard: u32,
    /// The node hosting it (the shard's owner), absent when no node is ready.
    pub owner: Option<String>,
    /// Its replicas, in order.
    pub replicas: Vec<String>,
}
