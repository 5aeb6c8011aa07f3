//! A simulated Troupe cluster: N turmoil hosts `n1..nN`, each running the real
//! [`troupe_node::boot::run`], plus an observer client polling every node's `/cluster` (paused
//! while a scenario only lets time pass or waits for a client: [`SimCluster::pass`]).
//!
//! Tests read like the protocol: start a cluster, inject a fault ([`SimCluster::crash`],
//! [`SimCluster::isolate`], ...), then [`SimCluster::run_until`] a predicate over the nodes'
//! views holds, within a simulated deadline. Time only moves by stepping the simulation: no
//! real sleeps. Each run logs its seed; `TROUPE_SIM_SEED` replays one.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tracing::info;
use troupe_node::boot::{self, NodeIo};
use troupe_node::config::{ClusterConfig, HostPort, NodeConfig};
use troupe_node::ids::{NodeId, RegionName};
use troupe_node::membership::seal::GossipKeys;
use troupe_node::storage::WriteMode;
use turmoil::Sim;

use crate::determinism::trace::TraceLayer;
use crate::gossip::GossipNetwork;
use crate::net::{SimDialer, SimListener};
use crate::observe::{observe, Observations, Views};

/// Port of every node's HTTP edge.
pub const HTTP_PORT: u16 = 8080;
/// Port of every node's gossip (UDP).
pub const GOSSIP_PORT: u16 = 7946;
/// Port of every node's inter-node RPC (TCP).
pub const RPC_PORT: u16 = 7947;
/// Environment variable that replays a given seed.
pub const SEED_ENV: &str = "TROUPE_SIM_SEED";
/// Environment variable with a `tracing` filter for simulation logs (default `warn`).
pub const LOG_ENV: &str = "TROUPE_SIM_LOG";

/// Longest a simulation may run, in simulated time (turmoil fails the run past it).
const SIM_DURATION: Duration = Duration::from_secs(300);
/// Simulated time per step. turmoil steps every host's runtime and walks every link on each
/// one, whether anything happens or not, so this sets a floor under a run's cost: 4 ms costs
/// about a fifth less than 2 ms (docs/SIMULATION.md, "Cost of a run"). Inside a host, timers
/// still fire at their own times; only messages between hosts are delivered on a step, a
/// tick after they are due at most, against latencies of up to 100 ms and protocol
/// deadlines of 50 ms and more.
const TICK: Duration = Duration::from_millis(4);
/// How often `run_until` evaluates its predicate, in simulated time.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Longest a message between two hosts takes without a latency fault (turmoil's default).
const NORMAL_MAX_LATENCY: Duration = Duration::from_millis(100);
/// Regions given to the nodes in turn.
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-southeast-1"];

/// A named predicate over the nodes' views, for [`SimCluster::run_until_each`].
pub type Condition<'a> = (&'a str, &'a dyn Fn(&Views) -> bool);

/// A running simulation of one cluster.
pub struct SimCluster {
    /// Declared first so it drops first: hosts close their LMDB environments before the
    /// temporary directory holding them is removed.
    sim: Sim<'static>,
    /// Nodes started so far, in start order.
    hosts: Vec<String>,
    /// Every node the cluster may have: `hosts` first, then spares not yet started.
    names: Vec<String>,
    /// How to (re)start each node, and how to stop it gracefully.
    plans: BTreeMap<String, Arc<HostPlan>>,
    /// The gossip datagrams in flight, shared by every node.
    gossip: GossipNetwork,
    cluster: ClusterConfig,
    observations: Observations,
    seed: u64,
    _data: TempDir,
}

/// Set by the explorer, which reports seeds itself: keeps `start` from printing each seed.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops [`SimCluster::start`] from printing the seed of every run (the explorer prints its own
/// progress and every failing seed).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The seed to use: `TROUPE_SIM_SEED` when set (to replay a run), else `default`.
pub fn seed_or_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Node code whose log events count in a run's trace, at debug level.
const TRACED_TARGETS: [&str; 4] = ["troupe_node", "troupe_http", "troupe_actors", "troupe_sim"];

