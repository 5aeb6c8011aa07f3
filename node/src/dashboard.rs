//! What the dashboard (`/ui`, see `troupe_http::dashboard`) needs from the node: this node's
//! own [`NodeReport`], and the view gathered from every live member's report, so the page
//! loaded from any node shows every node's own request statistics.
//!
//! Peers are asked over the inter-node RPC (`Request::Report`), not over HTTP: it reaches
//! every peer wherever its HTTP listeners are (an `--admin-listen` listener is not gossiped,
//! and advertised addresses may not be reachable from where the browser is), it is
//! authenticated and encrypted like every other call, and a frame is bounded by
//! `rpc.max_frame_bytes`. Each call has [`REPORT_TIMEOUT`]; a peer that does not answer in
//! time is shown with the reason, not waited for. Decision 026.

use std::time::Duration;

use futures_util::future::join_all;
use troupe_http::views::{CopyView, DashboardView, NodeEntry, NodeReport};

use crate::ids::ShardId;
use crate::node::Node;
use crate::protocol::{Request, Response};

/// How long the serving node waits for one peer's report.
pub const REPORT_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Largest report accepted from a peer, in bytes of JSON (200 events, a few dozen routes and
/// a few hundred shards take well under this).
pub const MAX_REPORT_BYTES: usize = 1 << 20;

/// This node's own report: request statistics from its metrics, its copies, its shards in
/// transit and its recent events.
pub fn report(node: &Node) -> NodeReport {
    let inner = &node.inner;
    let requests = inner
        .requests
        .observe(&troupe_http::NodeApi::render_metrics(node));
    let transit = inner.shards.in_transit().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read shard metadata for the dashboard");
        Vec::new()
    });
    NodeReport {
        node: inner.me.to_string(),
        at_ms: crate::clock::unix_millis(),
        requests,
        copies: copies(node),
        transit,
        events: inner.metrics.events.recent(),
    }
}

/// The shards this node holds with an epoch: where each copy stands, and whether this node
/// serves it.
fn copies(node: &Node) -> Vec<CopyView> {
    let shards = &node.inner.shards;
    let serving: Vec<bool> = shards.local().iter().map(|l| l.serving.is_some()).collect();
    serving
        .iter()
        .enumerate()
        .filter_map(|(index, serving)| {
            let shard = ShardId(index as u32);
            let meta = shards
                .inner
                .store
                .meta(shard)
                .map_err(|error| tracing::warn!(%error, %shard, "cannot read shard metadata"))
                .ok()?;
            let epoch = meta.epoch?;
            Some(CopyView {
                shard: shard.0,
                epoch: Some(epoch.to_string()),
                applied: meta.position.applied,
                serving: *serving,
            })
        })
        .collect()
}

/// The answer to a peer's `Request::Report`: this node's report as JSON.
pub(crate) fn answer(node: &Node) -> Response {
    match serde_json::to_string(&report(node)) {
        Ok(json) => Response::Report(json),
        Err(error) => Response::Failed {
            message: format!("cannot encode the report: {error}"),
        },
    }
}

/// The dashboard's view: this node's cluster view, and every member's report (its own, or
/// asked for over RPC when live; a dead member is listed with why it has none).
pub async fn gather(node: &Node) -> DashboardView {
    let view = troupe_http::NodeApi::cluster_view(node);
    let topology = node.topology();
    let asks = topology.membership.members().map(|member| {
        let member = member.clone();
        async move {
            let id = member.node_id.to_string();
            let outcome = if member.node_id == node.inner.me {
                Ok(report(node))
            } else if !member.live {
                Err("dead: the failure detector stopped hearing it".to_owned())
            } else {
                ask(node, &member).await
            };
            match outcome {
                Ok(report) => NodeEntry {
                    node: id,
                    report: Some(report),
                    error: None,
                },
                Err(error) => NodeEntry {
                    node: id,
                    report: None,
                    error: Some(error),
                },
            }
        }
    });
    let entries = join_all(asks).await;
    troupe_http::dashboard::assemble(view, entries, crate::clock::unix_millis())
}

/// One live peer's report, within [`REPORT_TIMEOUT`] and [`MAX_REPORT_BYTES`].
async fn ask(node: &Node, member: &crate::membership::Member) -> Result<NodeReport, String> {
    let answer = node
        .inner
        .rpc
        .call_with_timeout(
            &member.node_id,
            &member.rpc_addr,
            Request::Report,
            REPORT_TIMEOUT,
        )
        .await;
    let json = match answer {
        Ok(Response::Report(json)) => json,
        Ok(other) => return Err(format!("unexpected answer: {other:?}")),
        Err(error) => return Err(format!("no report: {error}")),
    };
    parse_report(&json, member.node_id.as_str())
}

/// A peer's report, refused when too large, malformed, or about another node.
fn parse_report(json: &str, from: &str) -> Result<NodeReport, String> {
    if json.len() > MAX_REPORT_BYTES {
        return Err(format!(
            "report of {} bytes, above the {MAX_REPORT_BYTES} accepted",
            json.len()
        ));
    }
    let report: NodeReport =
        serde_json::from_str(json).map_err(|error| format!("unreadable report: {error}"))?;
    if report.node != from {
        return Err(format!("report names node {}, not {from}", report.node));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(node: &str) -> String {
        serde_json::to_string(&NodeReport {
            node: node.into(),
            at_ms: 1,
            requests: Default::default(),
            copies: Vec::new(),
            transit: Vec::new(),
            events: Vec::new(),
        })
        .expect("json")
    }

    #[test]
    fn a_peers_report_is_read_only_when_it_is_about_that_peer_and_small_enough() {
        assert_eq!(
            parse_report(&report_of("n2"), "n2").map(|r| r.node),
            Ok("n2".into())
        );
        assert!(parse_report(&report_of("n3"), "n2")
            .unwrap_err()
            .contains("names node n3"));
        assert!(parse_report("{", "n2").unwrap_err().contains("unreadable"));
        let huge = " ".repeat(MAX_REPORT_BYTES + 1);
        assert!(parse_report(&huge, "n2").unwrap_err().contains("above"));
    }
}
