//! Why the shard layer did not do what it was asked: the error of every command, read and peer
//! request it answers. The caller tells from the kind whether to retry, elsewhere or not at all;
//! the node carries each kind to remote callers as an answer of its own.

use std::fmt;

use crate::ids::NodeId;

/// Why a command, read or peer request was not carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not own the shard (its view of placement differs); the caller should
    /// wait for membership to settle and try the current owner.
    NotOwner {
        /// Who this node thinks owns it.
        owner: Option<NodeId>,
    },
    /// Not executed (the shard is being taken over, too few copies are live, or this node does
    /// not see a majority); the caller may retry, here or elsewhere.
    Moving {
        /// Why.
        message: String,
    },
    /// Tried and could not complete (a replica did not confirm, a catch-up is running): the
    /// change may or may not take effect later, so the caller must not retry a command blindly.
    Unavailable {
        /// Why.
        message: String,
    },
    /// The request could not be handled (storage failed, no such shard, a sender that may not
    /// send it).
    Failed {
        /// Why.
        message: String,
    },
    /// The command's change is larger than one shard entry may be
    /// ([`RpcConfig::max_entry_bytes`](crate::config::RpcConfig::max_entry_bytes)), so it was
    /// refused before anything was written. Retrying cannot help.
    TooLarge {
        /// Why, for the client.
        message: String,
    },
}

impl Refusal {
    /// A write whose outcome is unknown: it reached an owner that may have applied it (or may
    /// still), so the caller must not retry it blindly and is told so in words.
    pub fn possibly_applied(why: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: format!("{why}; the change may or may not take effect"),
        }
    }
}
