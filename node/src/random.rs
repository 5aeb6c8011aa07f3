//! The random numbers behind the node's own decisions (job durations and ids, party codes,
//! integer draws), drawn in one place so the simulation can make them reproducible.
//!
//! In production every draw comes from `rand`'s thread-local generator, seeded by the OS. The
//! simulation runs all hosts of a run on one thread and calls [`seed_this_thread`] with the
//! run's seed first, so the node code draws the same numbers on every replay of a seed.
//! (chitchat's own gossip peer selection stays unseeded: see NOTES.md.)

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every later draw on this thread come from a generator seeded with `seed`.
pub fn seed_this_thread(seed: u64) {
    SEEDED.with(|seeded| *seeded.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Runs `f` with this thread's generator: the seeded one if [`seed_this_thread`] was called,
/// else `rand`'s. `f` must not draw through this module again (the generator is borrowed).
pub fn with<R>(f: impl FnOnce(&mut dyn RngCore) -> R) -> R {
    SEEDED.with(|seeded| match seeded.borrow_mut().as_mut() {
        Some(rng) => f(rng),
        None => f(&mut rand::rng()),
    })
}

/// A random (version 4) UUID from this thread's generator.
pub fn uuid_v4() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    with(|rng| rng.fill_bytes(&mut bytes));
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_seeded_thread_draws_the_same_numbers_for_the_same_seed() {
        let draws = |seed| {
            seed_this_thread(seed);
            let numbers: Vec<u64> = (0..4).map(|_| with(|rng| rng.random())).collect();
            (numbers, uuid_v4())
        };
        let first = draws(7);
        assert_eq!(first, draws(7));
        assert_ne!(first, draws(8));
        assert_eq!(first.1.get_version_num(), 4);
    }
}