/// Installs, once per process, a test-friendly `tracing` subscriber (filter from
/// `TROUPE_SIM_LOG`) and the layer that records the node code's events into each run's trace.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let printed = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let traced = tracing_subscriber::filter::Targets::new().with_targets(
        TRACED_TARGETS.map(|target| (target, tracing::level_filters::LevelFilter::DEBUG)),
    );
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(printed),
        )
        .with(TraceLayer.with_filter(traced))
        .try_init();
}

impl SimCluster {
    /// Builds a seeded simulation with `size` nodes `n1..n{size}`, each seeded with all the
    /// others, and the observer. Nothing runs until the simulation is stepped.
    pub fn start(seed: u64, size: usize) -> turmoil::Result<Self> {
        Self::start_with_spares(seed, size, 0)
    }

    /// Like [`Self::start`], with `spares` more nodes `n{size+1}..` that exist (names,
    /// addresses, data directories, observed by the observer) but only run once
    /// [`Self::join`]ed. Every node's seeds are the started nodes.
    pub fn start_with_spares(seed: u64, size: usize, spares: usize) -> turmoil::Result<Self> {
        Self::start_configured(seed, size, spares, |_| {})
    }

    /// Like [`Self::start_with_spares`], with `configure` changing the simulation's
    /// cluster.toml before any node reads it (e.g. a scale run's shard count); every node runs
    /// the changed copy.
    pub fn start_configured(
        seed: u64,
        size: usize,
        spares: usize,
        configure: impl FnOnce(&mut ClusterConfig),
    ) -> turmoil::Result<Self> {
        init_tracing();
        info!(seed, size, "simulation starting");
        // The node code's own draws (job durations and ids, integers) follow the seed.
        troupe_node::random::seed_this_thread(seed);
        // Stored times (job timestamps, session leases, integer windows) follow the
        // simulation's logical clock, as everything else does.
        troupe_node::clock::install(crate::swarm::node_clock);
        if !quiet() {
            println!("simulation seed {seed} (replay with {SEED_ENV}={seed})");
        }
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .max_message_latency(NORMAL_MAX_LATENCY)
            .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .simulation_duration(SIM_DURATION)
            .tick_duration(TICK)
            .build();
        let data = data_dir()?;
        // Its name is unique to this process: the trace reads it the same in every run.
        crate::determinism::trace::alias(&data.path().to_string_lossy(), "<data>");
        let swarm = crate::swarm::current();
        let mut cluster = cluster_config(&swarm)?;
        configure(&mut cluster);
        let names: Vec<String> = (1..=size + spares).map(|i| format!("n{i}")).collect();
        let ips: Vec<IpAddr> = names.iter().map(|h| sim.lookup(h.as_str())).collect();
        let gossip = GossipNetwork::new(seed);
        let mut plans = BTreeMap::new();
        for (i, host) in names.iter().enumerate() {
            let plan = Arc::new(HostPlan {
                cluster: cluster.clone(),
                config: node_config(host, i, &ips[..size], ips[i], data.path().join(host)),
                ip: ips[i],
                gossip: gossip.clone(),
                skew_ms: swarm.skew_of(i),
                stop: Mutex::default(),
            });
            plans.insert(host.clone(), plan);
        }
        let hosts = names[..size].to_vec();
        for host in &hosts {
            let plan = Arc::clone(&plans[host]);
            sim.host(host.as_str(), move || Arc::clone(&plan).run());
        }
        let observations = Observations::default();
        sim.client("observer", observe(names.clone(), observations.clone()));
        Ok(Self {
            sim,
            hosts,
            names,
            plans,
            gossip,
            cluster,
            observations,
            seed,
            _data: data,
        })
    }

    /// The node host names started so far, `n1..nN` and the spares joined since.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The next spare node, if any is left.
    pub fn spare(&self) -> Option<String> {
        self.names
            .iter()
            .find(|name| !self.hosts.contains(name))
            .cloned()
    }

    /// Starts the spare node `host` ([`Self::start_with_spares`]): it joins through its seeds.
    pub fn join(&mut self, host: &str) -> turmoil::Result {
        let plan = self
            .plans
            .get(host)
            .cloned()
            .ok_or_else(|| format!("{host} is not a node of this simulation"))?;
        if self.hosts.iter().any(|h| h == host) {
            return Err(format!("{host} has already joined").into());
        }
        info!(host, at = ?self.sim.elapsed(), "join");
        self.sim.host(host, move || Arc::clone(&plan).run());
        self.hosts.push(host.to_owned());
        self.forget_views();
        Ok(())
    }

