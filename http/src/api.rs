//! What the edge needs from a node.

use std::future::Future;

use troupe_actors::integers::Average;
use troupe_actors::jobs::Job;
use troupe_actors::parties::{CreateParty, JoinParty, NearbySearch, Party};
use troupe_actors::sessions::{SessionReply, SessionUser};
use troupe_actors::users::{User, UserId, UserPatch};

use crate::error::ApiError;
use crate::views::{
    ClusterView, DashboardView, ListFrom, Located, ManagerView, NearbyParty, PartyCreated,
    PartyLeft, PartyMember, ShardCopyView, UserPage,
};

/// Whether the node should receive traffic, with the reason when not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Joined (and served its first shards), in placement, storage not near full: send me
    /// traffic. Shards taken over later do not make a node unready.
    Ready,
    /// Not yet (or no longer); the reason is shown to the caller of `/readyz`.
    NotReady(String),
}

/// The node as seen from the HTTP edge. Implemented by the node crate; the routes are generic
/// over it so the edge has no dependency on gossip, placement or the network.
pub trait NodeApi: Clone + Send + Sync + 'static {
    /// For `/readyz`.
    fn readiness(&self) -> Readiness;
    /// For `/cluster`.
    fn cluster_view(&self) -> ClusterView;
    /// For `/cluster/shards`: this node's copies of shards. Digests walk every entity, so the
    /// node computes them off the async workers.
    fn shard_copies(&self) -> impl Future<Output = Result<Vec<ShardCopyView>, ApiError>> + Send;
    /// For `/ui/data`: the dashboard's view, with every live member's own report (request
    /// statistics, copies, transit, events), gathered by this node so the page works through
    /// any node (see [`crate::dashboard`]).
    fn dashboard(&self) -> impl Future<Output = Result<DashboardView, ApiError>> + Send;
    /// For `/cluster/locate`: served by the key's owner, forwarded there if needed.
    fn locate(
        &self,
        kind: String,
        key: String,
    ) -> impl Future<Output = Result<Located, ApiError>> + Send;
    /// For `POST /api/user`: stores a new user (id already chosen by the edge) on the shard that
    /// owns its id; [`ApiError::Conflict`] when the id is taken.
    fn create_user(&self, user: User) -> impl Future<Output = Result<User, ApiError>> + Send;
    /// For `GET /api/user/{id}`: the stored user; [`ApiError::NotFound`] when there is none.
    fn get_user(&self, id: UserId) -> impl Future<Output = Result<User, ApiError>> + Send;
    /// For `PUT /api/user`: merges the patch into the stored user (see
    /// [`UserPatch::apply`]) and returns the result; [`ApiError::NotFound`] when there is none.
    fn update_user(&self, patch: UserPatch) -> impl Future<Output = Result<User, ApiError>> + Send;
    /// For `DELETE /api/user/{id}`: removes the user; [`ApiError::NotFound`] when there is none.
    fn delete_user(&self, id: UserId) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// For `GET /api/user/count`: number of users in the whole cluster.
    fn count_users(&self) -> impl Future<Output = Result<u64, ApiError>> + Send;
    /// For `GET /api/user`: up to `limit` users from `from` in the cluster-wide listing order
    /// (by id), with the total and, when more follow, the last id of the page.
    fn list_users(
        &self,
        from: ListFrom,
        limit: u32,
    ) -> impl Future<Output = Result<UserPage, ApiError>> + Send;
    /// For `POST /add-session`: one more session for the user, applied by the owner of the
    /// user's shard so the cap is exact. A refusal at the cap is a reply
    /// ([`SessionOutcome::CapReached`](troupe_actors::sessions::SessionOutcome::CapReached),
    /// answered 409), not an error.
    fn add_session(
        &self,
        user: SessionUser,
    ) -> impl Future<Output = Result<SessionReply, ApiError>> + Send;
    /// For `POST /remove-session`: one session fewer for the user. A refusal at 0 is a reply
    /// ([`SessionOutcome::NoSessions`](troupe_actors::sessions::SessionOutcome::NoSessions),
    /// answered 409), not an error.
    fn remove_session(
        &self,
        user: SessionUser,
    ) -> impl Future<Output = Result<SessionReply, ApiError>> + Send;
    /// For `GET /sessions/{user_id}`: the user's active sessions, 0 for an unknown user.
    fn session_count(
        &self,
        user: SessionUser,
    ) -> impl Future<Output = Result<u32, ApiError>> + Send;
    /// For `POST /jobs`: creates and starts a job for the object (status `processing`,
    /// timestamp now); [`ApiError::BadRequest`] with
    /// [`dedup_message`](troupe_actors::jobs::dedup_message) when the object had a job created
    /// within the de-duplication window.
    fn create_job(&self, object_id: String) -> impl Future<Output = Result<Job, ApiError>> + Send;
    /// For `GET /jobs/{job_id}`: the job as it is now; [`ApiError::NotFound`] with
    /// [`not_found_message`](troupe_actors::jobs::not_found_message) when there is none.
    fn get_job(&self, job_id: String) -> impl Future<Output = Result<Job, ApiError>> + Send;
    /// For `GET /v1/integers`: the newest `limit` stored averages, newest first.
    fn integer_averages(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Average>, ApiError>> + Send;
    /// For `GET /managers/find`: the manager of the closest region and its node.
    fn find_manager(&self, lat: f64, lng: f64) -> Result<ManagerView, ApiError>;
    /// For `POST /parties`.
    fn create_party(
        &self,
        request: CreateParty,
    ) -> impl Future<Output = Result<PartyCreated, ApiError>> + Send;
    /// For `POST /parties/{code}/participants`: `true` when the device was added (201), `false`
    /// when it was already there (200).
    fn join_party(
        &self,
        code: String,
        request: JoinParty,
    ) -> impl Future<Output = Result<(bool, PartyMember), ApiError>> + Send;
    /// For `GET /parties/{code}/participants`.
    fn party(&self, code: String) -> impl Future<Output = Result<Party, ApiError>> + Send;
    /// For `DELETE /parties/{code}/participants/{device_id}`.
    fn leave_party(
        &self,
        code: String,
        device_id: String,
    ) -> impl Future<Output = Result<PartyLeft, ApiError>> + Send;
    /// For `GET /parties/nearby`: the nearest open parties within the radius, nearest first.
    fn nearby_parties(
        &self,
        search: NearbySearch,
    ) -> impl Future<Output = Result<Vec<NearbyParty>, ApiError>> + Send;
    /// For `/metrics`: every metric of the node (the edge's own included, registered through
    /// [`HttpMetrics::register`](crate::HttpMetrics::register)) in Prometheus text format.
    fn render_metrics(&self) -> String;
}
