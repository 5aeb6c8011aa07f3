//! Troupe's domain actors (ractor), the commands they accept and the domain rules they run.
//!
//! The cluster core (issue 2) needs no domain actor: routing and `locate` are answered by the
//! node itself. The users service's domain rules (ids, the user record, validation of create and
//! update bodies) live in [`users`]; the replicated shard actor that runs them lives in the node
//! crate's `shard` module. Actors are local to their node: no ractor global names, pid registry
//! or process groups (see `docs/decisions/001-inter-node-transport.md`), and peers reach them
//! through the node's RPC.

pub mod users;
