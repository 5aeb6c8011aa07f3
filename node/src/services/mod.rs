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
use crate::shard::{MachineId, Tenant};
use machine::{Machine, Service};

/// Why the services could not be registered: two services claim one number or one key space.
/// Either is a build error, caught at start and by the registry's tests.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two services claim one state machine number.
    #[error(transparent)]
    Machine(#[from] DuplicateMachine),
    /// Two services claim one tenant byte: their entities would share keys in every shard.
    #[error("tenant {} is claimed by {first} and by {second}", tenant.0)]
    SharedTenant {
        /// The byte claimed twice.
        tenant: Tenant,
        /// The service that claimed it first.
        first: MachineId,
        /// The service that claimed it again.
        second: MachineId,
    },
}

/// The node's state machines: every service, under its number. The one place a new service
/// is added to the engine.
pub fn machines(config: &ClusterConfig) -> Result<Machines, RegistryError> {
    registry(config).map(|registry| registry.machines)
}

fn registry(config: &ClusterConfig) -> Result<Registry, RegistryError> {
    let mut registry = Registry::default();
    registry.register(users::Users)?;
    registry.register(sessions::Sessions {
        config: config.sessions.clone(),
    })?;
    registry.register(jobs::Jobs {
        config: config.jobs.clone(),
        shards: config.cluster.shards,
    })?;
    registry.register(integers::Integers {
        config: config.integers.clone(),
    })?;
    registry.register(parties::Parties {
        config: config.parties.clone(),
    })?;
    Ok(registry)
}

/// The machines registered so far and the tenant bytes they claim.
#[derive(Default)]
struct Registry {
    machines: Machines,
    tenants: Vec<(Tenant, MachineId)>,
}

impl Registry {
    fn register<S: Service>(&mut self, service: S) -> Result<(), RegistryError> {
        for &tenant in S::TENANTS {
            if let Some(&(_, first)) = self.tenants.iter().find(|(known, _)| *known == tenant) {
                return Err(RegistryError::SharedTenant {
                    tenant,
                    first,
                    second: S::MACHINE,
                });
            }
        }
        self.machines
            .register(S::MACHINE, Arc::new(Machine(service)))?;
        self.tenants
            .extend(S::TENANTS.iter().map(|&tenant| (tenant, S::MACHINE)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ShardId;
    use crate::shard::draft::Draft;
    use crate::shard::StoreError;
    use machine::{Decision, Outcome};

    fn config() -> ClusterConfig {
        let text = crate::config::EMBEDDED_CLUSTER_TOML.replacen(
            "[cluster]\n",
            "[cluster]\nsecret = \"unit-test-secret-of-at-least-32-bytes\"\n",
            1,
        );
        ClusterConfig::parse(&text, "test").expect("valid")
    }

    #[test]
    fn every_service_is_registered_once_under_its_own_number() {
        let machines = machines(&config()).expect("no number twice");
        let ids: Vec<u8> = machines.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [1, 2, 3, 5, 6]);
    }

    /// The tenant bytes are in every stored key: a service may not take another's, and none
    /// may move, or a node would no longer find what it stored.
    #[test]
    fn no_two_services_share_a_tenant_byte_and_the_bytes_stay_where_they_are_stored() {
        let registry = registry(&config()).expect("no tenant twice");
        let claims: Vec<(u8, u8)> = registry
            .tenants
            .iter()
            .map(|(tenant, machine)| (tenant.0, machine.0))
            .collect();
        assert_eq!(
            claims,
            [(1, 1), (2, 2), (3, 3), (4, 3), (5, 5), (6, 6), (7, 6)],
            "(tenant, service): users, sessions, jobs (and its retired 4), integers, parties"
        );
    }

    /// A service that claims the users' key space.
    struct Squatter;

    impl Service for Squatter {
        const MACHINE: MachineId = MachineId(200);
        const TENANTS: &'static [Tenant] = &[users::TENANT];
        type Command = ();

        fn decide(&self, (): (), _: &Draft, _: ShardId) -> Result<Decision, StoreError> {
            Ok(Decision::answer_only(Outcome::Stored))
        }

        fn adds_data((): &()) -> bool {
            false
        }
    }

    #[test]
    fn a_tenant_byte_claimed_by_a_second_service_is_refused() {
        let mut registry = Registry::default();
        registry.register(users::Users).expect("first claim");
        let error = registry.register(Squatter).expect_err("second claim");
        assert!(
            matches!(
                error,
                RegistryError::SharedTenant {
                    tenant: users::TENANT,
                    first: users::Users::MACHINE,
                    second: Squatter::MACHINE,
                }
            ),
            "{error}"
        );
        assert!(registry.machines.get(Squatter::MACHINE).is_none());
    }
}
