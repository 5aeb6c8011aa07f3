//! Sending a request to the node that owns its shard: locally when that is this node, over RPC
//! otherwise, retrying within a bounded budget while membership settles.
//!
//! A failed attempt (connection refused, timeout, a peer that no longer owns the shard, or a
//! shard being taken over) is retried with a short backoff, and immediately once the topology
//! changes, so a request whose owner died goes to the next owner as soon as the failure detector
//! says so. Reads do not wait for that: when the owner cannot answer, its replicas are asked in
//! placement order. When the budget runs out the caller gets 503 with `Retry-After`.
//!
//! The exception is a command the owner may have received (the call timed out or the
//! connection dropped after it was sent): repeating it could apply it twice (a session added
//! twice), so the caller gets 503 saying the outcome is unknown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use troupe_http::ApiError;

use crate::ids::{NodeId, ShardId};
use crate::node::Node;
use crate::protocol::{Request, Response};
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::Command;
use crate::topology::Topology;

/// First pause between attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// Longest pause. A new owner that finishes taking a shard over is no topology change, so a
/// waiting request only sees it at its next attempt: with 400 ms the longest write gap after a
/// SIGKILL exceeded failure detection + 1 s in one run of four, with 100 ms in none
/// (docs/BENCHMARKS.md). The attempts are cheap refusals meanwhile.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Runs `command` at the owner of `shard`. Returns the owner's answer, never `NotOwner` or
/// `Moving`; `Unavailable` (the owner tried and could not acknowledge) becomes 503,
/// `TooLarge` (a change one entry cannot carry, refused unapplied) 413, and `StorageFull`
/// (the owner's map is too full for new data, refused unapplied) 507. Each
/// attempt tells the owner how much of the budget is left, so the owner drops the command if
/// it is still queued when this node has given up on it.
pub async fn call_owner(
    node: &Node,
    shard: ShardId,
    command: Command,
) -> Result<Response, ApiError> {
    serve_at_owner(node, shard, |wait_ms| Request::Command {
        shard,
        command: command.clone(),
        wait_ms,
    })
    .await
}

/// Serves the request `request(wait_ms)` makes at the owner of `shard`, as [`call_owner`]
/// does; `wait_ms` is what is left of the budget when an attempt starts.
pub async fn serve_at_owner(
    node: &Node,
    shard: ShardId,
    request: impl Fn(u32) -> Request,
) -> Result<Response, ApiError> {
    let mut retry = Retry::new(node);
    loop {
        let topology = retry.topology();
        let problem = match topology.table.owner(shard) {
            None => format!("no ready node owns shard {shard}"),
            Some(owner) => match retry
                .bounded(node, &topology, owner, request(retry.left_ms()))
                .await
            {
                Ok(Response::Unavailable { message }) => return Err(unavailable(message)),
                Ok(Response::TooLarge { message }) => {
                    return Err(ApiError::PayloadTooLarge(message))
                }
                Ok(Response::StorageFull { message }) => {
                    return Err(ApiError::InsufficientStorage(message))
                }
                Ok(answer) => return Ok(answer),
                Err(problem) => problem,
            },
        };
        retry.wait(shard, problem).await?;
    }
}

/// Answers `query` on `shard`: from its owner, or from a replica when the owner cannot answer.
pub async fn read_shard(
    node: &Node,
    shard: ShardId,
    query: Query,
) -> Result<QueryAnswer, ApiError> {
    let mut retry = Retry::new(node);
    loop {
        let topology = retry.topology();
        let mut problem = format!("no ready node holds shard {shard}");
        for (index, holder) in topology.table.replicas(shard).iter().enumerate() {
            let request = Request::Read {
                shard,
                query: query.clone(),
                allow_replica: index > 0,
            };
            match retry.bounded(node, &topology, holder, request).await {
                Ok(Response::Answer(answer)) => return Ok(answer),
                Ok(other) => problem = format!("{holder}: {}", describe(&other)),
                Err(reason) => problem = reason,
            }
        }
        retry.wait(shard, problem).await?;
    }
}

