//! Deterministic simulation of a Troupe cluster under turmoil.
//!
//! The real node code ([`troupe_node::boot::run`]) runs on simulated hosts; only the I/O seam
//! is swapped:
//! - [`net`]: TCP listeners and dialer (HTTP edge, inter-node RPC) over turmoil TCP;
//! - [`gossip`]: chitchat's transport over turmoil UDP;
//! - [`http`]: a minimal HTTP/1.1 client over turmoil TCP;
//! - [`observe`]: an observer polling every node's `GET /cluster`, and predicates on the views;
//! - [`harness`]: building a seeded cluster, injecting faults, stepping until a predicate holds;
//! - [`hostile`]: a host without the cluster secret attacking gossip;
//! - [`hosts`]: which simulated node is running (by its tokio runtime);
//! - [`history`] and [`averages`]: the recorded requests and the invariant checkers over them;
//! - [`torn`]: what a crash in the middle of an append leaves in a node's log;
//! - [`determinism`]: seeded entropy, simulated clocks and the digest of a run's trace;
//! - [`scenarios`]: the scenario catalogue shared by the tests and the explorer (`src/main.rs`);
//! - [`scale`]: 20 to 100 nodes, measured (named scenarios, not part of `all`).

pub mod audit;
pub mod averages;
pub mod determinism;
pub mod explorer;
pub mod gossip;
pub mod harness;
pub mod history;
pub mod hostile;
pub mod hosts;
pub mod http;
pub mod net;
pub mod observe;
pub mod scale;
pub mod scenarios;
pub mod swarm;
pub mod sweeps;
pub mod torn;
pub mod workload;
