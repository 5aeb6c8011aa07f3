//! Jobs on the shard layer.
//!
//! A job lives in the shard of its object id, and its id is derived from that object id and
//! the job's generation (the object's first job is generation 1, the next one after the
//! de-duplication window generation 2, ...): see [`job_id`]. So one record per job is enough.
//! `GET /jobs/{id}` routes straight to the owner by the id's hash, and the de-duplication check
//! finds an object's latest job by computing ids, in the same actor as the job, with no index
//! record to keep beside it. The owner picks the run's duration, and its actor finishes the job
//! when the run ends (or cancels it at the timeout) through an ordinary replicated command. A
//! new owner re-runs every job still `processing` that it is not already running itself
//! (`attempts` goes up), so a job ends in exactly one terminal state: finishing checks the
//! attempt and the status atomically.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use troupe_actors::jobs::{self, Job, JobStatus};
use troupe_http::ApiError;
use xxhash_rust::xxh3::xxh3_128;

use crate::clock::unix_millis;
use crate::codec;
use crate::config::JobsConfig;
use crate::ids::ShardId;
use crate::node::Node;
use crate::placement::shard_for_key;
use crate::routing::read_shard;
use crate::services::machine::{self, Decision, Outcome, Service};
use crate::shard::draft::Draft;
use crate::shard::machine::{Resume, Timer};
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::{MachineId, Op, ShardStore, StoreError, Tenant};

/// The key space of jobs, by id: part of every stored job's key, so never to change.
pub const TENANT: Tenant = Tenant(3);
/// Held each object id's latest job up to layout 2; job ids now derive from object ids
/// ([`job_id`]). Claimed here and never reused, so layouts stay easy to tell apart.
pub const RETIRED_TENANT: Tenant = Tenant(4);

/// A job as stored under its id: what clients see except the id (the key) and the timestamp
/// (kept as Unix milliseconds), plus the current run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The object it processes.
    pub object_id: String,
    /// Where it is.
    pub status: JobStatus,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Runs started.
    pub attempts: u32,
    /// How long the current attempt runs, in milliseconds.
    pub duration_ms: u64,
}

impl JobRecord {
    /// The job as clients see it.
    pub fn job(&self, job_id: &str) -> Job {
        Job {
            job_id: job_id.to_owned(),
            object_id: self.object_id.clone(),
            status: self.status,
            timestamp: jobs::rfc3339_millis(self.created_ms),
            attempts: self.attempts,
        }
    }
}

/// The id of generation `generation` (from 1) of `object_id`'s jobs: a UUID (version 8, as
/// RFC 9562 labels ids with a layout of their own) from a hash of the two, the first of a
/// counted series of such hashes that falls in the object id's shard, so that the job routes
/// by its own id to the actor that de-duplicates its object. About `shards` hashes a call.
pub fn job_id(object_id: &str, generation: u32, shards: u32) -> String {
    let target = shard_for_key(object_id, shards);
    let mut input = Vec::with_capacity(object_id.len() + 16);
    let mut buffer = uuid::Uuid::encode_buffer();
    for attempt in 0u32.. {
        input.clear();
        input.extend_from_slice(b"troupe-job\0");
        input.extend_from_slice(object_id.as_bytes());
        input.extend_from_slice(&generation.to_be_bytes());
        input.extend_from_slice(&attempt.to_be_bytes());
        let bytes = xxh3_128(&input).to_be_bytes();
        let id = uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buffer);
        if shard_for_key(id, shards) == target {
            return id.to_owned();
        }
    }
    unreachable!("some attempt below 2^32 lands in the target shard")
}

/// The object's latest job, as (generation, record). Generations are created in order and
/// never deleted, so the ones in use are exactly 1..=latest: doubling finds an unused one,
/// then bisection the boundary, in about 2·log₂(latest) lookups. `first_id` is the id of
/// generation 1, which the caller needs anyway: an id costs about `shards` hashes.
fn latest_job(
    store: &Draft,
    shard: ShardId,
    object_id: &str,
    first_id: &str,
    shards: u32,
) -> Result<Option<(u32, JobRecord)>, StoreError> {
    let lookup = |generation: u32| {
        load::<JobRecord>(store, shard, TENANT, &job_id(object_id, generation, shards))
    };
    let Some(mut found) = load::<JobRecord>(store, shard, TENANT, first_id)? else {
        return Ok(None);
    };
    let (mut used, mut unused) = (1u32, 2u32);
    loop {
        match lookup(unused)? {
            Some(job) => {
                (used, found) = (unused, job);
                unused = unused.saturating_mul(2);
            }
            None => break,
        }
        if used == u32::MAX {
            return Ok(Some((used, found)));
        }
    }
    while unused - used > 1 {
        let middle = used + (unused - used) / 2;
        match lookup(middle)? {
            Some(job) => (used, found) = (middle, job),
            None => unused = middle,
        }
    }
    Ok(Some((used, found)))
}

