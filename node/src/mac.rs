//! Keyed hashes under the cluster secret: the one primitive that both gossip's membership
//! proofs (`membership::keys`) and the inter-node transport's pre-shared key (`rpc::auth`) are
//! made from. It lives below both so that neither layer imports the other for it.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Length of a [`mac`] in bytes (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// HMAC-SHA256 under `secret` over length-prefixed `parts`, so that `["ab", "c"]` and
/// `["a", "bc"]` differ: a proof or a key derived for one purpose never equals one made for
/// another from the same bytes cut differently.
pub fn mac(secret: &Secret, parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // `new_from_slice` accepts keys of any length for HMAC; the error type exists only for
    // fixed-key-size MACs.
    let mut mac = HmacSha256::new_from_slice(secret.expose())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    for part in parts {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares two MACs in constant time: a timing side channel must not reveal how many bytes
/// of a forged proof matched.
pub fn same_mac(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cut_differently_give_different_macs() {
        let secret = Secret::new("secret-one");
        assert_ne!(mac(&secret, &[b"ab", b"c"]), mac(&secret, &[b"a", b"bc"]));
        assert!(same_mac(
            &mac(&secret, &[b"ab", b"c"]),
            &mac(&secret, &[b"ab", b"c"])
        ));
    }

    #[test]
    fn another_secret_gives_another_mac() {
        let parts: [&[u8]; 1] = [b"member"];
        assert!(!same_mac(
            &mac(&Secret::new("secret-one"), &parts),
            &mac(&Secret::new("secret-two"), &parts)
        ));
    }
}
