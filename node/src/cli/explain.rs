//! `troupe explain user <id>`: where a user lives and why placement put it there.
//!
//! Placement is a pure function of the ready members (`placement`), so the explanation is
//! computed here, from the membership the node at `--url` reports, with the node's own code,
//! and checked against the shard table that node serves. The epoch and applied position are
//! the owner's own (its `/cluster/shards`); `served_by` comes from a located request, which
//! the cluster forwards to the owner as it would a read.

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, ValueEnum};
use troupe_actors::users::UserId;
use troupe_http::views::{ClusterView, Located, ShardCopyView};

use super::status::{client, get_json};
use crate::ids::NodeId;
use crate::placement::{explain, hash_units, replica_sets, shard_for_key, Ranked, Verdict};

/// Flags of `troupe explain`.
#[derive(Args, Clone, Debug)]
pub struct ExplainArgs {
    /// What to explain.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// Any node's HTTP address (its admin address when it runs with `--admin-listen`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Milliseconds to wait for each answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// The kinds of entity `troupe explain` knows.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// A user of `/api/user`.
    User,
}

/// Prints where the entity lives and why.
pub async fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let Kind::User = args.kind;
    let id = UserId::parse(&args.id).map_err(|e| anyhow::anyhow!("invalid user id: {e}"))?;
    let http = client(Duration::from_millis(args.timeout_ms))?;
    let base = args.url.trim_end_matches('/');
    let view: ClusterView = get_json(&http, &format!("{base}/cluster")).await?;
    let located: Option<Located> = get_json(
        &http,
        &format!("{base}/cluster/locate/user/{}", id.as_str()),
    )
    .await
    .ok();
    let explained = Explained::of(&view, id.as_str());
    let copy = match explained.owner() {
        Some(owner) => owner_copy(&http, &view, owner, explained.shard).await,
        None => Err("no node is ready".into()),
    };
    print!("{}", explained.render(&view, copy, located.as_ref()));
    Ok(())
}

/// The owner's copy of `shard`, from its own `/cluster/shards`.
async fn owner_copy(
    http: &reqwest::Client,
    view: &ClusterView,
    owner: &str,
    shard: u32,
) -> Result<ShardCopyView, String> {
    let member = view
        .members
        .iter()
        .find(|m| m.node_id == owner)
        .ok_or_else(|| format!("{owner} is not a member"))?;
    let url = format!("http://{}/cluster/shards", member.http_addr);
    let copies: Vec<ShardCopyView> = get_json(http, &url).await.map_err(|e| format!("{e:#}"))?;
    copies
        .into_iter()
        .find(|c| c.shard == shard)
        .ok_or_else(|| format!("{owner} holds no copy of shard {shard} yet"))
}

/// A key's shard and placement, with the ranking behind each position of its replica set.
#[derive(Debug)]
pub struct Explained {
    /// The key's shard.
    pub shard: u32,
    /// Hash shards in the cluster.
    pub hash_shards: u32,
    /// The ready nodes placement ran over.
    pub ready: Vec<NodeId>,
    /// For the owner and each replica in turn: the ranking over the nodes left.
    pub positions: Vec<Vec<Ranked>>,
    /// The replica set the node at `--url` serves for the shard, owner first.
    pub served: Vec<String>,
}

impl Explained {
    /// Explains `key` from `view`: the hash shards are those without a party manager.
    pub fn of(view: &ClusterView, key: &str) -> Self {
        let hash_shards = view.shards.iter().filter(|s| s.manager.is_none()).count() as u32;
        let shard = shard_for_key(key, hash_shards).0;
        let ready: Vec<NodeId> = view
            .members
            .iter()
            .filter(|m| m.live && m.status == "ready")
            .map(|m| NodeId::new(m.node_id.clone()))
            .collect();
        let units = hash_units(hash_shards);
        let set = replica_sets(&units, &ready, view.replication_factor)
            .into_iter()
            .nth(shard as usize)
            .unwrap_or_default();
        // Replica i is the owner placement would choose without the nodes before it.
        let positions = (0..set.len())
            .map(|i| {
                let left: Vec<NodeId> = ready
                    .iter()
                    .filter(|n| !set[..i].contains(n))
                    .cloned()
                    .collect();
                explain(&units, &left, shard as usize)
            })
            .collect();
        let served = view
            .shards
            .get(shard as usize)
            .map(|s| s.owner.iter().chain(&s.replicas).cloned().collect())
            .unwrap_or_default();
        Self {
            shard,
            hash_shards,
            ready,
            positions,
            served,
        }
    }

    /// The owner the node at `--url` serves.
    pub fn owner(&self) -> Option<&str> {
        self.served.first().map(String::as_str)
    }

    fn chosen(&self) -> Vec<String> {
        self.positions
            .iter()
            .filter_map(|ranking| ranking.iter().find(|r| r.verdict == Verdict::Chosen))
            .map(|r| r.node.to_string())
            .collect()
    }