/// One attempt at `target`; `Err` describes why it should be retried (possibly elsewhere).
async fn attempt(
    node: &Node,
    topology: &Topology,
    target: &NodeId,
    request: Request,
) -> Result<Response, String> {
    let answer = if *target == node.inner.me {
        node.handle_local(request).await
    } else {
        let Some(member) = topology.membership.get(target) else {
            return Err(format!("node {target} is not a member"));
        };
        node.inner.metrics.forwards.inc();
        let changes_state = matches!(request, Request::Command { .. });
        // A command waits for the owner's own answer (its replication may take a call timeout
        // of its own), up to the request's budget, which `Retry::bounded` enforces.
        let deadline = if changes_state {
            node.inner.cluster.http.forward_budget()
        } else {
            node.inner.cluster.rpc.call_timeout()
        };
        let call = node
            .inner
            .rpc
            .call_with_timeout(target, &member.rpc_addr, request, deadline);
        match call.await {
            Ok(answer) => answer,
            Err(error) => {
                node.inner.metrics.forward_failures.inc();
                tracing::debug!(%target, %error, "forward attempt failed");
                if changes_state && error.may_have_been_delivered() {
                    // Sending it again could apply it twice (a session added twice, say).
                    return Ok(Response::possibly_applied(format!(
                        "node {target} did not answer ({error})"
                    )));
                }
                return Err(error.to_string());
            }
        }
    };
    match answer {
        Response::NotOwner { .. } => Err(format!("node {target} does not serve the shard now")),
        Response::Moving { message } => Err(message),
        answer => Ok(answer),
    }
}

fn describe(answer: &Response) -> String {
    match answer {
        Response::Unavailable { message } | Response::Failed { message } => message.clone(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// The retry budget of one request, and the topology it waits on.
struct Retry {
    topology: watch::Receiver<Arc<Topology>>,
    budget: Duration,
    deadline: Instant,
    backoff: Duration,
}

impl Retry {
    fn new(node: &Node) -> Self {
        let budget = node.inner.cluster.http.forward_budget();
        Self {
            topology: node.inner.topology.clone(),
            budget,
            deadline: Instant::now() + budget,
            backoff: FIRST_BACKOFF,
        }
    }

    /// What is left of the budget, in milliseconds.
    fn left_ms(&self) -> u32 {
        let left = self.deadline.saturating_duration_since(Instant::now());
        u32::try_from(left.as_millis()).unwrap_or(u32::MAX)
    }

    /// Runs one [`attempt`], but not past the budget: a request never outlives it, even when
    /// a peer stops answering mid-call. A command then counts as possibly applied; any other
    /// request is simply out of time.
    async fn bounded(
        &self,
        node: &Node,
        topology: &Topology,
        target: &NodeId,
        request: Request,
    ) -> Result<Response, String> {
        let changes_state = matches!(request, Request::Command { .. });
        let left = self.deadline.saturating_duration_since(Instant::now());
        let attempt = attempt(node, topology, target, request);
        let Ok(result) = tokio::time::timeout(left, attempt).await else {
            let why = format!("no answer within the {} ms budget", self.budget.as_millis());
            return if changes_state {
                Ok(Response::possibly_applied(why))
            } else {
                Err(why)
            };
        };
        result
    }

    fn topology(&mut self) -> Arc<Topology> {
        self.topology.borrow_and_update().clone()
    }

    /// Waits for a topology change or the backoff, whichever comes first; 503 once the budget
    /// is spent.
    async fn wait(&mut self, shard: ShardId, problem: String) -> Result<(), ApiError> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(unavailable(format!(
                "shard {shard} is unavailable after retrying for {} ms: {problem}",
                self.budget.as_millis()
            )));
        }
        let pause = self.backoff.min(self.deadline - now);
        if let Ok(Err(_)) = tokio::time::timeout(pause, self.topology.changed()).await {
            // The topology publisher is gone (the node is stopping): plain backoff.
            tokio::time::sleep(pause).await;
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::Unavailable {
        message,
        retry_after: Duration::from_secs(1),
    }
}
