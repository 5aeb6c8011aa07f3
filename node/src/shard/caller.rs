//! Which node may send which shard-layer request: checked against the node the RPC handshake
//! authenticated, before the shard layer sees the request.
//!
//! A request that changes a shard's copies on behalf of its owner names the owner's epoch, and
//! only that owner may send it: without this check any node that completed a handshake could
//! seal a holder into a made-up epoch, append entries to a replica, have it copy from anywhere,
//! or delete it, by naming another node as the owner. A pre-copy is asked for by the joining
//! node that receives it, so only that node may ask. The other requests (commands, reads,
//! catch-up reads) may come from any member: they are forwarded or read on a member's behalf.

use crate::ids::NodeId;
use crate::protocol::Request;

/// Whether `from` may send `request`; the reason for the refusal when it may not.
pub fn check(from: &NodeId, request: &Request) -> Result<(), String> {
    let (what, allowed) = match request {
        Request::Seal { epoch, .. }
        | Request::Replicate { epoch, .. }
        | Request::CatchUp { epoch, .. }
        | Request::Drop { epoch, .. } => (epoch.owner.as_str(), "the owner of the epoch it names"),
        Request::PreCopy { to, .. } => (to.node_id.as_str(), "the node that receives the copy"),
        Request::Ping
        | Request::LeaseCheck
        | Request::Locate { .. }
        | Request::Command { .. }
        | Request::Read { .. }
        | Request::EntriesAfter { .. }
        | Request::SnapshotPage { .. }
        | Request::Integer(_)
        | Request::Report => return Ok(()),
    };
    if from.as_str() == what {
        return Ok(());
    }
    Err(format!(
        "refused {}: sent by node {from}, but only {allowed} ({what}) may send it",
        kind(request)
    ))
}

fn kind(request: &Request) -> &'static str {
    match request {
        Request::Seal { .. } => "seal",
        Request::Replicate { .. } => "replicate",
        Request::CatchUp { .. } => "catch-up",
        Request::Drop { .. } => "drop",
        Request::PreCopy { .. } => "pre-copy",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPort;
    use crate::ids::ShardId;
    use crate::shard::{Entry, Epoch, Peer};

    fn epoch(owner: &str) -> Epoch {
        Epoch {
            term: 7,
            owner: NodeId::new(owner),
        }
    }

    fn owner_only_requests(owner: &str) -> Vec<Request> {
        let shard = ShardId(3);
        let peer = Peer {
            node_id: NodeId::new(owner),
            rpc_addr: "127.0.0.1:1".parse::<HostPort>().expect("addr"),
        };
        vec![
            Request::Seal {
                shard,
                epoch: epoch(owner),
            },
            Request::Drop {
                shard,
                epoch: epoch(owner),
            },
            Request::Replicate {
                shard,
                epoch: epoch(owner),
                prev: Default::default(),
                entry: Entry {
                    seq: 1,
                    epoch: epoch(owner),
                    ops: Vec::new(),
                    trim_before: 0,
                },
            },
            Request::CatchUp {
                shard,
                epoch: epoch(owner),
                source: peer.clone(),
                replica: true,
            },
            Request::PreCopy { shard, to: peer },
        ]
    }

    #[test]
    fn owner_requests_from_a_node_that_is_not_the_epoch_owner_are_refused() {
        for request in owner_only_requests("n1") {
            let refused = check(&NodeId::new("n2"), &request).expect_err("refused");
            assert!(
                refused.contains("sent by node n2") && refused.contains("(n1)"),
                "{refused}"
            );
            assert_eq!(check(&NodeId::new("n1"), &request), Ok(()));
        }
    }

    #[test]
    fn requests_any_member_may_send_pass() {
        let anyone = NodeId::new("n9");
        for request in [
            Request::Ping,
            Request::LeaseCheck,
            Request::EntriesAfter {
                shard: ShardId(1),
                from: Default::default(),
            },
        ] {
            assert_eq!(check(&anyone, &request), Ok(()));
        }
    }
}
