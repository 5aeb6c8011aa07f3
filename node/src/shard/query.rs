//! Reads of one shard: [`Query`]s, answered by the owner (or a replica when the owner is
//! unreachable) without going through the owner actor. They read a tenant's entities by key,
//! prefix or order, so the engine answers them for every service alike; commands go through
//! the actor and the service's state machine ([`machine`](super::machine)).

use serde::{Deserialize, Serialize};

use super::store::KeyValue;
use super::{ShardStore, StoreError, Tenant};
use crate::ids::ShardId;

/// A read of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// One entity's value.
    Get {
        /// The service.
        tenant: Tenant,
        /// The entity key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
    },
    /// How many entities the tenant has in the shard.
    Count {
        /// The service.
        tenant: Tenant,
    },
    /// Entities whose keys start with `prefix`, in key order.
    Prefix {
        /// The service.
        tenant: Tenant,
        /// Key prefix.
        #[serde(with = "crate::codec::bytes")]
        prefix: Vec<u8>,
        /// Most entities returned.
        limit: u32,
    },
    /// The tenant's entity count in the shard and its first `limit` entities in key order:
    /// what a listing needs from each shard, in one call.
    Page {
        /// The service.
        tenant: Tenant,
        /// Most entities returned.
        limit: u32,
    },
    /// Entities in key order after `after`.
    Scan {
        /// The service.
        tenant: Tenant,
        /// Exclusive start key.
        #[serde(with = "crate::codec::bytes::option")]
        after: Option<Vec<u8>>,
        /// Most entities returned.
        limit: u32,
    },
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryAnswer {
    /// For [`Query::Get`].
    Value(#[serde(with = "crate::codec::bytes::option")] Option<Vec<u8>>),
    /// For [`Query::Count`].
    Count(u64),
    /// For [`Query::Scan`]: keys and values.
    Items(Vec<KeyValue>),
    /// For [`Query::Page`].
    Page {
        /// Entities of the tenant in the shard.
        count: u64,
        /// The first of them, keys and values.
        items: Vec<KeyValue>,
    },
}

impl Query {
    /// Whether a change of entity `key` of `tenant` could change this query's answer.
    pub fn touches(&self, tenant: Tenant, key: &[u8]) -> bool {
        match self {
            Self::Get { tenant: t, key: k } => *t == tenant && k == key,
            Self::Prefix {
                tenant: t, prefix, ..
            } => *t == tenant && key.starts_with(prefix),
            Self::Count { tenant: t }
            | Self::Page { tenant: t, .. }
            | Self::Scan { tenant: t, .. } => *t == tenant,
        }
    }

    /// Answers the query from this node's copy of the shard.
    pub fn answer(&self, store: &ShardStore, shard: ShardId) -> Result<QueryAnswer, StoreError> {
        Ok(match self {
            Self::Get { tenant, key } => QueryAnswer::Value(store.get(shard, *tenant, key)?),
            Self::Count { tenant } => QueryAnswer::Count(store.count(shard, *tenant)?),
            Self::Page { tenant, limit } => QueryAnswer::Page {
                count: store.count(shard, *tenant)?,
                items: store.scan(shard, *tenant, None, *limit as usize)?,
            },
            Self::Prefix {
                tenant,
                prefix,
                limit,
            } => QueryAnswer::Items(store.scan_prefix(shard, *tenant, prefix, *limit as usize)?),
            Self::Scan {
                tenant,
                after,
                limit,
            } => {
                QueryAnswer::Items(store.scan(shard, *tenant, after.as_deref(), *limit as usize)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_touches_reads_of_its_key_and_every_listing_of_its_tenant_only() {
        let (users, jobs) = (Tenant(1), Tenant(3));
        let get = |key: &[u8]| Query::Get {
            tenant: users,
            key: key.to_vec(),
        };
        assert!(get(b"a").touches(users, b"a"));
        assert!(!get(b"a").touches(users, b"b"));
        assert!(!get(b"a").touches(jobs, b"a"));
        let prefix = Query::Prefix {
            tenant: users,
            prefix: b"m1/".to_vec(),
            limit: 10,
        };
        assert!(prefix.touches(users, b"m1/123"));
        assert!(!prefix.touches(users, b"m2/123"));
        for listing in [
            Query::Count { tenant: users },
            Query::Page {
                tenant: users,
                limit: 1,
            },
            Query::Scan {
                tenant: users,
                after: Some(b"z".to_vec()),
                limit: 1,
            },
        ] {
            assert!(listing.touches(users, b"a"), "{listing:?}");
            assert!(!listing.touches(jobs, b"a"), "{listing:?}");
        }
    }
}
