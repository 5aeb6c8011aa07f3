//! The scenario catalogue: each scenario builds a seeded cluster, injects its faults and checks
//! its invariants, returning the simulated times it measured or the invariant that failed.
//!
//! Tests run each scenario on pinned seeds; the explorer (`src/main.rs`) sweeps many seeds.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::info;

use crate::audit;
use crate::determinism::{self, Digest};
use crate::harness::{shards_total, SimCluster};
use crate::history::{self, Event, History, Observed, Op, Subject, Violation, FINAL_CLIENT};
use crate::observe::Views;
use crate::swarm::{self, Swarm};
use crate::workload::{self, Workload};
use troupe_node::placement::shard_for_key;

/// Bound on a fresh cluster agreeing on membership and placement (bounds grow with a slower
/// configuration: [`within`]).
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(10);
/// Bound on the failure detector declaring a silent node dead everywhere.
pub const DETECT_WITHIN: Duration = Duration::from_secs(15);
/// Bound on a restarted or reconnected node being everybody's live, ready member again.
pub const REJOIN_WITHIN: Duration = Duration::from_secs(10);

/// What a passing run measured: named simulated durations, in the order they happened.
pub type Measurements = Vec<(&'static str, Duration)>;

/// Prints what a run measured, one line each (tests show it with `--nocapture`).
pub fn print(measured: &Measurements) {
    for (what, took) in measured {
        println!("{what}: {took:?}");
    }
}

/// One scenario: a name for the command line and the function that runs it for a seed.
pub struct Scenario {
    /// Name used by `--scenario`.
    pub name: &'static str,
    /// Runs the scenario; an error names the invariant that failed, with the seed and views.
    pub run: fn(u64) -> turmoil::Result<Measurements>,
}

/// Every scenario, in the order `--scenario all` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "converge",
        run: converge,
    },
    Scenario {
        name: "crash-restart",
        run: crash_restart,
    },
    Scenario {
        name: "partition-repair",
        run: partition_repair,
    },
    Scenario {
        name: "workload-calm",
        run: workload_calm,
    },
    Scenario {
        name: "workload-crash",
        run: workload_crash,
    },
    Scenario {
        name: "workload-torn",
        run: workload_torn,
    },
    Scenario {
        name: "workload-partition",
        run: workload_partition,
    },
    Scenario {
        name: "workload-oneway",
        run: workload_oneway,
    },
    Scenario {
        name: "workload-wipe",
        run: workload_wipe,
    },
    Scenario {
        name: "workload-slow",
        run: workload_slow,
    },
    Scenario {
        name: "workload-lossy",
        run: workload_lossy,
    },
    Scenario {
        name: "workload-rolling",
        run: workload_rolling,
    },
    Scenario {
        name: "workload-churn",
        run: workload_churn,
    },
    Scenario {
        name: "hostile-gossip",
        run: hostile_gossip,
    },
];

/// `bound` for the run's configuration: longer where gossip is slower ([`Swarm::within`]).
fn within(bound: Duration) -> Duration {
    swarm::current().within(bound)
}

/// The scenario called `name`: one of [`ALL`], or a scale scenario ([`crate::scale::SCENARIOS`],
/// run only when named).
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter()
        .chain(crate::scale::SCENARIOS)
        .find(|s| s.name == name)
}

/// How one run of a scenario ended, and the digest of everything that happened in it.
#[derive(Debug)]
pub struct Run {
    /// What it measured, or the invariant that failed (or the panic).
    pub result: Result<Measurements, String>,
    /// The digest of its trace: equal digests, equal runs.
    pub digest: Digest,
}

