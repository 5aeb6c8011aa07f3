//! Integers: generator actors emit integers, one aggregator actor averages them per
//! clock-aligned window and stores each average in the shard layer (durable, replicated).
//!
//! Placement: generator `g` is the placement unit `integers/generator/g`, assigned over the
//! ready nodes by the balanced placement function, so generators sit on different nodes when
//! there are enough. The aggregator runs on the owner of the shard of [`AGGREGATOR_KEY`], next
//! to the shard its averages are stored in, and moves with it. [`run`] follows the topology and
//! starts or stops this node's actors.
//!
//! Integers are tagged with their generator and tick (the wall-clock tick number, the same
//! whichever node runs the generator), so the aggregator counts each at most once, also across
//! a generator's move. A window the aggregator did not see whole, in which a generator was
//! silent, or that holds fewer than 90 % of the integers a full window holds (a generator was
//! moving), is stored with `complete: false`.
//!
//! The aggregator holds a window's integers in memory until the window is over, so when it
//! moves or its node dies they would be lost, and with them the whole window if its successor
//! started after the window ended. Generators therefore keep their last two windows of integers
//! and send them again to each new aggregator: a window that was open during a failover is
//! stored (incomplete) from what the generators still hold, rather than missing. An aggregator
//! is told apart by the incarnation it answers with, not by its node: a node that crashes and
//! restarts before it is declared dead keeps its name and its shard, but not its aggregator's
//! memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use troupe_actors::integers::{self, Average};
use troupe_http::ApiError;

use crate::clock::unix_millis;
use crate::codec;
use crate::config::IntegersConfig;
use crate::ids::{NodeId, ShardId};
use crate::node::{Node, SampleSink};
use crate::placement::{assign, shard_for_key};
use crate::protocol::{Request, Response};
use crate::routing::read_shard;
use crate::services::machine::{self, Decision, Outcome, Service};
use crate::shard::draft::Draft;
use crate::shard::host::COMMAND_TIMEOUT;
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::{MachineId, Op, StoreError, Tenant};

/// The key space of the stored averages, by window start: part of every stored average's key,
/// so never to change.
pub const TENANT: Tenant = Tenant(5);

/// The key whose shard holds the averages and whose owner runs the aggregator.
pub const AGGREGATOR_KEY: &str = "integers/aggregator";
/// Integers of one generator in flight to the aggregator; further ticks are skipped.
const MAX_IN_FLIGHT: usize = 16;
/// Deadline of one integer's delivery; a late integer is simply not counted.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);

pub use troupe_actors::integers::Sample;

/// The shard of the averages.
pub fn aggregator_shard(shards: u32) -> ShardId {
    shard_for_key(AGGREGATOR_KEY, shards)
}

/// This node's aggregator and its incarnation, if it runs here (for the RPC handler); cheap
/// to clone.
#[derive(Clone, Default)]
pub struct LocalAggregator(Arc<Mutex<Option<Running>>>);

/// A running aggregator actor and its incarnation.
type Running = (ActorRef<AggregatorMsg>, u64);

impl LocalAggregator {
    fn get(&self) -> Option<Running> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, aggregator: Option<Running>) -> Option<Running> {
        std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
            aggregator,
        )
    }
}

impl SampleSink for LocalAggregator {
    fn deliver(&self, sample: Sample) -> Response {
        match self.get() {
            Some((actor, incarnation)) if actor.cast(AggregatorMsg::Sample(sample)).is_ok() => {
                Response::Taken {
                    aggregator: incarnation,
                }
            }
            _ => Response::NotOwner { owner: None },
        }
    }
}

