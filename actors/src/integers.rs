//! The integers service's domain rules: what generators emit, and how a window of integers
//! becomes a stored average.
//!
//! **No two generators emit the same value in the same tick**: generator `g` of `G` draws
//! uniformly from the values of `1..=10000` congruent to `g + 1` modulo `G`. The classes are
//! disjoint, so two generators can never draw the same value, and when `G` divides 10000 the
//! values of all generators together are still uniform over `1..=10000`.

use serde::{Deserialize, Serialize};

/// One integer on its way from a generator to the aggregator (the wire carries it as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The generator.
    pub generator: u32,
    /// Wall-clock tick number (`at_ms / tick_ms`).
    pub tick: u64,
    /// The value.
    pub value: u64,
    /// When it was emitted, Unix milliseconds.
    pub at_ms: u64,
}

/// Smallest value a generator emits.
pub const MIN_VALUE: u64 = 1;
/// Largest value a generator emits.
pub const MAX_VALUE: u64 = 10_000;

/// The value generator `generator` (of `generators`) emits for a uniform draw `draw` (any
/// `u64`): the `draw mod n`-th member of its residue class.
pub fn value_for(generator: u32, generators: u32, draw: u64) -> u64 {
    let g = u64::from(generators.max(1));
    let first = MIN_VALUE + u64::from(generator) % g;
    let members = (MAX_VALUE - first) / g + 1;
    first + (draw % members) * g
}

/// A stored window: the average of the integers received with timestamps in
/// `[window_start, window_start + window)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Average {
    /// Window start, Unix milliseconds (aligned to the wall clock).
    pub window_start_ms: u64,
    /// Mean of the integers of the window.
    pub average: f64,
    /// How many integers were averaged.
    pub count: u64,
    /// False when the aggregator did not see the whole window (it started or moved during
    /// it), a generator was silent, or fewer than 90 % of a full window's integers arrived.
    pub complete: bool,
}

/// The start of the window that contains `at_ms`.
pub fn window_start(at_ms: u64, window_ms: u64) -> u64 {
    at_ms - at_ms % window_ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_draw_from_disjoint_classes_that_cover_the_range() {
        let mut seen = std::collections::BTreeSet::new();
        for draw in 0..20_000 {
            let a = value_for(0, 2, draw);
            let b = value_for(1, 2, draw);
            assert_ne!(a, b);
            assert!((MIN_VALUE..=MAX_VALUE).contains(&a) && (MIN_VALUE..=MAX_VALUE).contains(&b));
            assert_eq!((a % 2, b % 2), (1, 0));
            seen.insert(a);
            seen.insert(b);
        }
        assert_eq!(seen.len() as u64, MAX_VALUE);
    }

    #[test]
    fn three_generators_never_collide_either() {
        for draw in 0..5_000 {
            let values: std::collections::BTreeSet<u64> =
                (0..3).map(|g| value_for(g, 3, draw * 7919)).collect();
            assert_eq!(values.len(), 3);
        }
    }

    #[test]
    fn windows_are_aligned_to_the_clock() {
        assert_eq!(window_start(12_345, 5_000), 10_000);
        assert_eq!(window_start(15_000, 5_000), 15_000);
    }
}