    /// Every node but `host`.
    pub fn others(&self, host: &str) -> Vec<String> {
        self.hosts.iter().filter(|h| *h != host).cloned().collect()
    }

    /// The cluster.toml every node runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.cluster
    }

    /// Adds a client host running `software` (a workload, a reader); it runs as the
    /// simulation is stepped, and an error it returns fails the run.
    pub fn client(
        &mut self,
        name: &str,
        software: impl std::future::Future<Output = turmoil::Result> + 'static,
    ) {
        info!(name, "client starts");
        self.sim.client(name, software);
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// The nodes' latest views (only those given since the last [`Self::forget_views`]).
    pub fn views(&self) -> Views {
        self.observations.snapshot()
    }

    /// Forgets every view, so predicates only see answers given after this point.
    pub fn forget_views(&self) {
        self.observations.clear();
    }

    /// Kills `host` abruptly: no leave, its tasks and sockets are dropped on the spot.
    pub fn crash(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "crash");
        self.sim.crash(host);
        self.forget_views();
    }

    /// Restarts `host` (after a crash or a stop): the node boots again on its data directory.
    pub fn bounce(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "bounce");
        self.sim.bounce(host);
        self.forget_views();
    }

    /// Stops `host` gracefully, as SIGTERM does: it publishes `leaving`, hands its shards off
    /// and exits; [`Self::run_until_stopped`] waits for that, [`Self::bounce`] starts it again.
    pub fn stop(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "stop");
        if let Some(plan) = self.plans.get(host) {
            plan.stop_token().cancel();
        }
    }

    /// Steps the simulation until `host`'s node has exited, within `within`.
    pub fn run_until_stopped(&mut self, host: &str, within: Duration) -> turmoil::Result {
        self.unobserved(|cluster| cluster.step_until_stopped(host, within))
    }

    fn step_until_stopped(&mut self, host: &str, within: Duration) -> turmoil::Result {
        let start = self.sim.elapsed();
        while self.sim.is_host_running(host) {
            if self.sim.elapsed() - start > within {
                return Err(self.timeout(&format!("{host} exits after its stop"), within));
            }
            self.step_for(CHECK_EVERY)?;
        }
        info!(host, took = ?(self.sim.elapsed() - start), "stopped");
        Ok(())
    }

    /// Crashes `host` and deletes its data directory: restarted, it is a node that lost its
    /// disk and must be rebuilt from the others. Panics if the directory cannot be deleted (the
    /// scenario would not test what it says; the explorer reports the panic with the seed).
    pub fn wipe(&mut self, host: &str) {
        self.crash(host);
        crate::audit::forget(host);
        let Some(plan) = self.plans.get(host) else {
            panic!("{host} is not a node of this simulation");
        };
        match std::fs::remove_dir_all(&plan.config.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("cannot wipe {}: {e}", plan.config.data_dir.display())
            }
            _ => info!(host, "data directory wiped"),
        }
    }

    /// Steps the simulation until a node has appended to its write-ahead log, then crashes
    /// that node (one drawn from `rng` if several appended in the same step) and tears the
    /// record after its last whole one ([`crate::torn`]): the crash lands between an append
    /// and its acknowledgement, and cuts the next append short. Returns the node, how long the
    /// append took to come, and what the tear wrote. Every node is watched, not one chosen
    /// first: a node may go many seconds without a write of its own shards' copies.
    pub fn crash_mid_append(
        &mut self,
        within: Duration,
        rng: &mut rand::rngs::StdRng,
    ) -> turmoil::Result<(String, Duration, crate::torn::Tear)> {
        let mut watches = Vec::new();
        for host in self.hosts.clone() {
            let watch = crate::torn::LogWatch::new(&self.data_dir_of(&host)?)?;
            watches.push((host, watch));
        }
        let start = self.sim.elapsed();
        let appended = loop {
            let mut appended = Vec::new();
            for (host, watch) in &watches {
                if watch.appended()? {
                    appended.push(host.clone());
                }
            }
            if !appended.is_empty() {
                break appended;
            }
            if self.sim.elapsed() - start > within {
                return Err(self.timeout("a node appends to its log", within));
            }
            self.sim.step()?;
        };
        let waited = self.sim.elapsed() - start;
        let victim = appended[rand::Rng::random_range(rng, 0..appended.len())].clone();
        self.crash(&victim);
        let tear = crate::torn::tear(&self.data_dir_of(&victim)?, rng)?;
        info!(host = victim, ?tear, "log torn after the crash");
        Ok((victim, waited, tear))
    }

    fn data_dir_of(&self, host: &str) -> Result<PathBuf, String> {
        match self.plans.get(host) {
            Some(plan) => Ok(plan.config.data_dir.clone()),
            None => Err(format!("{host} is not a node of this simulation")),
        }
    }

    /// Cuts the links from `host` to the other nodes, one way: they still reach it, it no
    /// longer reaches them (its gossip and answers are lost, their requests arrive).
    pub fn cut_outgoing(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "cut outgoing");
        for other in self.others(host) {
            self.sim.partition_oneway(host, other.as_str());
        }
        self.forget_views();
    }

    /// Cuts the links from the other nodes to `host`, one way.
    pub fn cut_incoming(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "cut incoming");
        for other in self.others(host) {
            self.sim.partition_oneway(other.as_str(), host);
        }
        self.forget_views();
    }

    /// Makes every link between nodes slow: each message takes up to `max` (turmoil draws
    /// latencies from an exponential curve), until [`Self::speed_up`].
    pub fn slow_down(&mut self, max: Duration) {
        info!(?max, at = ?self.sim.elapsed(), "links slow");
        let hosts = self.hosts.clone();
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[i + 1..] {
                self.sim
                    .set_link_max_message_latency(a.as_str(), b.as_str(), max);
            }
        }
    }

    /// The gossip datagrams in flight, shared by every node (a hostile host parks its own).
    pub fn gossip(&self) -> &GossipNetwork {
        &self.gossip
    }

    /// Loses each gossip datagram with probability `loss` from now on (0 ends the loss).
    pub fn lose_gossip(&mut self, loss: f64) {
        info!(loss, at = ?self.sim.elapsed(), "gossip loss");
        self.gossip.set_loss(loss);
    }

    /// Gives the links between nodes their normal latency again.
    pub fn speed_up(&mut self) {
        self.slow_down(NORMAL_MAX_LATENCY);
    }

    /// Cuts every link between `host` and the other nodes (the observer still reaches it).
    pub fn isolate(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "isolate");
        for other in self.others(host) {
            self.sim.partition(host, other.as_str());
        }
        self.forget_views();
    }

    /// Repairs every link between `host` and the other nodes, whichever way they were cut.
    pub fn heal(&mut self, host: &str) {
        info!(host, at = ?self.sim.elapsed(), "heal");
        for other in self.others(host) {
            self.sim.repair(host, other.as_str());
        }
        self.forget_views();
    }

    /// Steps the simulation until `holds` is true of the views, and returns the simulated time
    /// it took; fails with the last views once `within` has passed without it holding.
    pub fn run_until(
        &mut self,
        within: Duration,
        what: &str,
        holds: impl Fn(&Views) -> bool,
    ) -> turmoil::Result<Duration> {
        let took = self.run_until_each(within, &[(what, &holds)])?;
        Ok(took.first().copied().unwrap_or_default())
    }

    /// Steps the simulation until every condition has held at least once, and returns, for each,
    /// the simulated time until it first held; fails with the last views once `within` has
    /// passed with one still pending.
    pub fn run_until_each(
        &mut self,
        within: Duration,
        conditions: &[Condition<'_>],
    ) -> turmoil::Result<Vec<Duration>> {
        let start = self.sim.elapsed();
        let mut took: Vec<Option<Duration>> = vec![None; conditions.len()];
        loop {
            let now = self.sim.elapsed() - start;
            let views = self.views();
            for ((what, holds), took) in conditions.iter().zip(took.iter_mut()) {
                if took.is_none() && holds(&views) {
                    info!(what, took_ms = now.as_millis() as u64, "condition holds");
                    *took = Some(now);
                }
            }
            if took.iter().all(Option::is_some) {
                return Ok(took.into_iter().flatten().collect());
            }
            if now > within {
                let pending: Vec<&str> = conditions
                    .iter()
                    .zip(&took)
                    .filter(|(_, t)| t.is_none())
                    .map(|((what, _), _)| *what)
                    .collect();
                return Err(self.timeout(&pending.join(", "), within));
            }
            self.step_for(CHECK_EVERY)?;
        }
    }

    /// Steps the simulation for `duration` with the observer paused, for a phase that only
    /// lets time pass (the workload runs, a fault lasts). The views are forgotten at its end,
    /// so a predicate after it sees only answers to requests sent after it.
    pub fn pass(&mut self, duration: Duration) -> turmoil::Result {
        self.unobserved(|cluster| cluster.step_for(duration))
    }

    /// Steps the simulation until `done` (a client's flag, not the views) holds, with the
    /// observer paused, and returns the simulated time it took; fails once `within` has passed
    /// without it. The views are forgotten at its end, as after [`Self::pass`].
    pub fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn() -> bool,
    ) -> turmoil::Result<Duration> {
        self.unobserved(|cluster| cluster.run_until(within, what, |_| done()))
    }

    /// Runs `phase` with the observer paused, then forgets the views it had.
    fn unobserved<R>(&mut self, phase: impl FnOnce(&mut Self) -> R) -> R {
        self.observations.pause(true);
        let result = phase(self);
        self.observations.pause(false);
        self.forget_views();
        result
    }

    /// Steps the simulation for `duration` of simulated time, the observer polling as usual.
    pub fn step_for(&mut self, duration: Duration) -> turmoil::Result {
        let until = self.sim.elapsed() + duration;
        while self.sim.elapsed() < until {
            self.sim.step()?;
        }
        Ok(())
    }

    fn timeout(&self, what: &str, within: Duration) -> Box<dyn Error> {
        let seed = self.seed;
        let views = self.views();
        let replay = format!("seed {seed}, replay with {SEED_ENV}={seed}");
        format!("{what}: not within {within:?} of simulated time ({replay}); last views:\n{views}")
            .into()
    }
}

