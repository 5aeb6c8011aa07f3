//! Sending a request to the node that owns its shard: locally when that is this node, over RPC
//! otherwise, retrying within a bounded budget while membership settles.
//!
//! A failed attempt (connection refused, timeout, or a peer that no longer owns the shard) is
//! retried with a short backoff, and immediately once the topology changes, so a request whose
//! owner died goes to the next owner as soon as the failure detector says so. When the budget
//! runs out the caller gets 503 with `Retry-After`.

use std::time::Duration;

use tokio::time::Instant;
use troupe_http::ApiError;

use crate::ids::ShardId;
use crate::membership::Member;
use crate::node::Node;
use crate::rpc::wire::{Request, Response};

/// First pause between attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(400);

/// Serves `request` at the owner of `shard`. Returns the owner's answer, never `NotOwner`.
pub async fn call_owner(
    node: &Node,
    shard: ShardId,
    request: Request,
) -> Result<Response, ApiError> {
    let budget = node.inner.cluster.http.forward_budget();
    let deadline = Instant::now() + budget;
    let mut topology = node.inner.topology.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let current = topology.borrow_and_update().clone();
        let problem = match current.owner(shard) {
            None => format!("no ready node owns shard {shard}"),
            Some(owner) if owner.node_id == node.inner.me => {
                match node.handle_local(request.clone()).await {
                    Response::NotOwner { .. } => "ownership is moving".to_owned(),
                    answer => return Ok(answer),
                }
            }
            Some(owner) => match forward(node, owner, shard, request.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(problem) => problem,
            },
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(unavailable(shard, &problem, budget));
        }
        // Wait for a topology change (a new owner), or the backoff, whichever comes first.
        let pause = backoff.min(deadline - now);
        if let Ok(Err(_)) = tokio::time::timeout(pause, topology.changed()).await {
            // The topology publisher is gone (the node is stopping): plain backoff.
            tokio::time::sleep(pause).await;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One attempt at the owner over RPC; `Err` describes why it should be retried.
async fn forward(
    node: &Node,
    owner: &Member,
    shard: ShardId,
    request: Request,
) -> Result<Response, String> {
    node.inner.metrics.forwards.inc();
    let problem = match node
        .inner
        .rpc
        .call(&owner.node_id, &owner.rpc_addr, request)
        .await
    {
        Ok(Response::NotOwner { .. }) => {
            format!("node {} no longer owns shard {shard}", owner.node_id)
        }
        Ok(answer) => return Ok(answer),
        Err(error) => error.to_string(),
    };
    node.inner.metrics.forward_failures.inc();
    tracing::debug!(%shard, owner = %owner.node_id, %problem, "forward attempt failed");
    Err(problem)
}

fn unavailable(shard: ShardId, problem: &str, budget: Duration) -> ApiError {
    ApiError::Unavailable {
        message: format!(
            "shard {shard} is unavailable after retrying for {} ms: {problem}",
            budget.as_millis()
        ),
        retry_after: Duration::from_secs(1),
    }
}