impl Scenario {
    /// Runs the scenario for `seed` with configuration `swarm` on a fresh thread with the
    /// seed's entropy and turmoil's clocks ([`crate::determinism::isolated`]); with
    /// `trace_file`, the trace goes there too.
    pub fn run_isolated(
        &self,
        seed: u64,
        swarm: Swarm,
        trace_file: Option<&Path>,
    ) -> std::io::Result<Run> {
        let run = self.run;
        let (result, digest) = determinism::isolated(seed, trace_file, move || {
            audit::start(swarm.replication_factor);
            swarm::set(swarm);
            let result = run(seed).map_err(|e| e.to_string());
            let (violations, checked) = audit::finish();
            info!(
                checked,
                violations = violations.len(),
                "shard layer audited"
            );
            match result {
                Ok(_) if !violations.is_empty() => Err(format!(
                    "seed {seed}: the shard layer broke an invariant no client saw:\n  {}",
                    violations.join("\n  ")
                )),
                result => result,
            }
        })?;
        let result =
            result.unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&*panic))));
        Ok(Run { result, digest })
    }
}

/// The message of a panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// Runs the scenario called `name` for `seed` in the standard configuration as
/// [`Scenario::run_isolated`] does, prints what it measured and its digest, and fails with the
/// invariant that broke (for the tests).
pub fn check(name: &str, seed: u64) -> turmoil::Result<Run> {
    check_with(name, seed, Swarm::standard())
}

/// [`check`] in the configuration `seed` draws ([`Swarm::draw`]).
pub fn check_swarm(name: &str, seed: u64) -> turmoil::Result<Run> {
    check_with(name, seed, Swarm::draw(seed))
}

fn check_with(name: &str, seed: u64, swarm: Swarm) -> turmoil::Result<Run> {
    let scenario = find(name).ok_or_else(|| format!("no scenario {name}"))?;
    println!("scenario {name} seed {seed}: {swarm}");
    let run = scenario.run_isolated(seed, swarm, None)?;
    println!("scenario {name} seed {seed}: trace digest {}", run.digest);
    match &run.result {
        Ok(measured) => print(measured),
        Err(failure) => return Err(format!("{failure}\n(trace digest {})", run.digest).into()),
    }
    Ok(run)
}

/// A started cluster whose nodes all agree on membership and placement.
fn converged_cluster(seed: u64, measured: &mut Measurements) -> turmoil::Result<SimCluster> {
    converged_cluster_with_spares(seed, 0, measured)
}

/// [`converged_cluster`] with `spares` nodes that can join later.
fn converged_cluster_with_spares(
    seed: u64,
    spares: usize,
    measured: &mut Measurements,
) -> turmoil::Result<SimCluster> {
    let mut cluster = SimCluster::start_with_spares(seed, swarm::current().nodes, spares)?;
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(within(CONVERGE_WITHIN), "all nodes converge", |v| {
        v.converged(&hosts)
    })?;
    measured.push(("converged", took));
    Ok(cluster)
}

/// Five nodes agree on one membership and one shard table in which every node owns a shard.
pub fn converge(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let cluster = converged_cluster(seed, &mut measured)?;
    let views = cluster.views();
    let table = &views.of("n1").ok_or("n1 answered")?.shards;
    let expected = shards_total(swarm::current().shards);
    if table.len() != expected as usize {
        return Err(format!(
            "seed {seed}: shard table has {} entries, expected {expected}",
            table.len()
        )
        .into());
    }
    for host in cluster.hosts() {
        if !table
            .iter()
            .any(|s| s.owner.as_deref() == Some(host.as_str()))
        {
            return Err(format!("seed {seed}: {host} owns no shard").into());
        }
    }
    Ok(measured)
}

/// A crashed node is seen dead by all others and loses its shards; restarted, it rejoins with a
/// higher generation.
pub fn crash_restart(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let mut cluster = converged_cluster(seed, &mut measured)?;
    let last = cluster
        .hosts()
        .last()
        .cloned()
        .ok_or("a cluster has nodes")?;
    let generation_before = cluster
        .views()
        .generation("n1", &last)
        .ok_or_else(|| format!("n1 lists {last}"))?;
    cluster.crash(&last);
    let survivors = cluster.others(&last);
    let took = cluster.run_until(
        within(DETECT_WITHIN),
        &format!("every survivor sees {last} dead and gives it no shard"),
        |v| survivors.iter().all(|h| v.sees_dead(h, &last)),
    )?;
    measured.push(("crash detected", took));
    cluster.bounce(&last);
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(
        within(REJOIN_WITHIN),
        &format!("{last} rejoins with a higher generation"),
        |v| {
            v.converged(&hosts)
                && hosts
                    .iter()
                    .all(|h| v.generation(h, &last) > Some(generation_before))
        },
    )?;
    measured.push(("restart rejoined", took));
    Ok(measured)
}