/// Where the nodes' data directories of one run go: memory (`/dev/shm`) where the machine
/// has it, since a simulated run's syncs check nothing a disk adds and made it wait on the disk
/// for most of its real time; else the system's temporary directory. `TROUPE_SIM_DATA`
/// chooses another parent.
fn data_dir() -> std::io::Result<TempDir> {
    let parent = std::env::var_os("TROUPE_SIM_DATA")
        .map(PathBuf::from)
        .or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            shm.is_dir().then_some(shm)
        });
    let builder = tempfile::Builder::new().prefix("troupe-sim-").clone();
    match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
}

/// Hash shards of a simulated cluster with the standard configuration ([`crate::swarm`]).
pub const SIM_SHARDS: u32 = 16;

/// Every shard of a simulated cluster with `shards` hash shards: those plus one party manager
/// shard per region of [`REGIONS`] (the only regions the simulation's table keeps).
pub fn shards_total(shards: u32) -> u32 {
    shards + REGIONS.len() as u32
}

/// The secret every simulated node shares (a hostile host is one that does not know it).
pub const SIM_SECRET: &str = "simulated-cluster-secret-of-32-bytes";

/// The repository's cluster.toml with the run's gossip interval, phi threshold, shard count,
/// replication factor and re-replication delay ([`crate::swarm`]; 16 shards rather than the
/// default 64 so more seeds run per minute: every shard runs its own seal and catch-up on each
/// membership change, and nothing in the protocol depends on the count), only the regions its
/// nodes use (each region's manager is a shard), and jobs of 0.5 to 2.5 s with a 2 s timeout,
/// so jobs end (either way) within a scenario.
fn cluster_config(swarm: &crate::swarm::Swarm) -> turmoil::Result<ClusterConfig> {
    let mut cluster = ClusterConfig::load(None, Some(SIM_SECRET.to_owned()))?;
    cluster.gossip.interval_ms = swarm.gossip_interval_ms;
    cluster.gossip.phi_threshold = swarm.phi_threshold;
    cluster.gossip.initial_interval_ms = swarm.detector_prior_ms;
    cluster.cluster.shards = swarm.shards;
    cluster.cluster.replication_factor = swarm.replication_factor;
    cluster.migration.re_replication_delay_ms = swarm.re_replication_delay_ms;
    cluster
        .regions
        .retain(|r| REGIONS.contains(&r.name.as_str()));
    cluster.parties.managers_per_region = 1;
    cluster.jobs.min_duration_ms = 500;
    cluster.jobs.max_duration_ms = 2_500;
    cluster.jobs.timeout_ms = 2_000;
    // The simulated clients are no load balancers: a stopping node drains only for the gossip
    // rounds its peers need to see it leave.
    cluster.http.drain_ms = 0;
    Ok(cluster)
}

