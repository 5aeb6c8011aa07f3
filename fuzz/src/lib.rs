//! Fuzzing on the stable toolchain (decision 018): every decoder a node runs on bytes from the
//! network or from disk, driven by a deterministic mutation loop over valid encodings.
//!
//! - [`mutate`]: the mutator (bit flips, interesting bytes, length fields, truncation,
//!   splicing) over a corpus seeded with encodings of real values;
//! - [`targets`]: one target per decoder, with its seeds and the checks it makes;
//! - [`run`]: the loop, which counts inputs and collects findings (a panic, a refused seed, a
//!   value that does not survive re-encoding, an allocation out of proportion to the input);
//! - [`alloc`]: the counting allocator that measures the largest allocation of each input.
//!
//! None of this is in the node's binary: it is its own crate, run by `cargo test` (a short,
//! seeded run) and by `scripts/fuzz.sh` (minutes per target).

pub mod alloc;
pub mod mutate;
pub mod run;
pub mod seeds;
pub mod targets;