fn load<T: serde::de::DeserializeOwned>(
    store: &Draft,
    shard: ShardId,
    tenant: Tenant,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(shard, tenant, key.as_bytes())? {
        Some(bytes) => Ok(Some(codec::decode(&bytes, codec::Limit::Stored)?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(tenant: Tenant, key: &str, value: &T) -> Result<Op, StoreError> {
    Ok(Op {
        tenant,
        key: key.as_bytes().to_vec(),
        value: Some(codec::encode(value)?),
    })
}

fn draw_duration(config: &JobsConfig) -> u64 {
    crate::random::with(|rng| rng.random_range(config.min_duration_ms..=config.max_duration_ms))
}

/// When the run ends (at its duration, or at the timeout if that comes first), the owner
/// finishes the attempt: a timer keyed by the job's id, its version the attempt.
fn finish_after(
    job_id: &str,
    record: &JobRecord,
    config: &JobsConfig,
) -> Result<Timer, StoreError> {
    let finish = JobCommand::Finish {
        job_id: job_id.to_owned(),
        attempt: record.attempts,
    };
    Ok(Timer {
        key: job_id.as_bytes().to_vec(),
        version: u64::from(record.attempts),
        after: Duration::from_millis(record.duration_ms.min(config.timeout_ms)),
        command: machine::command::<Jobs>(&finish)?,
    })
}

/// The jobs service's state machine.
pub struct Jobs {
    /// Durations, timeout, de-duplication window.
    pub config: JobsConfig,
    /// Shards of the cluster (a job's id names its object's shard).
    pub shards: u32,
}

/// What the jobs service asks a shard's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobCommand {
    /// Create a job, unless the object had one within the de-duplication window.
    Create {
        /// The object to process (the owner derives the job's id from it).
        object_id: String,
    },
    /// End a job's attempt (the owner's timer, when the run is over).
    Finish {
        /// The job.
        job_id: String,
        /// The attempt that ends.
        attempt: u32,
    },
    /// Run a `processing` job again under this owner.
    Rerun {
        /// The job.
        job_id: String,
    },
}

impl Service for Jobs {
    const MACHINE: MachineId = MachineId(3);
    const TENANTS: &'static [Tenant] = &[TENANT, RETIRED_TENANT];
    type Command = JobCommand;

    fn decide(
        &self,
        command: JobCommand,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError> {
        match command {
            JobCommand::Create { object_id } => {
                decide_create(state, shard, &object_id, &self.config, self.shards)
            }
            JobCommand::Finish { job_id, attempt } => {
                decide_finish(state, shard, &job_id, attempt, &self.config)
            }
            JobCommand::Rerun { job_id } => decide_rerun(state, shard, &job_id, &self.config),
        }
    }

    fn adds_data(command: &JobCommand) -> bool {
        matches!(command, JobCommand::Create { .. })
    }

    /// Every job left `processing` (by a previous owner, or this node before a restart) runs
    /// again, unless this owner's timer for that attempt is still pending.
    fn on_serving(&self, store: &ShardStore, shard: ShardId) -> Result<Vec<Resume>, StoreError> {
        processing(store, shard)?
            .into_iter()
            .map(|(job_id, attempts)| {
                Ok(Resume {
                    key: job_id.as_bytes().to_vec(),
                    version: u64::from(attempts),
                    command: machine::command::<Jobs>(&JobCommand::Rerun { job_id })?,
                })
            })
            .collect()
    }
}

/// Create: refused within the de-duplication window of the object's previous job.
pub fn decide_create(
    store: &Draft,
    shard: ShardId,
    object_id: &str,
    config: &JobsConfig,
    shards: u32,
) -> Result<Decision, StoreError> {
    let now = unix_millis();
    let window = config.dedup_window_secs * 1000;
    let first_id = job_id(object_id, 1, shards);
    let generation = match latest_job(store, shard, object_id, &first_id, shards)? {
        Some((_, latest)) if now.saturating_sub(latest.created_ms) < window => {
            let message = jobs::dedup_message(config.dedup_window_secs);
            return Ok(Decision::answer_only(Outcome::Invalid(message)));
        }
        Some((u32::MAX, _)) => {
            return Ok(Decision::answer_only(Outcome::Invalid(format!(
                "object {object_id:?} has had {} jobs, the most there can be",
                u32::MAX
            ))));
        }
        Some((latest, _)) => latest + 1,
        None => 1,
    };
    let job_id = match generation {
        1 => first_id,
        later => job_id(object_id, later, shards),
    };
    let record = JobRecord {
        object_id: object_id.to_owned(),
        status: JobStatus::Processing,
        created_ms: now,
        attempts: 1,
        duration_ms: draw_duration(config),
    };
    Ok(Decision {
        outcome: Outcome::Job(record.job(&job_id)),
        ops: vec![put(TENANT, &job_id, &record)?],
        timer: Some(finish_after(&job_id, &record, config)?),
    })
}

/// End attempt `attempt` of a job: `finished`, or `cancelled` if it ran into the timeout. A
/// no-op if the job already ended or another attempt is running.
pub fn decide_finish(
    store: &Draft,
    shard: ShardId,
    job_id: &str,
    attempt: u32,
    config: &JobsConfig,
) -> Result<Decision, StoreError> {
    let Some(mut record) = load::<JobRecord>(store, shard, TENANT, job_id)? else {
        return Ok(Decision::answer_only(Outcome::NotFound(
            jobs::not_found_message(job_id),
        )));
    };
    if record.status != JobStatus::Processing || record.attempts != attempt {
        return Ok(Decision::answer_only(Outcome::Job(record.job(job_id))));
    }
    record.status = if record.duration_ms > config.timeout_ms {
        JobStatus::Cancelled
    } else {
        JobStatus::Finished
    };
    Ok(Decision {
        outcome: Outcome::Job(record.job(job_id)),
        ops: vec![put(TENANT, job_id, &record)?],
        timer: None,
    })
}

/// Run a `processing` job again (its runner was another owner, or this node before a
/// restart).
pub fn decide_rerun(
    store: &Draft,
    shard: ShardId,
    job_id: &str,
    config: &JobsConfig,
) -> Result<Decision, StoreError> {
    let Some(mut record) = load::<JobRecord>(store, shard, TENANT, job_id)? else {
        return Ok(Decision::answer_only(Outcome::NotFound(
            jobs::not_found_message(job_id),
        )));
    };
    if record.status != JobStatus::Processing {
        return Ok(Decision::answer_only(Outcome::Job(record.job(job_id))));
    }
    record.attempts += 1;
    record.duration_ms = draw_duration(config);
    Ok(Decision {
        outcome: Outcome::Job(record.job(job_id)),
        ops: vec![put(TENANT, job_id, &record)?],
        timer: Some(finish_after(job_id, &record, config)?),
    })
}

/// Ids of the shard's jobs still `processing`.
pub fn processing(store: &ShardStore, shard: ShardId) -> Result<Vec<(String, u32)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(shard, TENANT, after.as_deref(), 1000)?;
        for (key, value) in &page {
            let record: JobRecord = match codec::decode(value, codec::Limit::Stored) {
                Ok(record) => record,
                Err(error) => {
                    // One corrupt record must not keep every other job from resuming.
                    let key = String::from_utf8_lossy(key);
                    tracing::warn!(%shard, %key, %error, "stored job cannot be read, skipped");
                    continue;
                }
            };
            if record.status == JobStatus::Processing {
                out.push((String::from_utf8_lossy(key).into_owned(), record.attempts));
            }
        }
        match page.last() {
            Some((key, _)) if page.len() == 1000 => after = Some(key.clone()),
            _ => return Ok(out),
        }
    }
}

/// `POST /jobs`.
pub async fn create(node: &Node, object_id: String) -> Result<Job, ApiError> {
    let shard = shard_for_key(&object_id, node.inner.cluster.cluster.shards);
    let command = JobCommand::Create { object_id };
    match machine::call::<Jobs>(node, shard, &command).await? {
        Outcome::Job(job) => Ok(job),
        Outcome::Invalid(message) => Err(ApiError::BadRequest(message)),
        other => Err(ApiError::Internal(format!(
            "unexpected answer to a job command: {other:?}"
        ))),
    }
}

/// `GET /jobs/{job_id}`.
pub async fn get(node: &Node, job_id: String) -> Result<Job, ApiError> {
    let shard = shard_for_key(&job_id, node.inner.cluster.cluster.shards);
    let query = Query::Get {
        tenant: TENANT,
        key: job_id.as_bytes().to_vec(),
    };
    match read_shard(node, shard, query).await? {
        QueryAnswer::Value(None) => Err(ApiError::NotFound(jobs::not_found_message(&job_id))),
        QueryAnswer::Value(Some(bytes)) => codec::decode::<JobRecord>(&bytes, codec::Limit::Stored)
            .map(|record| record.job(&job_id))
            .map_err(|e| {
                ApiError::Internal(format!(
                    "stored job {job_id} in shard {shard} cannot be read: {e}"
                ))
            }),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::store::tests::open;

    const SHARDS: u32 = 64;

    fn config(dedup_window_secs: u64) -> JobsConfig {
        JobsConfig {
            dedup_window_secs,
            ..JobsConfig::default()
        }
    }

    /// Decides a create and, unless refused, records it in the draft as a commit would.
    fn create(draft: &mut Draft, object_id: &str, config: &JobsConfig) -> Outcome {
        let shard = shard_for_key(object_id, SHARDS);
        let decision = decide_create(draft, shard, object_id, config, SHARDS).expect("decide");
        draft.record(shard, &decision.ops);
        decision.outcome
    }

    fn created_id(outcome: Outcome) -> String {
        match outcome {
            Outcome::Job(job) => job.job_id,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    #[test]
    fn a_job_id_is_a_uuid_in_its_object_ids_shard_and_the_same_on_every_node() {
        for object_id in ["a", "object-17", "ünïcode", &"x".repeat(256)] {
            let id = job_id(object_id, 1, SHARDS);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
            assert_eq!(shard_for_key(&id, SHARDS), shard_for_key(object_id, SHARDS));
            assert_eq!(id, job_id(object_id, 1, SHARDS));
        }
    }

    #[test]
    fn job_ids_differ_between_generations_and_between_objects() {
        let ids: std::collections::BTreeSet<String> = (1..=50)
            .flat_map(|generation| {
                ["a", "b"].map(|object_id| job_id(object_id, generation, SHARDS))
            })
            .collect();
        assert_eq!(ids.len(), 100);
    }

    #[test]
    fn a_second_create_within_the_window_is_refused_and_stores_nothing() {
        let (_dir, store) = open();
        let mut draft = Draft::new(&store);
        let first = created_id(create(&mut draft, "object", &config(300)));
        assert_eq!(first, job_id("object", 1, SHARDS));
        match create(&mut draft, "object", &config(300)) {
            Outcome::Invalid(message) => assert_eq!(message, jobs::dedup_message(300)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let shard = shard_for_key("object", SHARDS);
        let second = job_id("object", 2, SHARDS);
        assert_eq!(draft.get(shard, TENANT, second.as_bytes()).ok(), Some(None));
    }

    #[test]
    fn after_the_window_each_create_takes_the_next_generation() {
        let (_dir, store) = open();
        let mut draft = Draft::new(&store);
        // A zero window lets every create through, so generations pile up quickly.
        for generation in 1..=37 {
            let id = created_id(create(&mut draft, "object", &config(0)));
            assert_eq!(
                id,
                job_id("object", generation, SHARDS),
                "generation {generation}"
            );
        }
        let shard = shard_for_key("object", SHARDS);
        let (generation, record) = latest_job(
            &draft,
            shard,
            "object",
            &job_id("object", 1, SHARDS),
            SHARDS,
        )
        .expect("lookup")
        .expect("a latest job");
        assert_eq!(generation, 37);
        assert_eq!(record.status, JobStatus::Processing);
    }

    #[test]
    fn a_stored_job_shows_clients_its_id_and_creation_time() {
        let record = JobRecord {
            object_id: "o".into(),
            status: JobStatus::Finished,
            created_ms: 951_782_400_000,
            attempts: 2,
            duration_ms: 100,
        };
        let job = record.job("id-1");
        assert_eq!(job.job_id, "id-1");
        assert_eq!(job.timestamp, "2000-02-29T00:00:00.000Z");
        assert_eq!((job.object_id.as_str(), job.attempts), ("o", 2));
        assert_eq!(job.status, JobStatus::Finished);
    }

    #[tokio::test]
    async fn resuming_jobs_skips_a_corrupt_record_and_still_finds_the_processing_ones() {
        let shard = ShardId(3);
        let record = JobRecord {
            object_id: "o".into(),
            status: JobStatus::Processing,
            created_ms: 1,
            attempts: 2,
            duration_ms: 10,
        };
        let ops = vec![
            Op {
                tenant: TENANT,
                key: b"a-corrupt-job".to_vec(),
                value: Some(vec![codec::FORMAT_VERSION, 200]),
            },
            put(TENANT, "b-processing-job", &record).expect("encode"),
        ];
        let (_dir, store) = crate::shard::store::tests::open_with(shard, ops).await;
        let jobs = processing(&store, shard).expect("scan");
        assert_eq!(jobs, vec![("b-processing-job".to_owned(), 2)]);
    }
}
