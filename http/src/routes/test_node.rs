//! An in-memory [`NodeApi`] for the route tests, with the helpers that drive the router.
//!
//! It pins the edge's parsing, bodies and status mapping, nothing about shards or replication:
//! users are a map, session counters use the same [`sessions::add`] and [`sessions::remove`]
//! as the shard actor (cap [`MAX_SESSIONS`]), and jobs are de-duplicated by object id within
//! [`DEDUP_WINDOW_SECS`]. Services without route tests answer 500.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tower::ServiceExt;
use troupe_actors::integers::Average;
use troupe_actors::jobs::{self, Job, JobStatus};
use troupe_actors::parties::{CreateParty, JoinParty, NearbySearch, Party};
use troupe_actors::sessions::{self, SessionReply, SessionUser};
use troupe_actors::users::{self, User, UserId, UserPatch};

use crate::api::{NodeApi, Readiness};
use crate::error::ApiError;
use crate::metrics::HttpMetrics;
use crate::views::{
    ClusterView, DashboardView, ListFrom, Located, ManagerView, NearbyParty, NodeEntry, NodeReport,
    PartyCreated, PartyLeft, PartyMember, ShardCopyView, UserPage,
};

/// Body bound of the router under test.
pub(super) const LIMIT: usize = 64 * 1024;
/// Session cap per user.
pub(super) const MAX_SESSIONS: u32 = 3;
/// Jobs for the same object are refused this long after the previous one was created.
pub(super) const DEDUP_WINDOW_SECS: u64 = 300;

/// The in-memory node; clones share their state, like handles on one node.
#[derive(Clone, Default)]
pub(super) struct MemoryNode {
    users: Arc<Mutex<BTreeMap<UserId, User>>>,
    sessions: Arc<Mutex<HashMap<SessionUser, u32>>>,
    jobs: Arc<Mutex<JobStore>>,
    /// `count_users` waits for a read guard: a test holding the write guard keeps requests in
    /// progress for as long as it likes.
    pub(super) gate: Arc<tokio::sync::RwLock<()>>,
}

#[derive(Default)]
struct JobStore {
    /// By job id.
    jobs: HashMap<String, Job>,
    /// Each object's latest job: its id and when it was created.
    latest: HashMap<String, (String, Instant)>,
    /// Source of job ids.
    next: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("test node lock")
}

fn not_tested<T>() -> Result<T, ApiError> {
    Err(ApiError::Internal("not covered by the route tests".into()))
}

impl MemoryNode {
    /// The users, for assertions.
    pub(super) fn store(&self) -> MutexGuard<'_, BTreeMap<UserId, User>> {
        lock(&self.users)
    }

    fn change_session(
        &self,
        user: SessionUser,
        change: impl FnOnce(u32) -> (sessions::SessionOutcome, u32),
    ) -> SessionReply {
        let mut counts = lock(&self.sessions);
        let (outcome, active_sessions) = change(counts.get(&user).copied().unwrap_or(0));
        counts.insert(user.clone(), active_sessions);
        SessionReply {
            outcome,
            user_id: user,
            active_sessions,
            max_sessions: MAX_SESSIONS,
        }
    }
}

