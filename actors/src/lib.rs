//! Troupe's domain actors (ractor) and the commands they accept.
//!
//! The cluster core (issue 2) needs no domain actor yet: routing and `locate` are answered by
//! the node itself. The replicated shard actor and the services built on it (users, sessions,
//! jobs, parties, integers) live here as they are built. Actors are local to their node: no
//! ractor global names, pid registry or process groups (see
//! `docs/decisions/001-inter-node-transport.md`), and peers reach them through the node's RPC.
