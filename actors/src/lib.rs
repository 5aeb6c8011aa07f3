//! The services' domain rules: their types, the validation of what clients send (with the
//! client-facing messages) and pure state transitions: [`users`], [`sessions`], [`jobs`], [`parties`],
//! [`integers`].
//!
//! Nothing here does I/O. The ractor actor that applies these rules, one per owned shard, lives
//! in the node crate's `shard` module, next to the replication it needs. Actors are local to their node: no ractor global names, pid registry
//! or process groups (see `docs/decisions/001-inter-node-transport.md`), and peers reach them
//! through the node's RPC.

pub mod integers;
pub mod jobs;
pub mod parties;
pub mod sessions;
pub mod time;
pub mod users;
