//! Clients that drive a seeded random workload through every node's HTTP edge and record
//! each request in the [`History`]: user creates, updates and reads, session adds, removes and
//! reads, job creates and reads, party joins, leaves and reads, and reads of the integer
//! averages.
//!
//! Keys are few, so operations on one key overlap and faults hit keys in use. Every write to a
//! user carries a value never written before, so a read names the write it saw. Each party has
//! a small fixed pool of devices that join and leave it, so hosts change hands often.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::harness::HTTP_PORT;
use crate::history::{Event, History, Listed, Observed, Op, Outcome, Window, FINAL_CLIENT};
use crate::http;

/// Users the workload creates and then updates and reads.
pub const USER_KEYS: usize = 4;
/// Session users the workload adds and removes sessions for.
pub const SESSION_USERS: usize = 3;
/// Devices that join and leave each party.
pub const PARTY_DEVICES: usize = 4;
/// Where the setup creates one party each: the simulation's regions (eu-west-1, us-east-1,
/// ap-southeast-1, as in cluster.toml), so every region's manager shard serves a party.
pub const PARTY_PLACES: [(f64, f64); 3] = [(53.35, -6.26), (38.13, -78.45), (1.37, 103.80)];
/// Longest a client waits for one answer; past it the outcome is unknown. Above the edge's
/// forwarding budget, so the edge normally answers first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Pause between two requests of one client, in milliseconds (drawn uniformly).
const THINK_MS: std::ops::Range<u64> = 20..150;
/// How long the setup and final clients keep trying one operation.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Pause before a final read is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The id of user `key`.
pub fn user_id(key: usize) -> String {
    format!("00000000-0000-4000-8000-{key:012}")
}

/// The id of session user `user`.
pub fn session_user(user: usize) -> String {
    format!("sim-user-{user}")
}

/// Device `device` of a party's pool (the same ids in every party).
pub fn device_id(device: usize) -> String {
    format!("device-{device}")
}

/// The running workload: its clients stop at [`Workload::stop`] and count themselves out.
#[derive(Clone, Default)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
}

impl Workload {
    /// Asks every client to stop after its current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every client has stopped.
    pub fn finished(&self) -> bool {
        self.running.load(Ordering::Relaxed) == 0
    }