impl NodeApi for MemoryNode {
    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }

    fn cluster_view(&self) -> ClusterView {
        ClusterView {
            cluster: "test".into(),
            node: "n1".into(),
            members: Vec::new(),
            shard_count: 1,
            replication_factor: 1,
            shards: Vec::new(),
            transit: Vec::new(),
            lease_held: true,
            gossip_tables: Default::default(),
        }
    }

    async fn shard_copies(&self) -> Result<Vec<ShardCopyView>, ApiError> {
        Ok(Vec::new())
    }

    async fn dashboard(&self) -> Result<DashboardView, ApiError> {
        let report = NodeReport {
            node: "n1".into(),
            at_ms: 0,
            requests: crate::dashboard::RequestSampler::new().observe(&self.render_metrics()),
            copies: Vec::new(),
            transit: Vec::new(),
            events: Vec::new(),
        };
        let entry = NodeEntry {
            node: "n1".into(),
            report: Some(report),
            error: None,
        };
        Ok(crate::dashboard::assemble(
            self.cluster_view(),
            vec![entry],
            0,
        ))
    }

    async fn locate(&self, kind: String, key: String) -> Result<Located, ApiError> {
        Ok(Located {
            kind,
            key,
            shard: 0,
            owner: "n1".into(),
            replicas: Vec::new(),
            served_by: "n1".into(),
        })
    }

    async fn create_user(&self, user: User) -> Result<User, ApiError> {
        let mut store = self.store();
        if store.contains_key(&user.id) {
            return Err(ApiError::Conflict(users::conflict_message(&user.id)));
        }
        store.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<User, ApiError> {
        self.store()
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(users::not_found_message(id.as_str())))
    }

    async fn update_user(&self, patch: UserPatch) -> Result<User, ApiError> {
        let mut store = self.store();
        let user = store
            .get_mut(&patch.id)
            .ok_or_else(|| ApiError::NotFound(users::not_found_message(patch.id.as_str())))?;
        *user = patch.apply(user);
        Ok(user.clone())
    }

    async fn delete_user(&self, id: UserId) -> Result<(), ApiError> {
        self.store()
            .remove(&id)
            .map(drop)
            .ok_or_else(|| ApiError::NotFound(users::not_found_message(id.as_str())))
    }

    async fn count_users(&self) -> Result<u64, ApiError> {
        let _open = self.gate.read().await;
        Ok(self.store().len() as u64)
    }

    async fn list_users(&self, from: ListFrom, limit: u32) -> Result<UserPage, ApiError> {
        let store = self.store();
        let rest: Vec<&User> = match &from {
            ListFrom::Offset(offset) => store
                .values()
                .skip(usize::try_from(*offset).unwrap_or(usize::MAX))
                .collect(),
            ListFrom::After(id) => store
                .range::<UserId, _>((
                    std::ops::Bound::Excluded(id.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, user)| user)
                .collect(),
        };
        let users: Vec<User> = rest
            .iter()
            .take(limit as usize)
            .map(|u| (*u).clone())
            .collect();
        let next_after = (rest.len() > users.len() && !users.is_empty())
            .then(|| users.last().map(|u| u.id.clone()))
            .flatten();
        Ok(UserPage {
            users,
            total: store.len() as u64,
            next_after,
        })
    }

    async fn add_session(&self, user: SessionUser) -> Result<SessionReply, ApiError> {
        Ok(self.change_session(user, |n| sessions::add(n, MAX_SESSIONS)))
    }

    async fn remove_session(&self, user: SessionUser) -> Result<SessionReply, ApiError> {
        Ok(self.change_session(user, sessions::remove))
    }

    async fn session_count(&self, user: SessionUser) -> Result<u32, ApiError> {
        Ok(lock(&self.sessions).get(&user).copied().unwrap_or(0))
    }

    async fn create_job(&self, object_id: String) -> Result<Job, ApiError> {
        let mut store = lock(&self.jobs);
        let window = Duration::from_secs(DEDUP_WINDOW_SECS);
        if let Some((_, created)) = store.latest.get(&object_id) {
            if created.elapsed() < window {
                return Err(ApiError::BadRequest(jobs::dedup_message(DEDUP_WINDOW_SECS)));
            }
        }
        store.next += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let job = Job {
            job_id: format!("job-{}", store.next),
            object_id: object_id.clone(),
            status: JobStatus::Processing,
            timestamp: jobs::rfc3339_millis(now.as_millis() as u64),
            attempts: 1,
        };
        store
            .latest
            .insert(object_id, (job.job_id.clone(), Instant::now()));
        store.jobs.insert(job.job_id.clone(), job.clone());
        Ok(job)
    }

    async fn get_job(&self, job_id: String) -> Result<Job, ApiError> {
        lock(&self.jobs)
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(jobs::not_found_message(&job_id)))
    }

    async fn integer_averages(&self, _: usize) -> Result<Vec<Average>, ApiError> {
        not_tested()
    }

    fn find_manager(&self, _: f64, _: f64) -> Result<ManagerView, ApiError> {
        not_tested()
    }

    async fn create_party(&self, _: CreateParty) -> Result<PartyCreated, ApiError> {
        not_tested()
    }

    async fn join_party(&self, _: String, _: JoinParty) -> Result<(bool, PartyMember), ApiError> {
        not_tested()
    }

    async fn party(&self, _: String) -> Result<Party, ApiError> {
        not_tested()
    }

    async fn leave_party(&self, _: String, _: String) -> Result<PartyLeft, ApiError> {
        not_tested()
    }

    async fn nearby_parties(&self, _: NearbySearch) -> Result<Vec<NearbyParty>, ApiError> {
        not_tested()
    }

    fn render_metrics(&self) -> String {
        String::new()
    }
}

/// The whole edge over `node`.
pub(super) fn app(node: &MemoryNode) -> crate::Edge {
    let metrics = HttpMetrics::register(&mut Registry::default());
    app_with(node, metrics, 1024)
}

/// The whole edge over `node`, with its metrics and in-flight bound.
pub(super) fn app_with(
    node: &MemoryNode,
    metrics: HttpMetrics,
    max_in_flight: usize,
) -> crate::Edge {
    crate::router(
        node.clone(),
        metrics,
        crate::EdgeLimits {
            max_body_bytes: LIMIT,
            max_in_flight,
        },
        crate::Surface::All,
    )
}

/// Sends one request; the answer's status and JSON body (`Null` when empty).
pub(super) async fn call(
    node: &MemoryNode,
    method: Method,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .expect("request");
    let response = app(node).oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json body")
    };
    (status, body)
}