    /// The report `troupe explain` prints.
    pub fn render(
        &self,
        view: &ClusterView,
        copy: Result<ShardCopyView, String>,
        located: Option<&Located>,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "shard      {} of {} hash shards (xxh3 of the id, modulo {})",
            self.shard, self.hash_shards, self.hash_shards
        );
        let _ = writeln!(out, "owner      {}", self.owner().unwrap_or("none"));
        let replicas = self.served.get(1..).unwrap_or_default().join(", ");
        let _ = writeln!(
            out,
            "replicas   {}",
            if replicas.is_empty() {
                "none"
            } else {
                &replicas
            }
        );
        match copy {
            Ok(c) => {
                let _ = writeln!(
                    out,
                    "epoch      {} (applied {}, {} entities, serving: {})",
                    c.epoch.as_deref().unwrap_or("none"),
                    c.applied,
                    c.entities,
                    c.serving
                );
            }
            Err(why) => {
                let _ = writeln!(out, "epoch      unknown: {why}");
            }
        }
        if let Some(l) = located {
            let _ = writeln!(
                out,
                "served by  {} (a request through {} reached it)",
                l.served_by, view.node
            );
        }
        let _ = writeln!(
            out,
            "\nwhy: placement ranks the {} ready nodes by rendezvous weight for \"shard/{}\" and \
             lets each take its share ({} or {} of the {} shards), highest weights first.",
            self.ready.len(),
            self.shard,
            self.share(),
            self.share() + usize::from(!self.balanced()),
            self.hash_shards
        );
        for (i, ranking) in self.positions.iter().enumerate() {
            let role = match i {
                0 => "owner".to_owned(),
                i => format!(
                    "replica {i} (the owner placement would choose without the nodes before it)"
                ),
            };
            let _ = writeln!(out, "{role}:");
            for (rank, r) in ranking.iter().enumerate() {
                let what = match r.verdict {
                    Verdict::Chosen => "chosen".to_owned(),
                    Verdict::Full { taken } => {
                        format!("full: took {taken} shards it weighs higher")
                    }
                    Verdict::Lower => "ranks below".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  {}. {:<12} weight {:016x}  {what}",
                    rank + 1,
                    r.node.as_str(),
                    r.weight
                );
            }
        }
        if self.chosen() != self.served {
            let _ = writeln!(
                out,
                "\nnote: {} serves [{}] for this shard, not [{}]: membership is changing, or \
                 its view lags",
                view.node,
                self.served.join(", "),
                self.chosen().join(", ")
            );
        }
        out
    }

    fn share(&self) -> usize {
        (self.hash_shards as usize)
            .checked_div(self.ready.len())
            .unwrap_or(0)
    }

    fn balanced(&self) -> bool {
        self.ready.is_empty() || (self.hash_shards as usize).is_multiple_of(self.ready.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RegionName;
    use crate::layout::ShardLayout;
    use crate::placement::ShardTable;
    use troupe_http::views::{MemberView, ShardView};

    fn view_of(ready: &[&str], dead: &[&str]) -> ClusterView {
        let members: Vec<(NodeId, RegionName)> = ready
            .iter()
            .map(|n| (NodeId::new(*n), RegionName::new("r")))
            .collect();
        let table = ShardTable::compute(&ShardLayout::new(64, &[], 1), &members, 2);
        let member = |id: &str, live: bool| MemberView {
            node_id: id.into(),
            generation: 1,
            region: "r".into(),
            status: "ready".into(),
            live,
            http_addr: String::new(),
            rpc_addr: String::new(),
            gossip_addr: String::new(),
        };
        ClusterView {
            cluster: "c".into(),
            node: "n1".into(),
            members: ready
                .iter()
                .map(|n| member(n, true))
                .chain(dead.iter().map(|n| member(n, false)))
                .collect(),
            shard_count: 64,
            replication_factor: 2,
            shards: table
                .iter()
                .enumerate()
                .map(|(s, set)| ShardView {
                    shard: s as u32,
                    owner: set.first().map(ToString::to_string),
                    replicas: set.iter().skip(1).map(ToString::to_string).collect(),
                    manager: None,
                })
                .collect(),
            transit: Vec::new(),
            lease_held: true,
            gossip_tables: Default::default(),
        }
    }

    #[test]
    fn explain_chooses_the_replica_set_the_cluster_serves_and_leaves_dead_nodes_out() {
        let view = view_of(&["n1", "n2", "n4"], &["n3"]);
        for id in ["42", "alice", "0190c0de-0000-7000-8000-000000000000"] {
            let explained = Explained::of(&view, id);
            assert_eq!(explained.chosen(), explained.served, "user {id}");
            assert_eq!(explained.positions.len(), 2);
            assert!(explained.positions[0]
                .iter()
                .all(|r| r.node.as_str() != "n3"));
            // The replica's ranking leaves the owner out.
            let owner = explained.owner().expect("an owner");
            assert!(explained.positions[1]
                .iter()
                .all(|r| r.node.as_str() != owner));
            let text = explained.render(&view, Err("not asked".into()), None);
            assert!(text.contains(&format!("owner      {owner}")), "{text}");
            assert!(text.contains("21 or 22 of the 64 shards"), "{text}");
            assert!(!text.contains("note:"), "{text}");
        }
    }

    #[test]
    fn explain_notes_a_served_table_placement_would_not_choose() {
        let mut view = view_of(&["n1", "n2", "n3"], &[]);
        let explained = Explained::of(&view, "42");
        let shard = explained.shard as usize;
        let s = &mut view.shards[shard];
        std::mem::swap(s.owner.as_mut().expect("owner"), &mut s.replicas[0]);
        let text = Explained::of(&view, "42").render(&view, Err("not asked".into()), None);
        assert!(text.contains("note: n1 serves"), "{text}");
    }
}
