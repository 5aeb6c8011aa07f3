//! The fuzz loop: seeds first, then mutations of the corpus until the budget is spent,
//! deterministic for a given seed and input budget. Inputs a target accepts join the corpus
//! (up to [`MAX_CORPUS`]), so later mutations start from values the seeds did not hold.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::alloc;
use crate::mutate::mutate;
use crate::targets::{Target, Verdict};

/// Most inputs in a target's corpus.
pub const MAX_CORPUS: usize = 1024;

/// Most distinct findings kept per target.
const MAX_FINDINGS: usize = 20;

/// Largest single allocation an input may cause regardless of its length: serde
/// pre-allocates a sequence for at most 1 MiB of elements whatever its length prefix says,
/// and the handshake targets' duplex stream has a buffer of its own.
pub const ALLOCATION_FLOOR: usize = 2 << 20;

/// Largest single allocation per byte of input above the floor: the codec's bincode limit
/// (decision 018) lets a length prefix claim at most 128 times the input (8 claimed bytes
/// per input byte, rounded up to a tier 16 times larger).
pub const ALLOCATION_PER_BYTE: usize = 128;

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many mutated inputs (deterministic: the default tests use it).
    Inputs(u64),
    /// Until this much time has passed (`scripts/fuzz.sh`).
    Time(Duration),
}

/// Something a target must never do, with the input that did it.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What went wrong.
    pub what: String,
    /// The input.
    pub input: Vec<u8>,
}

/// What a run of one target did.
#[derive(Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs tried, seeds included.
    pub inputs: u64,
    /// Inputs the target accepted.
    pub accepted: u64,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Time spent.
    pub elapsed: Duration,
    /// Distinct findings, the first input of each.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Tries one input: the target's own checks, no panic, and a bounded largest allocation.
pub fn try_input(target: &Target, input: &[u8]) -> Result<Verdict, String> {
    alloc::reset_largest();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    let largest = alloc::largest();
    let bound = ALLOCATION_FLOOR.max(input.len().saturating_mul(ALLOCATION_PER_BYTE));
    let verdict = match outcome {
        Ok(result) => result?,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            return Err(format!("panicked: {message}"));
        }
    };
    if largest > bound {
        return Err(format!(
            "allocated {largest} bytes at once for a {}-byte input (bound {bound})",
            input.len()
        ));
    }
    Ok(verdict)
}

/// Runs `target` from its seeds with the generator seeded by `seed`.
pub fn run(target: &Target, seed: u64, budget: Budget) -> Report {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut corpus = (target.seeds)();
    let mut findings: Vec<Finding> = Vec::new();
    let mut note = |what: String, input: &[u8]| {
        if findings.len() < MAX_FINDINGS && !findings.iter().any(|f| f.what == what) {
            findings.push(Finding {
                what,
                input: input.to_vec(),
            });
        }
    };
    let (mut inputs, mut accepted) = (0u64, 0u64);
    for input in &corpus {
        inputs += 1;
        match try_input(target, input) {
            Ok(Verdict::Accepted) => accepted += 1,
            Ok(Verdict::Refused) if target.seeds_valid => {
                note("a valid encoding (a seed) was refused".into(), input)
            }
            Ok(Verdict::Refused) => {}
            Err(what) => note(what, input),
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut tried = 0u64;
    loop {
        let more = match budget {
            Budget::Inputs(n) => tried < n,
            // Checking the clock every input would cost more than some inputs.
            Budget::Time(limit) => tried & 63 != 0 || started.elapsed() < limit,
        };
        if !more {
            break;
        }
        tried += 1;
        inputs += 1;
        let input = &corpus[rng.random_range(0..corpus.len())];
        let other = &corpus[rng.random_range(0..corpus.len())];
        let mutated = mutate(&mut rng, input, other, target.dictionary);
        match try_input(target, &mutated) {
            Ok(Verdict::Accepted) => {
                accepted += 1;
                if corpus.len() < MAX_CORPUS && !corpus.contains(&mutated) {
                    corpus.push(mutated);
                }
            }
            Ok(Verdict::Refused) => {}
            Err(what) => note(what, &mutated),
        }
    }
    Report {
        target: target.name,
        inputs,
        accepted,
        corpus: corpus.len(),
        elapsed: started.elapsed(),
        findings,
    }
}
