//! The state a command of a batch is decided against: the store, as it will be once the
//! changes decided earlier in the same batch are applied.
//!
//! The owner actor decides a batch of commands one after the other and replicates all their
//! changes as one entry (group commit). Each decision must see the ones before it (a create
//! followed by a second create of the same id is a conflict), but none of them is stored yet:
//! they are stored, here and on every replica, only when the whole entry is. A `Draft` layers
//! those pending changes over the store, for the reads deciding does ([`Draft::get`]).

use std::collections::HashMap;

use super::{Op, ShardStore, StoreError, Tenant};
use crate::ids::ShardId;

/// The store plus the changes of the batch decided so far.
pub struct Draft<'a> {
    store: &'a ShardStore,
    /// Latest pending value of each changed entity; `None` is a pending delete.
    changes: HashMap<(ShardId, Tenant, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Draft<'a> {
    /// No pending changes: reads see the store.
    pub fn new(store: &'a ShardStore) -> Self {
        Self {
            store,
            changes: HashMap::new(),
        }
    }

    /// One entity, with the pending changes applied.
    pub fn get(
        &self,
        shard: ShardId,
        tenant: Tenant,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.changes.get(&(shard, tenant, key.to_vec())) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.get(shard, tenant, key),
        }
    }

    /// Adds the changes of one decided command: later reads see them.
    pub fn record(&mut self, shard: ShardId, ops: &[Op]) {
        for op in ops {
            self.changes
                .insert((shard, op.tenant, op.key.clone()), op.value.clone());
        }
    }

    /// Whether any change is pending (a decision taken now may depend on one).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &[u8], value: Option<&[u8]>) -> Op {
        Op {
            tenant: Tenant(1),
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    async fn store_with(ops: Vec<Op>) -> (tempfile::TempDir, ShardStore) {
        crate::shard::store::tests::open_with(ShardId(0), ops).await
    }

    #[tokio::test]
    async fn pending_changes_shadow_the_store_and_deletes_hide_stored_values() {
        let (_dir, store) = store_with(vec![op(b"a", Some(b"1")), op(b"b", Some(b"2"))]).await;
        let shard = ShardId(0);
        let mut draft = Draft::new(&store);
        assert!(draft.is_empty());
        assert_eq!(
            draft.get(shard, Tenant(1), b"a").expect("get"),
            Some(b"1".to_vec())
        );

        draft.record(
            shard,
            &[op(b"a", Some(b"3")), op(b"b", None), op(b"c", Some(b"4"))],
        );
        assert!(!draft.is_empty());
        assert_eq!(
            draft.get(shard, Tenant(1), b"a").expect("get"),
            Some(b"3".to_vec())
        );
        assert_eq!(draft.get(shard, Tenant(1), b"b").expect("get"), None);
        assert_eq!(
            draft.get(shard, Tenant(1), b"c").expect("get"),
            Some(b"4".to_vec())
        );
        // Other shards and tenants are not affected, and nothing reached the store.
        assert_eq!(draft.get(shard, Tenant(3), b"c").expect("get"), None);
        assert_eq!(draft.get(ShardId(1), Tenant(1), b"a").expect("get"), None);
        assert_eq!(
            store.get(shard, Tenant(1), b"b").expect("get"),
            Some(b"2".to_vec())
        );
    }
}