/// An isolated node sees all others dead and they see it dead; after repair all converge.
pub fn partition_repair(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let mut cluster = converged_cluster(seed, &mut measured)?;
    cluster.isolate("n1");
    let others = cluster.others("n1");
    let n1_side = |v: &Views| others.iter().all(|o| v.sees_dead("n1", o));
    let others_side = |v: &Views| others.iter().all(|o| v.sees_dead(o, "n1"));
    let took = cluster.run_until_each(
        within(DETECT_WITHIN),
        &[
            ("n1 sees every other node dead", &n1_side),
            ("every other node sees n1 dead", &others_side),
        ],
    )?;
    measured.push(("partition seen by n1", took[0]));
    measured.push(("partition seen by others", took[1]));
    cluster.heal("n1");
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(within(REJOIN_WITHIN), "all nodes converge again", |v| {
        v.converged(&hosts)
    })?;
    measured.push(("reconverged after repair", took));
    Ok(measured)
}

/// Clients driving the workload in every workload scenario (tasks of one client host,
/// [`workload::side_by_side`]).
pub const CLIENTS: usize = 4;
/// Workload before the first fault, and again once the cluster has recovered.
const CALM: Duration = Duration::from_secs(5);
/// Bound on creating the workload's users on a fresh cluster.
const SETUP_WITHIN: Duration = Duration::from_secs(30);
/// Bound on every node agreeing again on membership and placement once the faults stop.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);
/// Bound on a gracefully stopped node handing its shards off and exiting (the hand-off bound
/// of cluster.toml, plus room).
const EXIT_WITHIN: Duration = Duration::from_secs(40);
/// Bound on the clients finishing their last request (each request times out before this).
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Bound on the final reads of every key on every node: room for a few reads that each retry
/// for 30 s (a job that never ends, a key no node can answer).
const FINAL_WITHIN: Duration = Duration::from_secs(150);
/// Bound on some node of a cluster under the workload appending to its log.
const APPEND_WITHIN: Duration = Duration::from_secs(10);
/// Environment variable that prints every event of a workload scenario's history.
pub const HISTORY_ENV: &str = "TROUPE_SIM_HISTORY";
/// Violations printed in a failure report; the rest are counted.
const REPORTED: usize = 8;

/// The workload on a cluster without faults: the checkers' baseline.
pub fn workload_calm(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |_, _| Ok(Vec::new()))
}

/// The workload while a random node crashes and restarts on its data after 1 to 8 s.
pub fn workload_crash(seed: u64) -> turmoil::Result<Measurements> {
    with_fault(
        seed,
        Fault {
            what: "crashed for",
            millis: 1_000..8_000,
            strike: SimCluster::crash,
            repair: SimCluster::bounce,
        },
    )
}

/// The workload while a node crashes in the middle of an append: after 0 to 3 s, the first
/// node to append to its log crashes right after it, so before that write was acknowledged,
/// with the record after it torn ([`SimCluster::crash_mid_append`]); it restarts on its data
/// after 1 to 8 s. It must cut the torn record and lose nothing acknowledged.
pub fn workload_torn(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, rng| {
        cluster.pass(Duration::from_millis(rng.random_range(0..3_000)))?;
        let (victim, waited, _) = cluster.crash_mid_append(APPEND_WITHIN, rng)?;
        let down = Duration::from_millis(rng.random_range(1_000..8_000));
        cluster.pass(down)?;
        cluster.bounce(&victim);
        Ok(vec![("appended after", waited), ("crashed for", down)])
    })
}

