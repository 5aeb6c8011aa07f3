//! The services that store their entities in replicated shards: how each turns its commands
//! into shard changes and its entities into stored bytes. The HTTP contracts live in
//! `troupe-http`, the validation rules in `troupe-actors`.
//!
//! Each service is a [`Service`](machine::Service) with its own command type, registered once
//! in [`machines`]: the shard engine runs them by number and names none of them (decision 030).

pub mod integers;
pub mod jobs;
pub mod machine;
pub mod parties;
pub mod sessions;
pub mod users;

use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::shard::machine::{DuplicateMachine, Machines};
use machine::{Machine, Service};

/// The node's state machines: every service, under its number. The one place a new service
/// is added to the engine.
pub fn machines(config: &ClusterConfig) -> Result<Machines, DuplicateMachine> {
    let mut machines = Machines::default();
    register(&mut machines, users::Users)?;
    register(
        &mut machines,
        sessions::Sessions {
            config: config.sessions.clone(),
        },
    )?;
    register(
        &mut machines,
        jobs::Jobs {
            config: config.jobs.clone(),
            shards: config.cluster.shards,
        },
    )?;
    register(
        &mut machines,
        integers::Integers {
            config: config.integers.clone(),
        },
    )?;
    register(
        &mut machines,
        parties::Parties {
            config: config.parties.clone(),
        },
    )?;
    Ok(machines)
}

fn register<S: Service>(machines: &mut Machines, service: S) -> Result<(), DuplicateMachine> {
    machines.register(S::MACHINE, Arc::new(Machine(service)))
}
