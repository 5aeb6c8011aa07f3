//! The services that store their entities in replicated shards: how each turns its commands
//! into shard changes and its entities into stored bytes. The HTTP contracts live in
//! `troupe-http`, the validation rules in `troupe-actors`.

pub mod integers;
pub mod jobs;
pub mod parties;
pub mod sessions;
pub mod users;
