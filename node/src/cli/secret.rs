//! `troupe secret`: print a new random cluster secret, so nobody has to invent one.

use rand::rngs::OsRng;
use rand::TryRngCore;

/// Random bytes in a generated secret: the key size of everything derived from it.
const SECRET_BYTES: usize = 32;

/// A new secret: 32 bytes from the operating system's generator, as 64 hex digits (printable,
/// so it survives environment variables, YAML and copy-paste).
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Prints one secret on its own line.
pub fn run() -> anyhow::Result<()> {
    println!("{}", generate()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIN_SECRET_BYTES;

    #[test]
    fn a_generated_secret_is_long_enough_printable_and_new_each_time() {
        let a = generate().expect("secret");
        let b = generate().expect("secret");
        assert_eq!(a.len(), 2 * SECRET_BYTES);
        assert!(a.len() >= MIN_SECRET_BYTES);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