/// The workload while a random node is cut off from the other nodes for 3 to 12 s (clients
/// still reach it, so they see what the minority side answers).
pub fn workload_partition(seed: u64) -> turmoil::Result<Measurements> {
    with_fault(
        seed,
        Fault {
            what: "isolated for",
            millis: 3_000..12_000,
            strike: SimCluster::isolate,
            repair: SimCluster::heal,
        },
    )
}

/// The workload while a random node's links are cut one way for 3 to 12 s: either the others
/// no longer hear it (its gossip and answers are lost, their requests still arrive), or it no
/// longer hears them.
pub fn workload_oneway(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, rng| {
        let (what, strike): (_, Action) = if rng.random_bool(0.5) {
            ("outgoing links cut for", SimCluster::cut_outgoing)
        } else {
            ("incoming links cut for", SimCluster::cut_incoming)
        };
        let fault = Fault {
            what,
            millis: 3_000..12_000,
            strike,
            repair: SimCluster::heal,
        };
        fault.run(cluster, rng)
    })
}

/// The workload while a random node crashes, loses its data directory and restarts empty
/// after 1 to 8 s: it must be rebuilt from the other copies, and nothing acknowledged is lost.
pub fn workload_wipe(seed: u64) -> turmoil::Result<Measurements> {
    with_fault(
        seed,
        Fault {
            what: "wiped and down for",
            millis: 1_000..8_000,
            strike: SimCluster::wipe,
            repair: SimCluster::bounce,
        },
    )
}

/// The workload while every link between nodes is slow for 5 to 15 s: messages take up to
/// 0.3 to 2 s (drawn per message, so they also overtake each other on different connections),
/// past RPC deadlines and gossip intervals.
pub fn workload_slow(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, rng| {
        let max = Duration::from_millis(rng.random_range(300..2_000));
        let lasts = Duration::from_millis(rng.random_range(5_000..15_000));
        cluster.slow_down(max);
        cluster.pass(lasts)?;
        cluster.speed_up();
        Ok(vec![("latency up to", max), ("links slow for", lasts)])
    })
}

/// The workload while 10 to 50 % of all gossip datagrams are lost for 5 to 15 s: heartbeats
/// arrive late and in bursts, so failure detectors and leases flicker.
pub fn workload_lossy(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, rng| {
        let percent = rng.random_range(10..=50u64);
        let lasts = Duration::from_millis(rng.random_range(5_000..15_000));
        cluster.lose_gossip(percent as f64 / 100.0);
        cluster.pass(lasts)?;
        cluster.lose_gossip(0.0);
        Ok(vec![("gossip lossy for", lasts)])
    })
}

/// The workload during a rolling restart: each node in turn is stopped gracefully (hand-off,
/// exit), started again on its data, and waited for until every node is ready again.
pub fn workload_rolling(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, _| {
        let mut measured = Vec::new();
        for host in cluster.hosts().to_vec() {
            measured.extend(restart_gracefully(cluster, &host)?);
        }
        Ok(measured)
    })
}

/// The workload while membership churns: a sixth node joins, then a random node leaves
/// gracefully, stays away for 1 to 8 s and joins again.
pub fn workload_churn(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 1, |cluster, rng| {
        let mut measured = Vec::new();
        let newcomer = cluster.spare().ok_or("a spare node")?;
        cluster.join(&newcomer)?;
        let hosts = cluster.hosts().to_vec();
        let took = cluster.run_until(
            within(RECOVER_WITHIN),
            "the new node joins and all converge",
            |v| v.converged(&hosts),
        )?;
        measured.push(("joined", took));
        let leaver = pick(cluster, rng);
        let away = Duration::from_millis(rng.random_range(1_000..8_000));
        cluster.stop(&leaver);
        cluster.run_until_stopped(&leaver, within(EXIT_WITHIN))?;
        cluster.pass(away)?;
        cluster.bounce(&leaver);
        measured.push(("left for", away));
        Ok(measured)
    })
}