/// Follows the topology until `shutdown`: runs the generators placed on this node and the
/// aggregator when this node owns its shard.
pub async fn run(node: Node, aggregator: LocalAggregator, shutdown: CancellationToken) {
    let mut topology = node.inner.topology.clone();
    let mut generators: HashMap<u32, ActorRef<GeneratorMsg>> = HashMap::new();
    loop {
        let current = topology.borrow_and_update().clone();
        let config = &node.inner.cluster.integers;
        let mine = generators_of(
            &node.inner.me,
            config,
            &current.membership.placement_nodes(),
        );
        generators.retain(|g, actor| {
            let keep = mine.contains(g);
            if !keep {
                actor.stop(Some("generator moved".into()));
            }
            keep
        });
        for g in mine {
            if let std::collections::hash_map::Entry::Vacant(slot) = generators.entry(g) {
                match Actor::spawn(None, Generator, (node.clone(), g)).await {
                    Ok((actor, _)) => {
                        slot.insert(actor);
                    }
                    Err(error) => tracing::warn!(generator = g, %error, "cannot start a generator"),
                }
            }
        }
        let shard = aggregator_shard(node.inner.cluster.cluster.shards);
        ensure_aggregator(&node, &aggregator, current.owns(&node.inner.me, shard)).await;
        tokio::select! {
            // The node is stopping.
            _ = shutdown.cancelled() => break,
            changed = topology.changed() => if changed.is_err() { break },
        }
    }
    for (_, actor) in generators {
        actor.stop(None);
    }
    if let Some((actor, _)) = aggregator.set(None) {
        let _ = actor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}

/// The generators placement puts on `me`.
fn generators_of(me: &NodeId, config: &IntegersConfig, nodes: &[NodeId]) -> Vec<u32> {
    let units: Vec<String> = (0..config.generators)
        .map(|g| format!("integers/generator/{g}"))
        .collect();
    assign(&units, nodes)
        .iter()
        .enumerate()
        .filter(|(_, owner)| *owner == me)
        .map(|(g, _)| g as u32)
        .collect()
}

async fn ensure_aggregator(node: &Node, aggregator: &LocalAggregator, here: bool) {
    let running = aggregator.get().is_some();
    if here && !running {
        let incarnation = crate::random::with(|rng| rng.random::<u64>());
        match Actor::spawn(None, Aggregator, node.clone()).await {
            Ok((actor, _)) => {
                tracing::info!(incarnation, "aggregator started on this node");
                aggregator.set(Some((actor, incarnation)));
            }
            Err(error) => tracing::warn!(%error, "cannot start the aggregator"),
        }
    } else if !here && running {
        if let Some((actor, _)) = aggregator.set(None) {
            tracing::info!("aggregator moved away from this node");
            actor.stop(None);
        }
    }
}

/// A generator actor: one integer per wall-clock tick.
pub struct Generator;

/// Generator messages.
pub enum GeneratorMsg {
    /// Emit for this tick, then schedule the next.
    Tick(u64),
}

/// Generator state.
pub struct GeneratorState {
    node: Node,
    generator: u32,
    in_flight: Arc<AtomicUsize>,
    /// The integers of the last two windows, oldest first, to send again to a new aggregator.
    recent: VecDeque<Sample>,
    takers: Arc<Mutex<Takers>>,
}

/// Which aggregators took this generator's integers, by incarnation.
#[derive(Debug, Default)]
struct Takers {
    /// The one that took the latest delivery.
    latest: Option<u64>,
    /// The one that took the last whole resend.
    resent: Option<u64>,
    /// A resend is under way.
    resending: bool,
}

impl Takers {
    /// Whether the next tick sends every recent integer: the aggregator taking them has not
    /// had them all yet (a new one answered, or none took a whole resend so far).
    fn resend_due(&self) -> bool {
        !self.resending && (self.resent.is_none() || self.latest != self.resent)
    }

    /// The delivery ended. Its last integer was taken by `delivery.last`, which becomes the
    /// latest taker; a resend counts as whole only for an aggregator that took every one of
    /// its integers ([`Delivery::whole`]).
    fn delivered(&mut self, resend: bool, delivery: Delivery) {
        if delivery.last.is_some() {
            self.latest = delivery.last;
        }
        if resend {
            if delivery.whole.is_some() {
                self.resent = delivery.whole;
            }
            self.resending = false;
        }
    }
}

/// Who took the integers of one delivery, as they were sent one by one.
///
/// A resend can straddle a failover: the aggregator shard's owner changes while it is under
/// way, so its first integers go to one aggregator and the rest to the next. The first then
/// stops with the older windows unstored, and the next never had them. Such a resend is not
/// whole for anyone, and the generator must send everything again to the new aggregator
/// (decision 016; the simulation's `workload-crash` found it, and
/// `crash_seed_whose_resend_straddled_a_failover_stores_every_integers_window` replays it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Delivery {
    /// The aggregator that took the integer sent last, if it was taken.
    last: Option<u64>,
    /// The aggregator that took every integer sent so far, if one did.
    whole: Option<u64>,
    /// How many integers were sent.
    sent: usize,
}

impl Delivery {
    /// One more integer was sent, and `taker` took it (`None`: refused or lost).
    fn took(&mut self, taker: Option<u64>) {
        self.whole = if self.sent == 0 || self.whole == taker {
            taker
        } else {
            None
        };
        self.last = taker;
        self.sent += 1;
    }
}

impl GeneratorState {
    /// Keeps `sample` among the recent ones, forgetting those older than two windows.
    fn remember(&mut self, sample: Sample) {
        let config = &self.node.inner.cluster.integers;
        let kept = (2 * config.window_ms() / config.tick_ms.max(1)) as usize + 1;
        self.recent.push_back(sample);
        while self.recent.len() > kept {
            self.recent.pop_front();
        }
    }

