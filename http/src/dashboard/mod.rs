//! The live dashboard (`GET /ui`): one static page, served from the binary, that polls
//! `GET /ui/data`, and the pure parts of what that returns: a node's request statistics from
//! its own metrics ([`stats`]) and the merge of every node's [`NodeReport`] into one
//! [`DashboardView`] ([`assemble`]). The node gathers the reports (it asks every live peer);
//! this module decides what the page sees.

pub mod stats;

use std::collections::BTreeMap;

pub use stats::RequestSampler;

use crate::views::{
    ClusterView, DashboardView, EventView, ManagerRow, NodeEntry, NodeReport, ShardState, TransitAt,
};

/// The page: HTML, CSS and JavaScript in one file, no external fetch of any kind.
pub const PAGE: &str = include_str!("page.html");

/// Most events a view carries (each node keeps as many of its own).
pub const MAX_EVENTS: usize = 200;

/// Whether `event` is about membership (it names a member). Every node sees the same
/// membership events, so the view keeps only the serving node's; ownership events are each
/// recorded once, by the node that acted.
pub fn is_membership(event: &EventView) -> bool {
    event.member.is_some()
}

/// Merges the serving node's `cluster` view with every member's entry (its report or why
/// there is none) into what the page shows.
pub fn assemble(cluster: ClusterView, nodes: Vec<NodeEntry>, at_ms: u64) -> DashboardView {
    let reports: Vec<&NodeReport> = nodes.iter().filter_map(|n| n.report.as_ref()).collect();
    let shards = shard_states(&cluster, &reports);
    let managers = managers(&cluster);
    let events = events(&cluster.node, &reports);
    DashboardView {
        cluster,
        at_ms,
        nodes,
        shards,
        managers,
        events,
    }
}

/// Each shard's serving copy (or the placement owner's while nobody serves it) and the nodes
/// moving it.
fn shard_states(cluster: &ClusterView, reports: &[&NodeReport]) -> Vec<ShardState> {
    let mut states: Vec<ShardState> = (0..cluster.shard_count)
        .map(|shard| ShardState {
            shard,
            served_by: None,
            epoch: None,
            applied: None,
            transit: Vec::new(),
        })
        .collect();
    let owners: BTreeMap<u32, &str> = cluster
        .shards
        .iter()
        .filter_map(|s| s.owner.as_deref().map(|o| (s.shard, o)))
        .collect();
    for report in reports {
        for copy in &report.copies {
            let Some(state) = states.get_mut(copy.shard as usize) else {
                continue;
            };
            let placed_here = owners.get(&copy.shard) == Some(&report.node.as_str());
            // A serving copy wins over one that is not; among serving copies (two nodes that
            // briefly both think they serve), the newer report of the placement owner wins.
            let better = match &state.served_by {
                Some(_) => copy.serving && placed_here,
                None => copy.serving || (placed_here && state.epoch.is_none()),
            };
            if better {
                state.served_by = copy.serving.then(|| report.node.clone());
                state.epoch = copy.epoch.clone();
                state.applied = Some(copy.applied);
            }
        }
        for transit in &report.transit {
            if let Some(state) = states.get_mut(transit.shard as usize) {
                state.transit.push(TransitAt {
                    node: report.node.clone(),
                    state: transit.state.clone(),
                    applied: transit.applied,
                });
            }
        }
    }
    states
}