/// The workload while a host on the node network without the cluster secret forges gossip:
/// every member `leaving`, an impersonated `n1`, a higher generation of `n1` with a frozen
/// heartbeat, fake node ids and 100,000 fake sender instances ([`crate::hostile`]). No view,
/// placement or lease may change, and every map stays bounded.
pub fn hostile_gossip(seed: u64) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, _| {
        crate::hostile::attack(cluster, "a-guess-at-the-cluster-secret")
    })
}

/// Stops `host` gracefully, starts it again once it has exited, and waits until every node
/// sees every other ready.
fn restart_gracefully(cluster: &mut SimCluster, host: &str) -> turmoil::Result<Measurements> {
    let stopping = cluster.elapsed();
    cluster.stop(host);
    cluster.run_until_stopped(host, within(EXIT_WITHIN))?;
    let exited = cluster.elapsed() - stopping;
    cluster.bounce(host);
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(
        within(RECOVER_WITHIN),
        "the restarted node is ready everywhere",
        |v| v.converged(&hosts),
    )?;
    Ok(vec![("hand-off and exit", exited), ("ready again", took)])
}

/// What a fault does to a node, or how it is repaired.
type Action = fn(&mut SimCluster, &str);

/// The workload around one [`Fault`].
fn with_fault(seed: u64, fault: Fault) -> turmoil::Result<Measurements> {
    with_workload(seed, 0, |cluster, rng| fault.run(cluster, rng))
}

/// A fault that strikes one random node for a random time, then is repaired.
struct Fault {
    what: &'static str,
    millis: std::ops::Range<u64>,
    strike: Action,
    repair: Action,
}

impl Fault {
    /// Strikes the run's number of overlapping victims ([`Swarm::overlap`]; one in the
    /// standard configuration), waits, repairs them all.
    fn run(self, cluster: &mut SimCluster, rng: &mut StdRng) -> turmoil::Result<Measurements> {
        let mut victims = vec![pick(cluster, rng)];
        for _ in 1..swarm::current().overlap {
            let others: Vec<String> = cluster
                .hosts()
                .iter()
                .filter(|h| !victims.contains(h))
                .cloned()
                .collect();
            if let Some(other) = others.get(rng.random_range(0..others.len().max(1))) {
                victims.push(other.clone());
            }
        }
        let lasts = Duration::from_millis(rng.random_range(self.millis));
        for victim in &victims {
            (self.strike)(cluster, victim);
        }
        cluster.pass(lasts)?;
        for victim in &victims {
            (self.repair)(cluster, victim);
        }
        Ok(vec![(self.what, lasts)])
    }
}

/// A node chosen by the scenario's random numbers.
fn pick(cluster: &SimCluster, rng: &mut StdRng) -> String {
    let hosts = cluster.hosts();
    hosts[rng.random_range(0..hosts.len())].clone()
}

