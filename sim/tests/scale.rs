//! Scale, simulated, at sizes the tests afford, with the checker and the measurements of the
//! `scale-50` and `scale-100` scenarios (`troupe_sim::scale`), so those cannot rot. The rows of
//! docs/SIMULATION.md ("Scale") come from
//! `cargo run -p troupe-sim --release -- --scenario scale-100 --seeds 1`.

use troupe_sim::harness::seed_or_env;
use troupe_sim::scale::{self, Report};

/// Runs the scale checker on `nodes` nodes and checks what it measured is plausible.
fn scale_run(nodes: usize) -> turmoil::Result {
    let report = scale::run(seed_or_env(1), nodes)?;
    println!("{}\n{}\n{}", Report::HEADER, report.row(), report.details());
    assert!(report.owned.0 >= 1, "every node owns a shard: {report:?}");
    assert!(
        report.gossip_quiet.total.bytes > 0 && report.gossip_converging.total.bytes > 0,
        "gossip is metered: {report:?}"
    );
    assert!(report.rpc_quiet.bytes > 0, "RPC is counted: {report:?}");
    Ok(())
}

#[test]
fn ten_nodes_converge_detect_a_crash_and_give_its_shards_to_live_owners() -> turmoil::Result {
    scale_run(10)
}

/// 89 s in a debug build with the data directories on a disk (each node's LMDB syncs every
/// seal of its 35 shards), 27 s with `TMPDIR=/dev/shm`, on a loaded 2-core machine.
#[test]
#[ignore = "slow unless TMPDIR is a tmpfs: TMPDIR=/dev/shm cargo test -p troupe-sim --test scale -- --ignored"]
fn twenty_nodes_converge_detect_a_crash_and_give_its_shards_to_live_owners() -> turmoil::Result {
    scale_run(20)
}