/// Node `index` of the cluster: listens on the wildcard address, advertises its host IP `ip`,
/// and uses every other address of `seeds` as a gossip seed (IP literals: names would go to
/// real DNS).
fn node_config(
    host: &str,
    index: usize,
    seeds: &[IpAddr],
    ip: IpAddr,
    data_dir: PathBuf,
) -> NodeConfig {
    let wildcard = |port| SocketAddr::from(([0, 0, 0, 0], port));
    let advertised = |port| HostPort::new(ip.to_string(), port);
    NodeConfig {
        node_id: NodeId::new(host),
        region: RegionName::new(REGIONS[index % REGIONS.len()]),
        http_listen: wildcard(HTTP_PORT),
        http_advertise: advertised(HTTP_PORT),
        admin_listen: None,
        gossip_listen: wildcard(GOSSIP_PORT),
        gossip_advertise: advertised(GOSSIP_PORT),
        rpc_listen: wildcard(RPC_PORT),
        rpc_advertise: advertised(RPC_PORT),
        seeds: seeds
            .iter()
            .filter(|&&other| other != ip)
            .map(|&other| HostPort::new(other.to_string(), GOSSIP_PORT))
            .collect(),
        data_dir,
    }
}

/// The gossip keys of `cluster`, as production derives them.
pub fn gossip_keys(cluster: &ClusterConfig) -> GossipKeys {
    GossipKeys::derive(
        &cluster.cluster.name,
        &cluster.cluster.secret,
        cluster.cluster.previous_secret.as_ref(),
    )
}

