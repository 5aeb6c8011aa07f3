//! The short fuzz run of the default `cargo test`: every target, a fixed number of mutated
//! inputs from a fixed seed, so a failure reproduces exactly (`scripts/fuzz.sh` runs longer).

use troupe_fuzz::run::{run, Budget};
use troupe_fuzz::targets;

#[global_allocator]
static ALLOCATOR: troupe_fuzz::alloc::Counting = troupe_fuzz::alloc::Counting;

/// Mutated inputs per target: a few seconds for all targets in a debug build.
const INPUTS_PER_TARGET: u64 = 20_000;

/// The one test of this binary: the allocation high-water mark is process-wide, so no other
/// test may run beside it.
#[test]
fn every_decoder_survives_mutations_of_valid_encodings() {
    let mut findings = Vec::new();
    for target in targets::all() {
        let report = run(&target, 28, Budget::Inputs(INPUTS_PER_TARGET));
        eprintln!(
            "{}: {} inputs, {} accepted, corpus {}, {:?}",
            report.target, report.inputs, report.accepted, report.corpus, report.elapsed
        );
        assert!(
            report.accepted > 0,
            "{}: nothing accepted, so nothing got past the version byte",
            report.target
        );
        for finding in report.findings {
            findings.push(format!(
                "{}: {} (input {:02x?})",
                report.target, finding.what, finding.input
            ));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