/// The managers' shards, by region then manager.
fn managers(cluster: &ClusterView) -> Vec<ManagerRow> {
    let mut rows: Vec<ManagerRow> = cluster
        .shards
        .iter()
        .filter_map(|s| {
            let manager = s.manager.clone()?;
            let region = manager
                .split_once('/')
                .map_or(manager.as_str(), |(region, _)| region)
                .to_owned();
            Some(ManagerRow {
                region,
                manager,
                shard: s.shard,
                owner: s.owner.clone(),
                replicas: s.replicas.clone(),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.region.cmp(&b.region).then(a.manager.cmp(&b.manager)));
    rows
}

/// The serving node's membership events and every node's ownership events, newest first.
fn events(serving: &str, reports: &[&NodeReport]) -> Vec<EventView> {
    let mut events: Vec<EventView> = reports
        .iter()
        .flat_map(|r| r.events.iter())
        .filter(|e| !is_membership(e) || e.node == serving)
        .cloned()
        .collect();
    events.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.node.cmp(&b.node)));
    events.truncate(MAX_EVENTS);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{CopyView, RequestStats, ShardView, TransitView};

    fn cluster(owners: &[&str]) -> ClusterView {
        ClusterView {
            cluster: "test".into(),
            node: "n1".into(),
            members: Vec::new(),
            shard_count: owners.len() as u32,
            replication_factor: 2,
            shards: owners
                .iter()
                .enumerate()
                .map(|(shard, owner)| ShardView {
                    shard: shard as u32,
                    owner: Some((*owner).into()),
                    replicas: Vec::new(),
                    manager: None,
                })
                .collect(),
            transit: Vec::new(),
            lease_held: true,
            gossip_tables: Default::default(),
        }
    }

    /// An event of `kind`; `died` is about member n3, any other about shard 1.
    fn event(node: &str, kind: &str, at_ms: u64) -> EventView {
        let membership = kind == "died";
        EventView {
            at_ms,
            node: node.into(),
            kind: kind.into(),
            text: format!("{kind} at {at_ms}"),
            member: membership.then(|| "n3".into()),
            shard: (!membership).then_some(1),
            old_owner: None,
            new_owner: None,
            epoch: None,
        }
    }

    fn report(node: &str, copies: Vec<CopyView>, events: Vec<EventView>) -> NodeEntry {
        NodeEntry {
            node: node.into(),
            report: Some(NodeReport {
                node: node.into(),
                at_ms: 0,
                requests: RequestStats::default(),
                copies,
                transit: Vec::new(),
                events,
            }),
            error: None,
        }
    }

    fn copy(shard: u32, term: u64, owner: &str, applied: u64, serving: bool) -> CopyView {
        CopyView {
            shard,
            epoch: Some(format!("{term}@{owner}")),
            applied,
            serving,
        }
    }

    #[test]
    fn a_shard_shows_its_serving_copy_not_a_replica_that_reported_later() {
        let nodes = vec![
            report("n1", vec![copy(0, 3, "n1", 40, true)], Vec::new()),
            report("n2", vec![copy(0, 3, "n1", 39, false)], Vec::new()),
        ];
        let view = assemble(cluster(&["n1"]), nodes, 0);
        let shard = &view.shards[0];
        assert_eq!(shard.served_by.as_deref(), Some("n1"));
        assert_eq!(
            (shard.epoch.as_deref(), shard.applied),
            (Some("3@n1"), Some(40))
        );
    }

    #[test]
    fn a_shard_nobody_serves_shows_its_placement_owners_copy_and_its_transit() {
        let mut n2 = report("n2", vec![copy(0, 3, "n1", 39, false)], Vec::new());
        if let Some(r) = n2.report.as_mut() {
            r.transit.push(TransitView {
                shard: 0,
                state: "taking-over".into(),
                epoch: Some("3@n1".into()),
                applied: 39,
                waiting: Vec::new(),
                due_in_ms: None,
            });
        }
        let dead = NodeEntry {
            node: "n1".into(),
            report: None,
            error: Some("dead".into()),
        };
        let view = assemble(cluster(&["n2"]), vec![dead, n2], 0);
        let shard = &view.shards[0];
        assert_eq!(shard.served_by, None);
        assert_eq!(shard.applied, Some(39));
        assert_eq!(
            shard.transit,
            vec![TransitAt {
                node: "n2".into(),
                state: "taking-over".into(),
                applied: 39
            }]
        );
    }

    #[test]
    fn membership_events_come_from_the_serving_node_only_and_ownership_events_from_all() {
        let nodes = vec![
            report("n1", Vec::new(), vec![event("n1", "died", 10)]),
            report(
                "n2",
                Vec::new(),
                vec![event("n2", "died", 11), event("n2", "sealed", 12)],
            ),
        ];
        let view = assemble(cluster(&["n1"]), nodes, 0);
        let seen: Vec<(&str, &str)> = view
            .events
            .iter()
            .map(|e| (e.node.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(seen, vec![("n2", "sealed"), ("n1", "died")]);
    }

    #[test]
    fn the_merged_events_are_bounded_newest_first() {
        let many = (0..MAX_EVENTS as u64 + 50)
            .map(|i| event("n2", "sealed", i))
            .collect();
        let view = assemble(cluster(&["n1"]), vec![report("n2", Vec::new(), many)], 0);
        assert_eq!(view.events.len(), MAX_EVENTS);
        assert_eq!(view.events[0].at_ms, MAX_EVENTS as u64 + 49);
    }

    #[test]
    fn managers_are_listed_by_region_with_their_owner() {
        let mut cluster = cluster(&["n1", "n2", "n3"]);
        cluster.shards[1].manager = Some("us-east-1/m0".into());
        cluster.shards[2].manager = Some("eu-west-1/m0".into());
        let view = assemble(cluster, Vec::new(), 0);
        let rows: Vec<(&str, &str, Option<&str>)> = view
            .managers
            .iter()
            .map(|m| (m.region.as_str(), m.manager.as_str(), m.owner.as_deref()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("eu-west-1", "eu-west-1/m0", Some("n3")),
                ("us-east-1", "us-east-1/m0", Some("n2")),
            ]
        );
    }
}