/// Everything one host needs to (re)start its node; the sockets are made anew on every start.
struct HostPlan {
    cluster: ClusterConfig,
    config: NodeConfig,
    ip: IpAddr,
    gossip: GossipNetwork,
    /// How far this node's wall clock is off ([`crate::swarm`]).
    skew_ms: i64,
    /// The shutdown token of the node's current run (a new one on every start).
    stop: Mutex<CancellationToken>,
}

impl HostPlan {
    fn stop_token(&self) -> CancellationToken {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The host's software: binds the simulated sockets and runs the node until it stops.
    /// turmoil calls this again after a bounce, so nothing from a previous run is reused.
    async fn run(self: Arc<Self>) -> turmoil::Result {
        crate::swarm::skew_this_host(self.skew_ms);
        crate::hosts::register(self.config.node_id.as_str());
        std::fs::create_dir_all(&self.config.data_dir)?;
        let io = NodeIo {
            http: Box::new(SimListener::bind(HTTP_PORT).await?),
            admin: None,
            rpc: Box::new(SimListener::bind(RPC_PORT).await?),
            dialer: Arc::new(SimDialer),
            gossip: Box::new(self.gossip.transport(self.ip, gossip_keys(&self.cluster))),
            gossip_advertise: SocketAddr::new(self.ip, GOSSIP_PORT),
            // The simulation's transport sends no notices: every simulated node has the secret.
            key_mismatches: Default::default(),
            writes: WriteMode::Inline,
            // The simulated wall clock, as production floors by the real one: a node restarted
            // with an empty data directory still comes back with a higher generation.
            generation_floor: turmoil::since_epoch().map_or(0, |d| d.as_millis() as u64),
        };
        let stop = CancellationToken::new();
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = stop.clone();
        boot::run(self.cluster.clone(), self.config.clone(), io, stop).await?;
        Ok(())
    }
}
