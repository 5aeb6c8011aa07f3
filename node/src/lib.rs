//! A Troupe cluster node. `main.rs` is a thin CLI over this library, so the simulation boots
//! exactly the same code through [`boot::run`].
//!
//! Table of contents, from the outside in:
//! - [`cli`]: the `troupe` subcommands (`node`, `local`).
//! - [`boot`]: starting and stopping a node; [`boot::NodeIo`] is the production/simulation seam.
//! - [`handoff`]: a stopping node handing its shards to their next owners.
//! - [`precopy`]: a joining node receiving the shards it will hold before it becomes ready.
//! - [`api`]: what the node answers, over HTTP ([`troupe_http::NodeApi`]) and to peers.
//! - [`node`]: the running node's state and local logic.
//! - [`dashboard`], [`events`]: what the live dashboard (`/ui`) shows of this node and gathers
//!   from the others; the node's recent membership and ownership events.
//! - [`routing`]: serve locally or forward to the owner, with bounded retries.
//! - [`protocol`]: what nodes say to each other: the calls and answers that [`rpc`] carries
//!   for routing and the services, with the shard layer's own peer protocol nested in them.
//! - [`services`]: the services on the shard layer (users), their keys and commands.
//! - [`shard`]: replicated shards: owner actors, replicas, catch-up, the LMDB shard store, and
//!   their peer protocol, sent through [`shard::Peers`].
//! - [`topology`]: membership plus the shard table computed from it.
//! - [`layout`]: which shards exist (hash shards, then one per party manager).
//! - [`placement`]: the pure placement function (balanced rendezvous hashing, by region for
//!   manager shards).
//! - [`membership`]: chitchat gossip behind a typed snapshot and change stream.
//! - [`rpc`], [`net`], [`codec`]: the inter-node path (frames, auth, calls) and its seams,
//!   generic over the messages it carries.
//! - [`mac`]: keyed hashes under the cluster secret, for gossip proofs and the RPC handshake.
//! - [`storage`]: the node's LMDB environment.
//! - [`wal`]: write-ahead log segments: append, one sync for many records, replay, torn tails.
//! - [`config`], [`ids`], [`region`], [`metrics`]: the vocabulary.
//! - [`random`]: the node's own random draws, seedable so simulations replay them.

pub mod api;
pub mod boot;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod handoff;
pub mod ids;
pub mod layout;
pub mod mac;
pub mod membership;
pub mod metrics;
pub mod net;
pub mod node;
pub mod placement;
pub mod precopy;
pub mod protocol;
pub mod random;
pub mod region;
pub mod routing;
pub mod rpc;
pub mod services;
pub mod shard;
pub mod storage;
pub mod topology;
pub mod wal;