/// Runs the workload on a converged cluster (with `spares` nodes that may join) around
/// `faults` (injected while the workload runs; they return what they measured), waits for recovery, reads every key on every node, and checks every invariant over
/// the recorded history.
fn with_workload(
    seed: u64,
    spares: usize,
    faults: impl FnOnce(&mut SimCluster, &mut StdRng) -> turmoil::Result<Measurements>,
) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let mut cluster = converged_cluster_with_spares(seed, spares, &mut measured)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes = cluster.hosts().to_vec();
    let history = History::default();

    let created = Arc::new(AtomicBool::new(false));
    let setup = workload::setup(nodes.clone(), history.clone(), created.clone());
    cluster.client("setup", setup);
    cluster.wait_for(within(SETUP_WITHIN), "setup creates every user", || {
        created.load(Ordering::Relaxed)
    })?;

    let parties = acknowledged(&history, party_created);
    let workload = Workload::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            workload.client(
                format!("c{i}"),
                nodes.clone(),
                rng.random(),
                parties.clone(),
                history.clone(),
            )
        })
        .collect();
    cluster.client("clients", workload::side_by_side(clients));
    cluster.pass(CALM)?;
    measured.extend(faults(&mut cluster, &mut rng)?);
    // Nodes may have joined.
    let nodes = cluster.hosts().to_vec();
    let took = cluster.run_until(
        within(RECOVER_WITHIN),
        "all nodes converge after the faults",
        |v| v.converged(&nodes),
    )?;
    measured.push(("reconverged", took));
    cluster.pass(CALM)?;
    workload.stop();
    cluster.wait_for(within(STOP_WITHIN), "every client stops", || {
        workload.finished()
    })?;

    let read = Arc::new(AtomicBool::new(false));
    let jobs = acknowledged(&history, job_created);
    let reader = workload::final_reads(nodes.clone(), jobs, parties, history.clone(), read.clone());
    cluster.client(FINAL_CLIENT, reader);
    // Checked even when the final reads did not finish: what they saw so far names the key.
    let unfinished = cluster
        .wait_for(
            within(FINAL_WITHIN),
            "final reads of every key on every node",
            || read.load(Ordering::Relaxed),
        )
        .err();

    let events = history.events();
    let violations = history::check(&events, &history::Limits::of(cluster.config()));
    info!(
        seed,
        operations = events.len(),
        violations = violations.len(),
        "history checked"
    );
    if std::env::var_os(HISTORY_ENV).is_some() {
        for event in &events {
            println!("{event}");
        }
    }
    if violations.is_empty() {
        match unfinished {
            Some(timeout) => Err(timeout),
            None => Ok(measured),
        }
    } else {
        Err(report(seed, &events, &violations).into())
    }
}

/// The ids of what the history's acknowledged creations made (`created` reads one event's id).
fn acknowledged(history: &History, created: fn(Op, Observed) -> Option<String>) -> Vec<String> {
    history
        .events()
        .into_iter()
        .filter_map(|e| match e.outcome {
            history::Outcome::Ok(observed) => created(e.op, observed),
            _ => None,
        })
        .collect()
}

/// The id of a job whose creation an event acknowledged.
fn job_created(op: Op, observed: Observed) -> Option<String> {
    match (op, observed) {
        (Op::JobCreate { .. }, Observed::Job { id, .. }) => Some(id),
        _ => None,
    }
}

/// The code of a party whose creation an event acknowledged.
fn party_created(op: Op, observed: Observed) -> Option<String> {
    match (op, observed) {
        (Op::PartyCreate { .. }, Observed::Party(code)) => Some(code),
        _ => None,
    }
}

/// Where a subject is stored: its hash shard (from the key string it is stored under), or a
/// party's region-placed manager shard.
fn shard_of(subject: &Subject) -> String {
    let key = match subject {
        Subject::User(key) => workload::user_id(*key),
        Subject::Sessions(user) => workload::session_user(*user),
        Subject::Job(id) => id.clone(),
        Subject::Party(_) => return "its region's party manager shard".into(),
        Subject::Integers => troupe_node::services::integers::AGGREGATOR_KEY.into(),
    };
    format!("shard {}", shard_for_key(&key, swarm::current().shards))
}

/// The failure text: seed, how to replay it, the first violations, and the history of the
/// first violation's key.
fn report(seed: u64, events: &[Event], violations: &[Violation]) -> String {
    let mut text = format!(
        "seed {seed}: {} invariant violations in {} operations (replay with {}={seed})",
        violations.len(),
        events.len(),
        crate::harness::SEED_ENV
    );
    for violation in violations.iter().take(REPORTED) {
        text.push_str(&format!("\n  {violation}"));
    }
    if violations.len() > REPORTED {
        text.push_str(&format!("\n  ... and {} more", violations.len() - REPORTED));
    }
    if let Some(first) = violations.first() {
        text.push_str(&format!(
            "\n  history of {:?} ({}):",
            first.subject,
            shard_of(&first.subject)
        ));
        for event in events.iter().filter(|e| first.subject.touched_by(e)) {
            text.push_str(&format!("\n    {event}"));
        }
    }
    text
}
