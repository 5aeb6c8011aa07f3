//! Jobs (issue 4) on the shard layer.
//!
//! A job lives in the shard of its object id: its id is a random UUID drawn until it hashes to
//! that same shard, so `GET /jobs/{id}` routes straight to the owner and the de-duplication
//! check (by object id) is in the same actor as the job. The owner picks the run's duration,
//! and its actor finishes the job when the run ends (or cancels it at the timeout) through an
//! ordinary replicated command. A new owner re-runs every job still `processing` that it is not
//! already running itself (`attempts` goes up), so a job ends in exactly one terminal state:
//! finishing checks the attempt and the status atomically.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use troupe_actors::jobs::{self, Job, JobStatus};
use troupe_http::ApiError;

use crate::clock::unix_millis;
use crate::codec;
use crate::config::JobsConfig;
use crate::ids::ShardId;
use crate::node::Node;
use crate::placement::shard_for_key;
use crate::routing::{call_owner, read_shard};
use crate::rpc::wire::Response;
use crate::shard::command::{Command, Decision, FollowUp, Outcome, Query, QueryAnswer};
use crate::shard::draft::Draft;
use crate::shard::{Op, ShardStore, StoreError, Tenant};

/// A job as stored: what clients see, plus the current run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The client-facing job.
    pub job: Job,
    /// How long the current attempt runs, in milliseconds.
    pub duration_ms: u64,
}

/// The latest job of an object id, for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LatestJob {
    job_id: String,
    created_ms: u64,
}

fn load<T: serde::de::DeserializeOwned>(
    store: &Draft,
    shard: ShardId,
    tenant: Tenant,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(shard, tenant, key.as_bytes())? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
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

/// When the run ends: at its duration, or at the timeout if that comes first.
fn finish_after(record: &JobRecord, config: &JobsConfig) -> FollowUp {
    FollowUp::FinishJob {
        job_id: record.job.job_id.clone(),
        attempt: record.job.attempts,
        after: Duration::from_millis(record.duration_ms.min(config.timeout_ms)),
    }
}

/// Create: refused within the de-duplication window of the object's previous job.
pub fn decide_create(
    store: &Draft,
    shard: ShardId,
    job_id: &str,
    object_id: &str,
    config: &JobsConfig,
) -> Result<Decision, StoreError> {
    let now = unix_millis();
    let window = config.dedup_window_secs * 1000;
    if let Some(latest) = load::<LatestJob>(store, shard, Tenant::JOB_OBJECTS, object_id)? {
        if now.saturating_sub(latest.created_ms) < window {
            let message = jobs::dedup_message(config.dedup_window_secs);
            return Ok(Decision::answer_only(Outcome::Invalid(message)));
        }
    }
    let record = JobRecord {
        job: Job {
            job_id: job_id.to_owned(),
            object_id: object_id.to_owned(),
            status: JobStatus::Processing,
            timestamp: jobs::rfc3339_millis(now),
            attempts: 1,
        },
        duration_ms: draw_duration(config),
    };
    let latest = LatestJob {
        job_id: job_id.to_owned(),
        created_ms: now,
    };
    Ok(Decision {
        outcome: Outcome::Job(record.job.clone()),
        ops: vec![
            put(Tenant::JOBS, job_id, &record)?,
            put(Tenant::JOB_OBJECTS, object_id, &latest)?,
        ],
        follow_up: Some(finish_after(&record, config)),
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
    let Some(mut record) = load::<JobRecord>(store, shard, Tenant::JOBS, job_id)? else {
        return Ok(Decision::answer_only(Outcome::NotFound(
            jobs::not_found_message(job_id),
        )));
    };
    if record.job.status != JobStatus::Processing || record.job.attempts != attempt {
        return Ok(Decision::answer_only(Outcome::Job(record.job)));
    }
    record.job.status = if record.duration_ms > config.timeout_ms {
        JobStatus::Cancelled
    } else {
        JobStatus::Finished
    };
    Ok(Decision {
        outcome: Outcome::Job(record.job.clone()),
        ops: vec![put(Tenant::JOBS, job_id, &record)?],
        follow_up: None,
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
    let Some(mut record) = load::<JobRecord>(store, shard, Tenant::JOBS, job_id)? else {
        return Ok(Decision::answer_only(Outcome::NotFound(
            jobs::not_found_message(job_id),
        )));
    };
    if record.job.status != JobStatus::Processing {
        return Ok(Decision::answer_only(Outcome::Job(record.job)));
    }
    record.job.attempts += 1;
    record.duration_ms = draw_duration(config);
    Ok(Decision {
        outcome: Outcome::Job(record.job.clone()),
        ops: vec![put(Tenant::JOBS, job_id, &record)?],
        follow_up: Some(finish_after(&record, config)),
    })
}

/// Ids of the shard's jobs still `processing`.
pub fn processing(store: &ShardStore, shard: ShardId) -> Result<Vec<(String, u32)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(shard, Tenant::JOBS, after.as_deref(), 1000)?;
        for (key, value) in &page {
            let record: JobRecord = codec::decode(value)?;
            if record.job.status == JobStatus::Processing {
                out.push((
                    String::from_utf8_lossy(key).into_owned(),
                    record.job.attempts,
                ));
            }
        }
        match page.last() {
            Some((key, _)) if page.len() == 1000 => after = Some(key.clone()),
            _ => return Ok(out),
        }
    }
}

/// A fresh job id in the same shard as `object_id`.
fn job_id_for(object_id: &str, shards: u32) -> String {
    let target = shard_for_key(object_id, shards);
    // About `shards` draws per job: format each into one stack buffer, not a new string.
    let mut buffer = uuid::Uuid::encode_buffer();
    loop {
        let id = crate::random::uuid_v4()
            .hyphenated()
            .encode_lower(&mut buffer);
        if shard_for_key(id, shards) == target {
            return id.to_owned();
        }
    }
}

/// `POST /jobs`.
pub async fn create(node: &Node, object_id: String) -> Result<Job, ApiError> {
    let shards = node.inner.cluster.cluster.shards;
    let shard = shard_for_key(&object_id, shards);
    let command = Command::CreateJob {
        job_id: job_id_for(&object_id, shards),
        object_id,
    };
    match call_owner(node, shard, command).await? {
        Response::Outcome(Outcome::Job(job)) => Ok(job),
        Response::Outcome(Outcome::Invalid(message)) => Err(ApiError::BadRequest(message)),
        other => Err(ApiError::Internal(format!(
            "unexpected answer to a job command: {other:?}"
        ))),
    }
}

/// `GET /jobs/{job_id}`.
pub async fn get(node: &Node, job_id: String) -> Result<Job, ApiError> {
    let shard = shard_for_key(&job_id, node.inner.cluster.cluster.shards);
    let query = Query::Get {
        tenant: Tenant::JOBS,
        key: job_id.as_bytes().to_vec(),
    };
    match read_shard(node, shard, query).await? {
        QueryAnswer::Value(None) => Err(ApiError::NotFound(jobs::not_found_message(&job_id))),
        QueryAnswer::Value(Some(bytes)) => codec::decode::<JobRecord>(&bytes)
            .map(|record| record.job)
            .map_err(|e| ApiError::Internal(format!("stored job cannot be read: {e}"))),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}
