//! Which simulated node is running: every start of a node runs on a tokio runtime of its own
//! (turmoil gives each host one, and a new one on every restart), so the runtime tells the
//! nodes apart. The audit names the node a report comes from by it, and the trace names the
//! node that logged each line.
//!
//! Runtime ids are unique in the process, so one table per thread serves every run on it.

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static HOSTS: RefCell<HashMap<tokio::runtime::Id, String>> = RefCell::new(HashMap::new());
}

/// Called by a node as it starts, on its host's runtime: what runs on this runtime is `host`'s.
pub fn register(host: &str) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let _ = HOSTS.try_with(|hosts| {
            if let Ok(mut hosts) = hosts.try_borrow_mut() {
                hosts.insert(handle.id(), host.to_owned());
            }
        });
    }
}

/// The name of the node whose runtime is running, if it is a node's.
pub fn current() -> Option<String> {
    let id = tokio::runtime::Handle::try_current().ok()?.id();
    HOSTS
        .try_with(|hosts| hosts.try_borrow().ok()?.get(&id).cloned())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_names_the_node_registered_on_it_and_no_other() {
        assert_eq!(current(), None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            assert_eq!(current(), None);
            register("n3");
            assert_eq!(current().as_deref(), Some("n3"));
        });
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        other.block_on(async { assert_eq!(current(), None) });
    }
}