    /// What to send this tick, and whether it is a resend: only `sample`, or every recent
    /// integer when a resend is due ([`Takers::resend_due`]).
    fn batch(&self, sample: Sample) -> (Vec<Sample>, bool) {
        let mut takers = self.takers.lock().unwrap_or_else(|p| p.into_inner());
        if takers.resend_due() {
            takers.resending = true;
            (self.recent.iter().copied().collect(), true)
        } else {
            (vec![sample], false)
        }
    }
}

impl Actor for Generator {
    type Msg = GeneratorMsg;
    type State = GeneratorState;
    type Arguments = (Node, u32);

    async fn pre_start(
        &self,
        myself: ActorRef<GeneratorMsg>,
        (node, generator): (Node, u32),
    ) -> Result<GeneratorState, ActorProcessingErr> {
        let interval = node.inner.cluster.integers.tick_ms;
        schedule_tick(&myself, unix_millis() / interval + 1, interval);
        Ok(GeneratorState {
            node,
            generator,
            in_flight: Arc::new(AtomicUsize::new(0)),
            recent: VecDeque::new(),
            takers: Arc::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GeneratorMsg>,
        GeneratorMsg::Tick(tick): GeneratorMsg,
        state: &mut GeneratorState,
    ) -> Result<(), ActorProcessingErr> {
        let config = &state.node.inner.cluster.integers;
        let interval = config.tick_ms;
        let draw = crate::random::with(|rng| rng.random::<u64>());
        let sample = Sample {
            generator: state.generator,
            tick,
            value: integers::value_for(state.generator, config.generators, draw),
            at_ms: tick * interval,
        };
        state.remember(sample);
        if state.in_flight.load(Ordering::Relaxed) < MAX_IN_FLIGHT {
            state.in_flight.fetch_add(1, Ordering::Relaxed);
            let (batch, resend) = state.batch(sample);
            let (node, in_flight) = (state.node.clone(), state.in_flight.clone());
            let takers = state.takers.clone();
            tokio::spawn(async move {
                // Oldest first. A refusal (no aggregator there yet) ends a resend unfinished,
                // and a later tick starts it again; the aggregator counts each integer once.
                let mut delivery = Delivery::default();
                for sample in batch {
                    delivery.took(send(&node, sample).await);
                    if delivery.last.is_none() {
                        break;
                    }
                }
                takers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .delivered(resend, delivery);
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // After a stall, skip the missed ticks rather than emitting them late.
        schedule_tick(
            &myself,
            (tick + 1).max(unix_millis() / interval + 1),
            interval,
        );
        Ok(())
    }
}

fn schedule_tick(myself: &ActorRef<GeneratorMsg>, tick: u64, interval_ms: u64) {
    let wait = (tick * interval_ms).saturating_sub(unix_millis());
    myself.send_after(Duration::from_millis(wait), move || {
        GeneratorMsg::Tick(tick)
    });
}

/// One delivery attempt to the aggregator's node: the incarnation of the aggregator that took
/// it, or `None` (the sample is then lost unless a resend to a new aggregator carries it).
async fn send(node: &Node, sample: Sample) -> Option<u64> {
    let shard = aggregator_shard(node.inner.cluster.cluster.shards);
    let topology = node.topology();
    let owner = topology.owner(shard)?;
    let answer = if owner.node_id == node.inner.me {
        node.inner.aggregator.deliver(sample)
    } else {
        let request = Request::Integer(sample);
        let sent = node
            .inner
            .rpc
            .call_with_timeout(&owner.node_id, &owner.rpc_addr, request, SEND_TIMEOUT)
            .await;
        match sent {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%error, "integer not delivered");
                return None;
            }
        }
    };
    match answer {
        Response::Taken { aggregator } => Some(aggregator),
        _ => None,
    }
}

/// The aggregator actor.
pub struct Aggregator;

/// Aggregator messages.
pub enum AggregatorMsg {
    /// An integer.
    Sample(Sample),
    /// Store the windows that are over.
    Flush,
}

/// Aggregator state.
pub struct AggregatorState {
    node: Node,
    /// When this aggregator started: earlier windows are incomplete.
    started_ms: u64,
    windows: BTreeMap<u64, Window>,
    /// Everything before this was stored or given up.
    flushed_until: u64,
}

#[derive(Default)]
struct Window {
    sum: u64,
    seen: BTreeSet<(u32, u64)>,
    generators: BTreeSet<u32>,
    /// When its last integer arrived, Unix milliseconds.
    last_added_ms: u64,
}

impl Actor for Aggregator {
    type Msg = AggregatorMsg;
    type State = AggregatorState;
    type Arguments = Node;

    async fn pre_start(
        &self,
        myself: ActorRef<AggregatorMsg>,
        node: Node,
    ) -> Result<AggregatorState, ActorProcessingErr> {
        let interval = node.inner.cluster.integers.interval();
        myself.send_interval(interval.max(Duration::from_millis(100)), || {
            AggregatorMsg::Flush
        });
        let started_ms = unix_millis();
        Ok(AggregatorState {
            node,
            started_ms,
            windows: BTreeMap::new(),
            flushed_until: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AggregatorMsg>,
        message: AggregatorMsg,
        state: &mut AggregatorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AggregatorMsg::Sample(sample) => state.add(sample),
            AggregatorMsg::Flush => state.flush().await,
        }
        Ok(())
    }
}

impl AggregatorState {
    fn config(&self) -> &IntegersConfig {
        &self.node.inner.cluster.integers
    }

    fn add(&mut self, sample: Sample) {
        let start = integers::window_start(sample.at_ms, self.config().window_ms());
        if start < self.flushed_until {
            return; // Too late: its window is stored.
        }
        let window = self.windows.entry(start).or_default();
        if window.seen.insert((sample.generator, sample.tick)) {
            window.sum += sample.value;
            window.generators.insert(sample.generator);
            window.last_added_ms = unix_millis();
        }
    }

    /// Stores the windows that ended more than a few ticks ago and took no integer for as
    /// long (late integers, and those generators send again to a new aggregator, still count),
    /// oldest first and in order: a window still taking integers holds back every later one,
    /// or a reader would see a later window stored and an earlier one missing, until the
    /// earlier one came in.
    async fn flush(&mut self) {
        let config = self.config().clone();
        let grace = 3 * config.tick_ms;
        // Integers a full window holds; one missing in ten is tolerated (a slow tick).
        let expected = u64::from(config.generators) * config.window_ms() / config.tick_ms;
        let now = unix_millis();
        let due: Vec<u64> = self
            .windows
            .iter()
            .take_while(|(start, w)| {
                *start + config.window_ms() + grace <= now && w.last_added_ms + grace <= now
            })
            .map(|(start, _)| *start)
            .collect();
        for start in due {
            let Some(window) = self.windows.get(&start) else {
                continue;
            };
            let count = window.seen.len() as u64;
            let average = Average {
                window_start_ms: start,
                average: window.sum as f64 / count.max(1) as f64,
                count,
                complete: self.started_ms <= start
                    && window.generators.len() as u32 == config.generators
                    && count * 10 >= expected * 9,
            };
            let shard = aggregator_shard(self.node.inner.cluster.cluster.shards);
            let command = IntegerCommand::StoreAverage(average);
            let stored =
                machine::run_here::<Integers>(&self.node, shard, &command, COMMAND_TIMEOUT).await;
            match stored {
                Ok(_) => {
                    self.windows.remove(&start);
                    self.flushed_until = self.flushed_until.max(start + config.window_ms());
                }
                // Not stored yet: try again at the next flush, and keep the later ones back.
                Err(refusal) => {
                    tracing::debug!(window = start, %refusal, "average not stored yet");
                    break;
                }
            }
        }
    }
}

/// The integers service's state machine (the aggregator's averages).
pub struct Integers {
    /// Windows and the kept history.
    pub config: IntegersConfig,
}

/// What the integers aggregator asks its shard's owner.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum IntegerCommand {
    /// Store a window's average.
    StoreAverage(Average),
}

impl Service for Integers {
    const MACHINE: MachineId = MachineId(5);
    const TENANTS: &'static [Tenant] = &[TENANT];
    type Command = IntegerCommand;

    fn decide(
        &self,
        command: IntegerCommand,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError> {
        match command {
            IntegerCommand::StoreAverage(average) => {
                decide_store(state, shard, &average, &self.config)
            }
        }
    }

    /// An average replaces the one that falls out of the kept history: the aggregator's own
    /// bookkeeping, taken even when storage is nearly full.
    fn adds_data(_: &IntegerCommand) -> bool {
        false
    }
}

fn average_key(window_start_ms: u64) -> Vec<u8> {
    window_start_ms.to_be_bytes().to_vec()
}

/// Stores a window's average (unless one is stored for that window already) and deletes the
/// one that falls out of the kept history.
pub fn decide_store(
    store: &Draft,
    shard: ShardId,
    average: &Average,
    config: &IntegersConfig,
) -> Result<Decision, StoreError> {
    let key = average_key(average.window_start_ms);
    if store.get(shard, TENANT, &key)?.is_some() {
        return Ok(Decision::answer_only(Outcome::Stored));
    }
    let mut ops = vec![Op {
        tenant: TENANT,
        key,
        value: Some(codec::encode(average)?),
    }];
    let horizon = config.keep_windows * config.window_ms();
    if let Some(old) = average.window_start_ms.checked_sub(horizon) {
        ops.push(Op {
            tenant: TENANT,
            key: average_key(old),
            value: None,
        });
    }
    Ok(Decision {
        outcome: Outcome::Stored,
        ops,
        timer: None,
    })
}

/// The newest `limit` stored averages, newest first.
pub async fn latest(node: &Node, limit: usize) -> Result<Vec<Average>, ApiError> {
    let config = &node.inner.cluster.integers;
    let shard = aggregator_shard(node.inner.cluster.cluster.shards);
    let query = Query::Scan {
        tenant: TENANT,
        after: None,
        limit: u32::try_from(config.keep_windows + 1).unwrap_or(u32::MAX),
    };
    let items = match read_shard(node, shard, query).await? {
        QueryAnswer::Items(items) => items,
        other => return Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    };
    let mut averages = items
        .iter()
        .map(|(key, value)| {
            codec::decode::<Average>(value, codec::Limit::Stored).map_err(|e| {
                ApiError::Internal(format!(
                    "stored average {key:02x?} in shard {shard} cannot be read: {e}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    averages.reverse();
    averages.truncate(limit);
    Ok(averages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery whose integers were taken, in order, by `takers`.
    fn taken_by(takers: &[Option<u64>]) -> Delivery {
        let mut delivery = Delivery::default();
        for &taker in takers {
            delivery.took(taker);
        }
        delivery
    }

    /// A resend as a generator tick starts it.
    fn start_resend(takers: &mut Takers) {
        assert!(takers.resend_due());
        takers.resending = true;
    }

    #[test]
    fn a_generator_resends_to_an_aggregator_that_answers_as_a_new_incarnation_on_the_same_node() {
        let mut takers = Takers::default();
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(1)]));
        takers.delivered(false, taken_by(&[Some(1)]));
        assert!(!takers.resend_due(), "aggregator 1 has everything");
        // Its node crashes: deliveries fail, which alone is no reason to resend.
        takers.delivered(false, taken_by(&[None]));
        assert!(!takers.resend_due());
        // The node restarted under its name before anyone declared it dead: a new aggregator.
        takers.delivered(false, taken_by(&[Some(2)]));
        start_resend(&mut takers);
        assert!(!takers.resend_due(), "one resend at a time");
        takers.delivered(true, taken_by(&[Some(2)]));
        assert!(!takers.resend_due());
    }

    #[test]
    fn a_resend_cut_short_is_started_again_at_a_later_tick() {
        let mut takers = Takers::default();
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(7), None]));
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(7), Some(7)]));
        assert!(!takers.resend_due());
        // A delivery to the previous aggregator that ends late asks for one more resend.
        takers.delivered(false, taken_by(&[Some(6)]));
        assert!(takers.resend_due());
    }

    #[test]
    fn a_resend_split_between_two_aggregators_by_a_failover_is_sent_again_whole_to_the_second() {
        let mut takers = Takers::default();
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(1)]));
        // Aggregator 1's node dies; aggregator 2 answers and a resend to it starts. While it is
        // under way the shard moves on to aggregator 3, which takes only its last integers
        // (as in the simulated run that found it: ticks 57..152 to one, 153..157 to the next).
        takers.delivered(false, taken_by(&[Some(2)]));
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(2), Some(2), Some(3), Some(3)]));
        assert!(
            takers.resend_due(),
            "aggregator 3 lacks the older integers: it must get them all"
        );
        start_resend(&mut takers);
        takers.delivered(true, taken_by(&[Some(3), Some(3), Some(3), Some(3)]));
        assert!(!takers.resend_due());
    }

    #[test]
    fn a_delivery_is_whole_only_for_the_one_aggregator_that_took_every_integer() {
        assert_eq!(taken_by(&[Some(4), Some(4)]).whole, Some(4));
        assert_eq!(taken_by(&[Some(4), Some(5)]).whole, None);
        assert_eq!(taken_by(&[Some(4), Some(5), Some(4)]).whole, None);
        assert_eq!(taken_by(&[Some(4), None]).whole, None);
        assert_eq!(taken_by(&[Some(4), Some(5)]).last, Some(5));
        assert_eq!(taken_by(&[]).whole, None);
    }
}