    /// A client's software: random operations on random nodes until stopped.
    pub fn client(
        &self,
        name: String,
        nodes: Vec<String>,
        seed: u64,
        parties: Vec<String>,
        history: History,
    ) -> impl std::future::Future<Output = turmoil::Result> + 'static {
        self.running.fetch_add(1, Ordering::Relaxed);
        let workload = self.clone();
        async move {
            let mut client = Client::new(name, seed, history);
            client.parties = parties;
            while !workload.stop.load(Ordering::Relaxed) {
                let node = &nodes[client.rng.random_range(0..nodes.len())];
                let op = client.next_op();
                client.send(node, op).await;
                let think = client.rng.random_range(THINK_MS);
                tokio::time::sleep(Duration::from_millis(think)).await;
            }
            workload.running.fetch_sub(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// Runs `clients` side by side as tasks of one client host. Each turmoil host is stepped on
/// every tick whether it has work or not, so four clients on four hosts cost more than on one;
/// the nodes tell clients apart by nothing but their requests. The first client to fail
/// fails the host.
pub async fn side_by_side(
    clients: Vec<impl std::future::Future<Output = turmoil::Result> + 'static>,
) -> turmoil::Result {
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        tasks.spawn_local(client);
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The setup client: creates every user, retrying through the nodes until each creation is
/// answered (201, or 409 when an earlier unanswered try had created it), then one party at each
/// of [`PARTY_PLACES`] (retrying until one is created: an unanswered try may leave a party
/// nobody uses) and joins the rest of its devices, so hosts change hands from the first leave;
/// then sets `done`. Users and parties are set up side by side: they share no key, and one
/// after the other they took 4 s of simulated time before every workload run.
pub async fn setup(nodes: Vec<String>, history: History, done: Arc<AtomicBool>) -> turmoil::Result {
    let mut steps = tokio::task::JoinSet::new();
    for key in 0..USER_KEYS {
        let mut client = Client::new("setup".into(), 0, history.clone());
        let nodes = nodes.clone();
        steps.spawn_local(async move {
            let op = Op::UserWrite {
                key,
                value: format!("init-{key}"),
            };
            client.until_answered(&nodes, op, |_| true).await;
        });
    }
    for place in 0..PARTY_PLACES.len() {
        let mut client = Client::new("setup".into(), 0, history.clone());
        let nodes = nodes.clone();
        steps.spawn_local(async move { client.set_up_party(&nodes, place).await });
    }
    while steps.join_next().await.is_some() {}
    done.store(true, Ordering::Relaxed);
    Ok(())
}

/// The final reader: once the faults are over, reads every user, session user, acknowledged
/// job and party and the integer averages on every node, retrying each until answered (a job
/// until it ended; the averages, on the first node, until a complete window newer than any it
/// first listed is stored, which shows the aggregator and the generators resumed).
///
/// The first node is read alone, and the others then side by side: once it has seen every job
/// end and the aggregator resume, the others' answers are all compared with a settled state,
/// and reading them one after the other only added a third of a run's simulated time.
pub async fn final_reads(
    nodes: Vec<String>,
    jobs: Vec<String>,
    parties: Vec<String>,
    history: History,
    done: Arc<AtomicBool>,
) -> turmoil::Result {
    let reading = Arc::new(FinalReads {
        jobs,
        parties,
        history,
    });
    if let Some((first, others)) = nodes.split_first() {
        reading.read(first, true).await;
        let mut readers = tokio::task::JoinSet::new();
        for node in others {
            let (reading, node) = (reading.clone(), node.clone());
            readers.spawn_local(async move { reading.read(&node, false).await });
        }
        while readers.join_next().await.is_some() {}
    }
    done.store(true, Ordering::Relaxed);
    Ok(())
}

/// What the final reads read.
struct FinalReads {
    jobs: Vec<String>,
    parties: Vec<String>,
    history: History,
}

impl FinalReads {
    /// Reads everything on `node`; on the `first` node, waits for every job to end and for the
    /// integers to resume. The integers are read beside the keys: waiting for the next window
    /// to complete takes up to a window's length, and nothing else waits for it.
    async fn read(&self, node: &str, first: bool) {
        let one = &[node.to_owned()];
        tokio::join!(self.read_keys(one, first), self.read_integers(one, first));
    }

    async fn read_keys(&self, one: &[String], first: bool) {
        let mut client = Client::new(FINAL_CLIENT.into(), 0, self.history.clone());
        for key in 0..USER_KEYS {
            client
                .until_answered(one, Op::UserRead { key }, |_| true)
                .await;
        }
        for user in 0..SESSION_USERS {
            client
                .until_answered(one, Op::SessionRead { user }, |_| true)
                .await;
        }
        for job in &self.jobs {
            let op = Op::JobRead { job: job.clone() };
            // On the first node wait for the job to end; the others must then agree.
            let ended = |o: &Outcome| {
                !first
                    || matches!(o, Outcome::Ok(Observed::Job { status, .. }) if status != "processing")
            };
            client.until_answered(one, op, ended).await;
        }
        for code in &self.parties {
            let op = Op::PartyRead { code: code.clone() };
            client.until_answered(one, op, |_| true).await;
        }
    }

    async fn read_integers(&self, one: &[String], first: bool) {
        let mut client = Client::new(FINAL_CLIENT.into(), 0, self.history.clone());
        let listed = client.until_answered(one, Op::IntegersRead, |_| true).await;
        if first {
            let newest = newest_window(&listed);
            let resumed = |o: &Outcome| {
                matches!(o, Outcome::Ok(Observed::Averages(windows))
                    if windows.iter().any(|w| w.complete && Some(w.start_ms) > newest))
            };
            client.until_answered(one, Op::IntegersRead, resumed).await;
        }
    }
}

/// The start of the newest window an integers read listed.
fn newest_window(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::Ok(Observed::Averages(windows)) => windows.first().map(|w| w.start_ms),
        _ => None,
    }
}

/// One client's state: its random numbers, its counters, its jobs, the parties it uses.
struct Client {
    name: String,
    rng: StdRng,
    history: History,
    writes: u64,
    jobs: Vec<String>,
    parties: Vec<String>,
}

impl Client {
    fn new(name: String, seed: u64, history: History) -> Self {
        let rng = StdRng::seed_from_u64(seed);
        Self {
            name,
            rng,
            history,
            writes: 0,
            jobs: Vec::new(),
            parties: Vec::new(),
        }
    }

    /// Creates a party at `place` (retrying until one is created) and joins the rest of its
    /// devices.
    async fn set_up_party(&mut self, nodes: &[String], place: usize) {
        let op = Op::PartyCreate {
            device: device_id(0),
            place,
        };
        let created = |o: &Outcome| matches!(o, Outcome::Ok(_));
        let Outcome::Ok(Observed::Party(code)) = self.until_answered(nodes, op, created).await
        else {
            return;
        };
        for device in 1..PARTY_DEVICES {
            let op = Op::PartyJoin {
                code: code.clone(),
                device: device_id(device),
            };
            self.until_answered(nodes, op, |_| true).await;
        }
    }

    /// A random operation: mostly users, then sessions, parties, some jobs and integer reads.
    /// Parties start full and joins are as likely as leaves, so hosts change often and a party
    /// sometimes empties (and closes for good).
    fn next_op(&mut self) -> Op {
        let key = self.rng.random_range(0..USER_KEYS);
        let user = self.rng.random_range(0..SESSION_USERS);
        let device = device_id(self.rng.random_range(0..PARTY_DEVICES));
        let code = self
            .parties
            .get(self.rng.random_range(0..self.parties.len().max(1)))
            .cloned();
        match (self.rng.random_range(0..100), code) {
            (0..24, _) => {
                self.writes += 1;
                let value = format!("{}-{}", self.name, self.writes);
                Op::UserWrite { key, value }
            }
            (24..48, _) => Op::UserRead { key },
            (48..60, _) => Op::SessionAdd { user },
            (60..70, _) => Op::SessionRemove { user },
            (70..74, _) => Op::SessionRead { user },
            (74..77, _) => {
                self.writes += 1;
                let object = format!("{}-object-{}", self.name, self.writes);
                Op::JobCreate { object }
            }
            (77..80, _) => match self
                .jobs
                .get(self.rng.random_range(0..self.jobs.len().max(1)))
            {
                Some(job) => Op::JobRead { job: job.clone() },
                None => Op::UserRead { key },
            },
            (80..87, Some(code)) => Op::PartyJoin { code, device },
            (87..94, Some(code)) => Op::PartyLeave { code, device },
            (97..100, _) => Op::IntegersRead,
            (_, Some(code)) => Op::PartyRead { code },
            (_, None) => Op::UserRead { key },
        }
    }

    /// Sends `op` to the nodes in turn until `enough` holds of an answer, and returns the last
    /// outcome. Gives up after [`ANSWER_WITHIN`]: the checkers then report what is missing.
    async fn until_answered(
        &mut self,
        nodes: &[String],
        op: Op,
        enough: impl Fn(&Outcome) -> bool,
    ) -> Outcome {
        let give_up = now() + ANSWER_WITHIN;
        for node in nodes.iter().cycle() {
            let outcome = self.send(node, op.clone()).await;
            let answered = !matches!(outcome, Outcome::Unknown(_)) && enough(&outcome);
            if answered || now() > give_up {
                return outcome;
            }
            tokio::time::sleep(RETRY).await;
        }
        Outcome::Unknown("no node to ask".into())
    }

    /// Sends one operation to `node` and records it.
    async fn send(&mut self, node: &str, op: Op) -> Outcome {
        let invoked = now();
        let (method, path, body) = request(&op);
        let body = body.map(|b| b.to_string());
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            http::request(
                node,
                HTTP_PORT,
                method,
                &path,
                body.as_deref().map(str::as_bytes),
            ),
        )
        .await;
        let outcome = match answer {
            Err(_) => Outcome::Unknown("timed out".into()),
            Ok(Err(error)) => Outcome::Unknown(error.to_string()),
            Ok(Ok(reply)) => classify(&op, reply.status, &reply.body),
        };
        if let (Op::JobCreate { .. }, Outcome::Ok(Observed::Job { id, .. })) = (&op, &outcome) {
            self.jobs.push(id.clone());
        }
        self.history.record(Event {
            client: self.name.clone(),
            node: node.to_owned(),
            op,
            invoked,
            completed: now(),
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// Simulated time since the simulation started.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The HTTP request of `op`.
fn request(op: &Op) -> (&'static str, String, Option<Value>) {
    match op {
        Op::UserWrite { key, value } if value.starts_with("init-") => (
            "POST",
            "/api/user".into(),
            Some(
                json!({"id": user_id(*key), "name": value, "email": "sim@example.com", "group": 1}),
            ),
        ),
        Op::UserWrite { key, value } => (
            "PUT",
            "/api/user".into(),
            Some(json!({"id": user_id(*key), "name": value})),
        ),
        Op::UserRead { key } => ("GET", format!("/api/user/{}", user_id(*key)), None),
        Op::SessionAdd { user } => {
            let path = format!("/add-session?user_id={}", session_user(*user));
            ("POST", path, None)
        }
        Op::SessionRemove { user } => {
            let path = format!("/remove-session?user_id={}", session_user(*user));
            ("POST", path, None)
        }
        Op::SessionRead { user } => ("GET", format!("/sessions/{}", session_user(*user)), None),
        Op::JobCreate { object } => ("POST", "/jobs".into(), Some(json!({"object_id": object}))),
        Op::JobRead { job } => ("GET", format!("/jobs/{job}"), None),
        Op::PartyCreate { device, place } => {
            let (lat, lng) = PARTY_PLACES.get(*place).copied().unwrap_or_default();
            let body = json!({"device_id": device, "lat": lat, "lng": lng});
            ("POST", "/parties".into(), Some(body))
        }
        Op::PartyJoin { code, device } => (
            "POST",
            format!("/parties/{code}/participants"),
            Some(json!({"device_id": device, "participant_name": device})),
        ),
        Op::PartyLeave { code, device } => (
            "DELETE",
            format!("/parties/{code}/participants/{device}"),
            None,
        ),
        Op::PartyRead { code } => ("GET", format!("/parties/{code}/participants"), None),
        Op::IntegersRead => ("GET", "/v1/integers".into(), None),
    }
}

/// What an answer to `op` says, by the contracts of the services.
fn classify(op: &Op, status: u16, body: &[u8]) -> Outcome {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if matches!(op, Op::UserWrite { value, .. } if value.starts_with("init-"))
        && matches!(status, 201 | 409)
    {
        return Outcome::Ok(Observed::Done);
    }
    match (op, status) {
        (Op::UserWrite { .. } | Op::UserRead { .. }, 200 | 201) => match json["name"].as_str() {
            Some(name) => Outcome::Ok(Observed::Name(name.to_owned())),
            None => Outcome::Unknown(format!("{status} without a name: {json}")),
        },
        (Op::SessionAdd { .. } | Op::SessionRemove { .. } | Op::SessionRead { .. }, 200) => {
            match json["active_sessions"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
            {
                Some(n) => Outcome::Ok(Observed::Count(n)),
                None => Outcome::Unknown(format!("200 without a count: {json}")),
            }
        }
        (Op::JobCreate { .. } | Op::JobRead { .. }, 200 | 201) => {
            let job = &json["message"];
            match (job["job_id"].as_str(), job["status"].as_str()) {
                (Some(id), Some(status)) => Outcome::Ok(Observed::Job {
                    id: id.to_owned(),
                    status: status.to_owned(),
                }),
                _ => Outcome::Unknown(format!("{status} without a job: {json}")),
            }
        }
        (Op::PartyCreate { .. }, 201) => match json["party_code"].as_str() {
            Some(code) => Outcome::Ok(Observed::Party(code.to_owned())),
            None => Outcome::Unknown(format!("201 without a party code: {json}")),
        },
        (Op::PartyJoin { .. }, 200 | 201) | (Op::PartyLeave { .. }, 200) => {
            Outcome::Ok(Observed::Done)
        }
        (Op::PartyRead { .. }, 200) => match participants(&json) {
            Some(listed) => Outcome::Ok(Observed::Participants(listed)),
            None => Outcome::Unknown(format!("200 without participants: {json}")),
        },
        (Op::IntegersRead, 200) => match averages(&json) {
            Some(windows) => Outcome::Ok(Observed::Averages(windows)),
            None => Outcome::Unknown(format!("200 without averages: {json}")),
        },
        (_, 404 | 409) => Outcome::Refused(status),
        (_, status) => Outcome::Unknown(format!("{status}: {}", String::from_utf8_lossy(body))),
    }
}

/// The participants of a `GET /parties/{code}/participants` answer, in the order listed.
fn participants(json: &Value) -> Option<Vec<Listed>> {
    json["participants"]
        .as_array()?
        .iter()
        .map(|p| {
            Some(Listed {
                id: u32::try_from(p["participant_id"].as_u64()?).ok()?,
                device: p["device_id"].as_str()?.to_owned(),
                host: p["host"].as_bool()?,
            })
        })
        .collect()
}

/// The windows of a `GET /v1/integers` answer, in the order listed.
fn averages(json: &Value) -> Option<Vec<Window>> {
    json.as_array()?
        .iter()
        .map(|a| {
            Some(Window {
                start_ms: a["window_start_ms"].as_u64()?,
                average: a["average"].as_number()?.to_string(),
                count: a["count"].as_u64()?,
                complete: a["complete"].as_bool()?,
            })
        })
        .collect()
}
