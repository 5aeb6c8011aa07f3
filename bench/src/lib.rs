//! `troupe-bench`: the load generator of the benchmarks (`scripts/bench.sh` and its siblings),
//! a crate of its own so the node does not link what only the generator uses.
//!
//! N clients share one pooled keep-alive HTTP/1 client and spread their requests round-robin
//! over the given node URLs. Closed loop by default (each client sends its next request when
//! the previous one is answered); with `--rate` open loop: request i is due at `i / rate`
//! seconds and goes to the first free client. When every client is busy its latency counts
//! from the due time, so a server that falls behind shows it in the percentiles instead of
//! slowing the generator down (coordinated omission).
//!
//! Each client records into its own histogram and error map; they are merged once at the end,
//! so the hot path shares only two relaxed counters (for the progress line) and, in open-loop
//! mode, the ticket counter.
//!
//! The `etcd-*` workloads drive etcd v3's JSON gateway instead of Troupe, with the same keys
//! and value bytes as the users workloads, so the reference comparison with etcd is measured by
//! the same generator, clients and histograms (`scripts/bench-vs-etcd.sh`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Highest latency the histograms hold (60 s, in microseconds); longer ones saturate.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Distinct session users of the `sessions` workload.
const SESSION_USERS: u32 = 10_000;

/// Load a running cluster with a workload and report throughput and latency percentiles.
#[derive(Parser, Clone, Debug)]
#[command(name = "troupe-bench", version)]
pub struct BenchArgs {
    /// Node base URLs, comma separated; client k starts at URL k mod n, then goes round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Workload::Healthz)]
    pub workload: Workload,
    /// Concurrent clients (closed loop), or the bound on requests in flight (with --rate).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub clients: u32,
    /// Measured phase, e.g. `10s` or `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded phase before the measured one.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop at this many requests per second in total.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Users created before the run for the users workloads (ids derived from the index).
    #[arg(long, default_value_t = 1000)]
    pub preload: u32,
    /// Per-request timeout; a timed-out request counts as an `io` error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero if any answer was unexpected (wrong status or io error).
    #[arg(long)]
    pub fail_on_error: bool,
    /// Fail over as cluster drivers do: a request whose connection is refused (nothing was
    /// sent) goes to the next node, until every node has refused it once.
    #[arg(long)]
    pub failover: bool,
}

/// The request mixes `troupe-bench` can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// `GET /healthz`: the edge alone, the baseline the others are compared with.
    Healthz,
    /// `GET /api/user/{id}` over the preloaded users.
    UsersRead,
    /// Alternately `POST /api/user` (new random id) and `PUT /api/user` (a preloaded id).
    UsersWrite,
    /// `POST /add-session` then `POST /remove-session` for the same user; 409 (cap) is expected.
    Sessions,
    /// `POST /jobs` with a random object id.
    JobsCreate,
    /// `POST /parties/{code}/participants` into a party each client creates first.
    PartiesJoin,
    /// 70% users-read, 15% users-write, 10% sessions, 5% jobs-create.
    Mixed,
    /// etcd reference for users-write: `POST /v3/kv/put` of the very body users-write would
    /// send, under its user id (alternately a new id and a preloaded one).
    EtcdPut,
    /// etcd reference for users-read: `POST /v3/kv/range` of a preloaded user's key, whose
    /// value is the JSON the users preload creates.
    EtcdRange,
}

/// One request to send and the statuses that count as a normal answer to it.
#[derive(Debug, PartialEq)]
pub struct Op {
    method: Method,
    path: String,
    body: Option<Value>,
    expected: &'static [u16],
}

impl Op {
    fn new(method: Method, path: String, body: Option<Value>, expected: &'static [u16]) -> Self {
        Self {
            method,
            path,
            body,
            expected,
        }
    }
}

/// Joins a parties-join client sends into one party before it moves to a party of its own
/// again. A join rewrites the party's whole record, so an ever-growing party would measure the
/// party's size rather than a join, and would reach `parties.max_participants` (decision 017).
const JOINS_PER_PARTY: u32 = 100;

/// What one client carries from request to request.
pub struct ClientState {
    rng: StdRng,
    next_url: usize,
    preloaded: u32,
    /// Whether the next users-write is a create (else an update).
    write_creates: bool,
    /// The session user whose add is waiting for its remove.
    open_session: Option<u32>,
    /// The party this client joins (parties-join).
    party_code: String,
    /// Joins sent into `party_code` so far.
    party_joins: u32,
}

impl ClientState {
    fn new(index: usize, seed: u64, preloaded: u32) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64)),
            next_url: index,
            preloaded: preloaded.max(1),
            write_creates: true,
            open_session: None,
            party_code: "none".to_owned(),
            party_joins: 0,
        }
    }

    /// Whether a parties-join client should create its next party before its next join.
    fn party_full(&self) -> bool {
        self.party_joins >= JOINS_PER_PARTY
    }

    /// The next base URL, round-robin.
    fn url<'a>(&mut self, urls: &'a [String]) -> &'a str {
        let url = &urls[self.next_url % urls.len()];
        self.next_url = self.next_url.wrapping_add(1);
        url
    }
}

impl Workload {
    /// The next request of this workload for a client.
    pub fn next_op(self, state: &mut ClientState) -> Op {
        match self {
            Workload::Healthz => Op::new(Method::GET, "/healthz".into(), None, &[200]),
            Workload::UsersRead => {
                let i = state.rng.random_range(0..state.preloaded);
                Op::new(
                    Method::GET,
                    format!("/api/user/{}", user_id(i)),
                    None,
                    &[200],
                )
            }
            Workload::UsersWrite => users_write(next_user_change(state)),
            Workload::Sessions => session_op(state),
            Workload::JobsCreate => {
                let body =
                    json!({ "object_id": format!("bench-{:016x}", state.rng.random::<u64>()) });
                Op::new(Method::POST, "/jobs".into(), Some(body), &[201])
            }
            Workload::PartiesJoin => {
                let device = format!("bench-dev-{:016x}", state.rng.random::<u64>());
                let body = json!({ "device_id": device, "participant_name": "b" });
                let path = format!("/parties/{}/participants", state.party_code);
                state.party_joins += 1;
                Op::new(Method::POST, path, Some(body), &[201])
            }
            Workload::Mixed => pick_mixed(state.rng.random_range(0..100)).next_op(state),
            Workload::EtcdPut => {
                let change = next_user_change(state);
                etcd_put(&change.id, change.body.to_string().as_bytes())
            }
            Workload::EtcdRange => {
                let i = state.rng.random_range(0..state.preloaded);
                etcd_range(&user_id(i))
            }
        }
    }

    /// Whether the workload reads or updates the preloaded users (for etcd: their keys).
    fn needs_users(self) -> bool {
        matches!(
            self,
            Workload::UsersRead
                | Workload::UsersWrite
                | Workload::Mixed
                | Workload::EtcdPut
                | Workload::EtcdRange
        )
    }

    /// The request that preloads user `i`: a create for Troupe, a put of the same JSON under
    /// the user's id for etcd, so both systems then serve values of the same size.
    fn preload_op(self, i: u32) -> Op {
        let user = preloaded_user(i);
        match self {
            Workload::EtcdPut | Workload::EtcdRange => {
                etcd_put(&user_id(i), user.to_string().as_bytes())
            }
            _ => Op::new(Method::POST, "/api/user".into(), Some(user), &[201, 409]),
        }
    }

    /// The flag spelling, e.g. `users-read`.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// The workload of a mixed request from a roll in `0..100`.
fn pick_mixed(roll: u32) -> Workload {
    match roll {
        0..70 => Workload::UsersRead,
        70..85 => Workload::UsersWrite,
        85..95 => Workload::Sessions,
        _ => Workload::JobsCreate,
    }
}

/// The id of preloaded user `i`, the same scheme as the integration tests.
fn user_id(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// The user JSON `--preload` creates as user `i` (102 bytes for a 3-digit `i`).
fn preloaded_user(i: u32) -> Value {
    json!({
        "id": user_id(i),
        "name": format!("user {i}"),
        "email": format!("u{i}@example.com"),
        "group": i,
    })
}

/// One users-write change, kept apart from its request so etcd-put sends the same bytes.
struct UserChange {
    /// A new user (else a partial update of a preloaded one).
    create: bool,
    /// The user's id: the key the change goes to.
    id: String,
    /// The JSON body users-write sends.
    body: Value,
}

/// The next users-write change: alternately a create with a fresh random id and an update of
/// a preloaded user's group.
fn next_user_change(state: &mut ClientState) -> UserChange {
    state.write_creates = !state.write_creates;
    if !state.write_creates {
        let id = uuid::Builder::from_random_bytes(state.rng.random())
            .into_uuid()
            .to_string();
        let body = json!({ "id": id, "name": "bench", "email": "bench@example.com", "group": 0 });
        return UserChange {
            create: true,
            id,
            body,
        };
    }
    let id = user_id(state.rng.random_range(0..state.preloaded));
    let body = json!({ "id": id, "group": state.rng.random_range(0..1000u32) });
    UserChange {
        create: false,
        id,
        body,
    }
}

/// The Troupe request of a users-write change: a create, or a partial update (PUT).
fn users_write(change: UserChange) -> Op {
    if change.create {
        Op::new(Method::POST, "/api/user".into(), Some(change.body), &[201])
    } else {
        Op::new(Method::PUT, "/api/user".into(), Some(change.body), &[200])
    }
}

/// etcd v3 JSON gateway put. The gateway answers 200 only once the put is committed by a
/// majority; any gRPC error comes back as a non-200 status, so errors count as in Troupe.
fn etcd_put(key: &str, value: &[u8]) -> Op {
    let body = json!({ "key": base64(key.as_bytes()), "value": base64(value) });
    Op::new(Method::POST, "/v3/kv/put".into(), Some(body), &[200])
}

/// etcd v3 JSON gateway range read of one key, linearizable (etcd's default, like a Troupe
/// read served by the shard's owner).
fn etcd_range(key: &str) -> Op {
    let body = json!({ "key": base64(key.as_bytes()) });
    Op::new(Method::POST, "/v3/kv/range".into(), Some(body), &[200])
}

/// Standard base64 with padding (RFC 4648), the encoding of the gateway's `bytes` fields. A
/// dozen lines here rather than a dependency: `base64` is only in the tree transitively.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn session_op(state: &mut ClientState) -> Op {
    let (route, user) = match state.open_session.take() {
        Some(user) => ("remove-session", user),
        None => {
            let user = state.rng.random_range(0..SESSION_USERS);
            state.open_session = Some(user);
            ("add-session", user)
        }
    };
    let path = format!("/{route}?user_id=bench-user-{user}");
    Op::new(Method::POST, path, None, &[200, 409])
}

/// How a request ended: a status, a connection that was refused (nothing was sent, so a
/// client may send it elsewhere), or no answer after sending (read error, reset, timeout: the
/// outcome of a write is unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Status(u16),
    Refused,
    Io,
}

/// Sends `op` to `base` and reads the whole body, so the connection goes back to the pool.
async fn send(http: &reqwest::Client, base: &str, op: &Op) -> Answer {
    let mut request = http.request(op.method.clone(), format!("{base}{}", op.path));
    if let Some(body) = &op.body {
        request = request.json(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_connect() => return Answer::Refused,
        Err(_) => return Answer::Io,
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(_) => Answer::Status(status),
        Err(_) => Answer::Io,
    }
}

/// One client's (or, merged, the whole run's) measured requests.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latencies of answered requests other than 503.
    histogram: Histogram<u64>,
    /// Latencies of 503 answers (a refusal: admission control or no owner), kept apart so
    /// how fast an overloaded node refuses does not hide how fast it serves what it accepts.
    rejected: Histogram<u64>,
    requests: u64,
    errors: BTreeMap<String, u64>,
    /// Connections refused, every attempt counted (with `--failover` a request may see several).
    refused: u64,
    /// Requests sent again to the next node after a refused connection (`--failover`).
    failovers: u64,
    /// When the last measured request ended.
    last_done: Option<Instant>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("latency histogram")?,
            rejected: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("latency histogram")?,
            requests: 0,
            errors: BTreeMap::new(),
            refused: 0,
            failovers: 0,
            last_done: None,
        })
    }

    fn record(&mut self, latency: Duration, sent: Sent, expected: &[u16], done: Instant) {
        self.refused += sent.refused;
        self.failovers += sent.failovers;
        let answer = sent.answer;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let refused = answer == Answer::Status(503) && !expected.contains(&503);
        if refused {
            self.rejected.saturating_record(micros.max(1));
        } else {
            self.histogram.saturating_record(micros.max(1));
        }
        self.requests += 1;
        self.last_done = Some(done);
        let key = match answer {
            Answer::Status(s) if expected.contains(&s) => return,
            Answer::Status(s) => s.to_string(),
            Answer::Refused => "refused".to_owned(),
            Answer::Io => "io".to_owned(),
        };
        *self.errors.entry(key).or_default() += 1;
    }

    /// Adds `other` into this tally.
    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("merging latency histograms")?;
        self.rejected
            .add(&other.rejected)
            .context("merging latency histograms")?;
        self.requests += other.requests;
        self.refused += other.refused;
        self.failovers += other.failovers;
        for (key, count) in &other.errors {
            *self.errors.entry(key.clone()).or_default() += count;
        }
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }
}

/// Latency percentiles in milliseconds, two decimals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latencies {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

/// The 503 answers of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejected {
    /// How many.
    count: u64,
    /// How fast they came back.
    latency_ms: Latencies,
}

impl Latencies {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| round2(micros as f64 / 1000.0);
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The result of a run: printed as a table, or as JSON with `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    workload: String,
    clients: u32,
    /// Requests per second asked for with `--rate` (open loop); absent in closed loop.
    target_rate: Option<f64>,
    /// Seconds from the end of the warm-up to the end of the last measured request.
    elapsed_s: f64,
    /// Measured requests, unexpected answers included.
    requests: u64,
    /// Requests per second over `elapsed_s`.
    throughput: f64,
    /// Latencies of every answer but 503 (and of requests with no answer).
    latency_ms: Latencies,
    /// 503 answers (refused: the node was saturated or no owner was ready) and their
    /// latencies; absent when there were none. They are also counted in `errors`.
    rejected: Option<Rejected>,
    /// Open loop: requests due in the measured phase that were never sent, because the run
    /// stopped (at twice the duration) before a client was free for them.
    unsent: Option<u64>,
    /// Unexpected answers: status code, `refused` (no node took the connection: nothing was
    /// sent) or `io` (no answer after sending: a write's outcome is unknown) to count.
    errors: BTreeMap<String, u64>,
    /// Connections refused, every attempt counted, whether or not a failover then succeeded.
    refused_connections: u64,
    /// Requests moved to the next node after a refused connection (`--failover`).
    failovers: u64,
}

impl Report {
    fn new(args: &BenchArgs, tally: &Tally, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let refused = &tally.rejected;
        Self {
            workload: args.workload.name(),
            clients: args.clients,
            target_rate: args.rate,
            elapsed_s: round2(secs),
            requests: tally.requests,
            throughput: if secs > 0.0 {
                round2(tally.requests as f64 / secs)
            } else {
                0.0
            },
            latency_ms: Latencies::of(&tally.histogram),
            rejected: (!refused.is_empty()).then(|| Rejected {
                count: refused.len(),
                latency_ms: Latencies::of(refused),
            }),
            unsent: args.rate.map(|rate| {
                let due = (rate * args.duration.as_secs_f64()).round() as u64;
                due.saturating_sub(tally.requests)
            }),
            errors: tally.errors.clone(),
            refused_connections: tally.refused,
            failovers: tally.failovers,
        }
    }

    /// Unexpected answers in total.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The human-readable summary.
    pub fn render_table(&self) -> String {
        let mode = match self.target_rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_owned(),
        };
        let l = &self.latency_ms;
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut lines = vec![
            format!("workload    {}", self.workload),
            format!("clients     {} ({mode})", self.clients),
            format!("elapsed     {:.2} s", self.elapsed_s),
            format!("requests    {}", self.requests),
            format!("throughput  {:.2} req/s", self.throughput),
            format!(
                "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.p99_9, l.max
            ),
            format!(
                "errors      {}",
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors.join(", ")
                }
            ),
        ];
        if self.refused_connections > 0 || self.failovers > 0 {
            lines.push(format!(
                "connections refused {}, failovers {}, errors after sending (io) {}",
                self.refused_connections,
                self.failovers,
                self.errors.get("io").copied().unwrap_or(0)
            ));
        }
        if let Some(rejected) = &self.rejected {
            let r = &rejected.latency_ms;
            lines.push(format!(
                "rejected    {} (503), latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  \
                 max {:.2}",
                rejected.count, r.p50, r.p90, r.p99, r.p99_9, r.max
            ));
        }
        if let Some(unsent) = self.unsent.filter(|&n| n > 0) {
            lines.push(format!(
                "unsent      {unsent} (due, never sent: the cluster fell behind)"
            ));
        }
        lines.join("\n") + "\n"
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Parses `10s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. 10s or 500ms"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit {unit:?} in {text:?}; use ms, s or m")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

/// The clock of a run, fixed before the clients start.
#[derive(Clone, Copy, Debug)]
struct Timing {
    start: Instant,
    /// End of the warm-up: requests due (open loop) or sent (closed loop) before are not recorded.
    measure_from: Instant,
    /// No request is due or sent from here on.
    end: Instant,
    /// Open loop only: a backlog still unsent here is dropped (the latencies already show it).
    hard_stop: Instant,
}

/// What every client shares.
struct Shared {
    http: reqwest::Client,
    urls: Vec<String>,
    workload: Workload,
    rate: Option<f64>,
    /// `--failover`.
    failover: bool,
    timing: Timing,
    /// Every request so far (warm-up included), for the progress line.
    sent: AtomicU64,
    /// Every unexpected answer so far, for the progress line.
    failed: AtomicU64,
    /// Open loop: the next request number to claim.
    next_ticket: AtomicU64,
}

impl Shared {
    /// When the client's next request starts counting, waiting for it in open loop; `None`
    /// when the run is over.
    async fn next_slot(&self) -> Option<Instant> {
        let Some(rate) = self.rate else {
            let now = Instant::now();
            return (now < self.timing.end).then_some(now);
        };
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let due = self.timing.start + Duration::from_secs_f64(ticket as f64 / rate);
        if due >= self.timing.end || Instant::now() >= self.timing.hard_stop {
            return None;
        }
        if Instant::now() < due {
            // A client was free before the request fell due, so it did not queue: its latency
            // starts when the timer fires. Tokio's timer is only millisecond-precise, and that
            // lateness is the generator's (measured: ~1 ms added to every request otherwise).
            tokio::time::sleep_until(due).await;
            return Some(Instant::now());
        }
        // Every client was busy when the request fell due: that wait is queueing and counts.
        Some(due)
    }
}

/// One client: sends until the run ends and returns what it measured.
async fn client_loop(shared: Arc<Shared>, mut state: ClientState) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        if shared.workload == Workload::PartiesJoin && state.party_full() {
            // Before taking a slot: the create is set-up, not a measured request.
            let base = state.url(&shared.urls).to_owned();
            create_party(&shared.http, &base, &mut state).await;
        }
        let Some(start) = shared.next_slot().await else {
            break;
        };
        let op = shared.workload.next_op(&mut state);
        let sent = send_failing_over(&shared, &mut state, &op).await;
        let done = Instant::now();
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if !matches!(sent.answer, Answer::Status(s) if op.expected.contains(&s)) {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if start >= shared.timing.measure_from {
            tally.record(done - start, sent, op.expected, done);
        }
    }
    Ok(tally)
}

/// A request's outcome with the refused connections it met on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    answer: Answer,
    refused: u64,
    failovers: u64,
}

/// Sends `op` to the client's next node; with `--failover`, a refused connection moves it on
/// to the node after, until every node has refused it once.
async fn send_failing_over(shared: &Shared, state: &mut ClientState, op: &Op) -> Sent {
    let attempts = if shared.failover {
        shared.urls.len()
    } else {
        1
    };
    let mut sent = Sent {
        answer: Answer::Refused,
        refused: 0,
        failovers: 0,
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            sent.failovers += 1;
        }
        sent.answer = send(&shared.http, state.url(&shared.urls), op).await;
        if sent.answer != Answer::Refused {
            break;
        }
        sent.refused += 1;
    }
    sent
}

/// Prints `t=3s  req/s=12345  errors=0` to stderr every second until aborted.
async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval_at(
        shared.timing.start + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last = 0;
    loop {
        let now = tick.tick().await;
        let sent = shared.sent.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let phase = if now <= shared.timing.measure_from {
            "  (warm-up)"
        } else {
            ""
        };
        let t = (now - shared.timing.start).as_secs();
        eprintln!("t={t}s  req/s={}  errors={failed}{phase}", sent - last);
        last = sent;
    }
}

/// Creates the users the users workloads read and update; 201 and 409 (already there) are fine.
/// For the etcd workloads, puts the same JSON under the same keys.
async fn preload(http: &reqwest::Client, args: &BenchArgs) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    // At most PRELOAD_TASKS at once, so a run with thousands of clients does not preload past
    // the nodes' in-flight bound (http.max_in_flight).
    let tasks_n = args.clients.min(PRELOAD_TASKS);
    for k in 0..tasks_n {
        let ids: Vec<u32> = (k..args.preload).step_by(tasks_n as usize).collect();
        let (http, urls) = (http.clone(), args.urls.clone());
        tasks.spawn(preload_ids(http, urls, args.workload, ids));
    }
    let failures: Vec<Answer> = tasks.join_all().await.into_iter().flatten().collect();
    if let Some(first) = failures.first() {
        bail!(
            "preload: {} of {} users were not created (first answer: {first:?})",
            failures.len(),
            args.preload
        );
    }
    Ok(())
}

/// Most concurrent preload requests.
const PRELOAD_TASKS: u32 = 32;
/// A preload request answered 503 (a node still opening its shards, or saturated) is sent
/// again this many times, after [`PRELOAD_RETRY_PAUSE`].
const PRELOAD_RETRIES: u32 = 50;
const PRELOAD_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Preloads users `ids` one after the other; returns the unexpected answers.
async fn preload_ids(
    http: reqwest::Client,
    urls: Vec<String>,
    workload: Workload,
    ids: Vec<u32>,
) -> Vec<Answer> {
    let mut failures = Vec::new();
    for i in ids {
        let op = workload.preload_op(i);
        let mut answer = send(&http, &urls[i as usize % urls.len()], &op).await;
        for _ in 0..PRELOAD_RETRIES {
            if answer != Answer::Status(503) {
                break;
            }
            tokio::time::sleep(PRELOAD_RETRY_PAUSE).await;
            answer = send(&http, &urls[i as usize % urls.len()], &op).await;
        }
        if !matches!(answer, Answer::Status(s) if op.expected.contains(&s)) {
            failures.push(answer);
        }
    }
    failures
}

/// Creates the party a parties-join client joins next; on failure the client joins a party
/// that does not exist (or its previous one), so the failure shows as errors in the report.
async fn create_party(http: &reqwest::Client, base: &str, state: &mut ClientState) {
    state.party_joins = 0;
    let host = format!("bench-host-{:016x}", state.rng.random::<u64>());
    let answer = http
        .post(format!("{base}/parties"))
        .json(&json!({ "device_id": host }))
        .send()
        .await;
    let Ok(response) = answer else { return };
    let Ok(body) = response.json::<Value>().await else {
        return;
    };
    match &body["party_code"] {
        Value::String(code) => state.party_code = code.clone(),
        Value::Number(code) => state.party_code = code.to_string(),
        _ => {}
    }
}

/// Builds every client's state (creating their parties if the workload needs them).
async fn client_states(http: &reqwest::Client, args: &BenchArgs) -> Vec<ClientState> {
    let seed: u64 = rand::random();
    let mut states = Vec::with_capacity(args.clients as usize);
    for k in 0..args.clients as usize {
        let mut state = ClientState::new(k, seed, args.preload);
        if args.workload == Workload::PartiesJoin {
            let base = &args.urls[k % args.urls.len()];
            create_party(http, base, &mut state).await;
        }
        states.push(state);
    }
    states
}

fn http_client(args: &BenchArgs) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients as usize)
        .tcp_nodelay(true)
        .timeout(args.timeout)
        .build()
        .context("building the HTTP client")
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let urls: Vec<String> = args
        .urls
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    if let Some(bad) = urls.iter().find(|u| reqwest::Url::parse(u).is_err()) {
        bail!("--urls: {bad:?} is not a URL such as http://127.0.0.1:8080");
    }
    let args = BenchArgs { urls, ..args };
    let http = http_client(&args)?;
    if args.workload.needs_users() {
        preload(&http, &args).await?;
    }
    let states = client_states(&http, &args).await;
    let (tally, elapsed) = measure(&args, http, states).await?;
    let report = Report::new(&args, &tally, elapsed);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render_table());
    }
    if args.fail_on_error && report.error_count() > 0 {
        bail!("{} unexpected answers", report.error_count());
    }
    Ok(())
}

/// Warm-up and measured phase: the merged tally and the measured time.
async fn measure(
    args: &BenchArgs,
    http: reqwest::Client,
    states: Vec<ClientState>,
) -> anyhow::Result<(Tally, Duration)> {
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let timing = Timing {
        start,
        measure_from,
        end,
        hard_stop: end + args.duration,
    };
    let shared = Arc::new(Shared {
        http,
        urls: args.urls.clone(),
        workload: args.workload,
        rate: args.rate,
        failover: args.failover,
        timing,
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        next_ticket: AtomicU64::new(0),
    });
    let ticker = tokio::spawn(progress(shared.clone()));
    let mut clients = tokio::task::JoinSet::new();
    for state in states {
        clients.spawn(client_loop(shared.clone(), state));
    }
    let results = clients.join_all().await;
    ticker.abort();
    let mut total = Tally::new()?;
    for tally in results {
        total.merge(&tally?)?;
    }
    let last = total.last_done.unwrap_or(end).max(end);
    Ok((total, last - measure_from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(workload: Workload) -> BenchArgs {
        BenchArgs {
            urls: vec!["http://a".into()],
            workload,
            clients: 4,
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            rate: None,
            preload: 10,
            timeout: Duration::from_secs(1),
            json: false,
            fail_on_error: false,
            failover: false,
        }
    }

    fn tally_of(latencies_us: &[u64], answers: &[Answer]) -> Tally {
        let mut tally = Tally::new().expect("histogram");
        let now = Instant::now();
        for (&us, &answer) in latencies_us.iter().zip(answers) {
            let sent = Sent {
                answer,
                refused: 0,
                failovers: 0,
            };
            tally.record(Duration::from_micros(us), sent, &[200], now);
        }
        tally
    }

    #[test]
    fn durations_parse_in_milliseconds_seconds_and_minutes() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_number_or_known_unit_are_refused() {
        for bad in ["", "10", "s", "1.5s", "10h", "-1s", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn mixed_picks_follow_70_15_10_5() {
        let mut state = ClientState::new(0, 42, 10);
        let mut counts = BTreeMap::new();
        let n = 100_000;
        for _ in 0..n {
            let workload = pick_mixed(state.rng.random_range(0..100));
            *counts.entry(workload.name()).or_insert(0u32) += 1;
        }
        for (name, share) in [
            ("users-read", 70.0),
            ("users-write", 15.0),
            ("sessions", 10.0),
            ("jobs-create", 5.0),
        ] {
            let got = f64::from(counts.get(name).copied().unwrap_or(0)) * 100.0 / f64::from(n);
            assert!(
                (got - share).abs() < 0.5,
                "{name}: {got:.2}% instead of {share}%"
            );
        }
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn parties_join_clients_want_a_new_party_after_a_hundred_joins_into_one() {
        let mut state = ClientState::new(0, 7, 10);
        state.party_code = "123456789".into();
        for _ in 0..JOINS_PER_PARTY {
            assert!(!state.party_full());
            let join = Workload::PartiesJoin.next_op(&mut state);
            assert_eq!(join.path, "/parties/123456789/participants");
        }
        assert!(state.party_full());
    }

    #[test]
    fn sessions_remove_the_user_they_added_and_accept_409() {
        let mut state = ClientState::new(0, 7, 10);
        let add = Workload::Sessions.next_op(&mut state);
        let remove = Workload::Sessions.next_op(&mut state);
        let user = add.path.trim_start_matches("/add-session");
        assert!(add.path.starts_with("/add-session?user_id=bench-user-"));
        assert_eq!(remove.path, format!("/remove-session{user}"));
        assert_eq!(remove.expected, &[200, 409]);
    }

    #[test]
    fn users_write_alternates_create_and_update_of_a_preloaded_id() {
        let mut state = ClientState::new(0, 7, 10);
        let create = Workload::UsersWrite.next_op(&mut state);
        let update = Workload::UsersWrite.next_op(&mut state);
        assert_eq!((create.method, create.expected), (Method::POST, &[201][..]));
        assert_eq!((update.method, update.expected), (Method::PUT, &[200][..]));
        let id = update
            .body
            .as_ref()
            .and_then(|b| b["id"].as_str())
            .unwrap_or_default();
        assert!(id.starts_with("00000000-0000-4000-8000-0000000000"), "{id}");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn etcd_put_sends_the_users_write_body_under_its_user_id() {
        let (mut troupe, mut etcd) = (ClientState::new(3, 9, 10), ClientState::new(3, 9, 10));
        for _ in 0..4 {
            let write = Workload::UsersWrite.next_op(&mut troupe);
            let put = Workload::EtcdPut.next_op(&mut etcd);
            let sent = write.body.expect("users-write has a body");
            let id = sent["id"].as_str().expect("id").to_owned();
            assert_eq!(
                (put.method, put.path.as_str()),
                (Method::POST, "/v3/kv/put")
            );
            assert_eq!(put.expected, &[200]);
            assert_eq!(
                put.body,
                Some(json!({
                    "key": base64(id.as_bytes()),
                    "value": base64(sent.to_string().as_bytes()),
                }))
            );
        }
    }

    #[test]
    fn etcd_range_reads_one_preloaded_key() {
        let mut state = ClientState::new(0, 5, 10);
        let keys: Vec<Value> = (0..10)
            .map(|i| json!(base64(user_id(i).as_bytes())))
            .collect();
        for _ in 0..20 {
            let op = Workload::EtcdRange.next_op(&mut state);
            assert_eq!(
                (op.method, op.path.as_str()),
                (Method::POST, "/v3/kv/range")
            );
            let body = op.body.expect("range has a body");
            assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
            assert!(keys.contains(&body["key"]), "{body}");
        }
    }

    #[test]
    fn etcd_preload_puts_the_user_json_troupe_creates() {
        let create = Workload::UsersRead.preload_op(123);
        let put = Workload::EtcdRange.preload_op(123);
        let user = create.body.expect("create has a body");
        assert_eq!(
            (create.method, create.path.as_str()),
            (Method::POST, "/api/user")
        );
        assert_eq!(user.to_string().len(), 102, "{user}");
        assert_eq!(put, etcd_put(&user_id(123), user.to_string().as_bytes()));
        assert_eq!(Workload::EtcdPut.preload_op(123), put);
    }

    #[test]
    fn clients_start_at_their_own_url_then_go_round_robin() {
        let urls: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut state = ClientState::new(4, 0, 1);
        let seen: Vec<&str> = (0..4).map(|_| state.url(&urls)).collect();
        assert_eq!(seen, ["b", "c", "a", "b"]);
    }

    #[test]
    fn merged_tallies_sum_requests_errors_and_latencies() {
        let ok = Answer::Status(200);
        let mut a = tally_of(&[1000, 2000], &[ok, Answer::Status(404)]);
        let b = tally_of(&[3000, 40_000], &[Answer::Io, Answer::Status(404)]);
        a.merge(&b).expect("same bounds");
        let report = Report::new(&args(Workload::UsersRead), &a, Duration::from_secs(2));
        assert_eq!(report.requests, 4);
        assert_eq!(report.throughput, 2.0);
        assert_eq!(
            report.errors,
            BTreeMap::from([("404".into(), 2), ("io".into(), 1)])
        );
        assert_eq!(report.error_count(), 3);
        assert_eq!(report.latency_ms.p50, 2.0);
        // Three significant figures: 40 ms lands in a bucket 32 µs wide.
        assert!(
            (report.latency_ms.max - 40.0).abs() < 0.05,
            "{}",
            report.latency_ms.max
        );
    }

    /// A node that answers every request with 200, and the URL of a port nobody listens on.
    async fn one_live_node_and_one_refusing() -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let live = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let refusing = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let url = format!("http://{}", live.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = live.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0
                            || stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        (refusing, url)
    }

    fn shared(urls: Vec<String>, failover: bool) -> Shared {
        let now = Instant::now();
        Shared {
            http: reqwest::Client::new(),
            urls,
            workload: Workload::Healthz,
            rate: None,
            failover,
            timing: Timing {
                start: now,
                measure_from: now,
                end: now,
                hard_stop: now,
            },
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            next_ticket: AtomicU64::new(0),
        }
    }

    #[tokio::test]
    async fn failover_sends_a_refused_request_to_the_next_node_and_counts_it() {
        let (refusing, live) = one_live_node_and_one_refusing().await;
        let op = Workload::Healthz.next_op(&mut ClientState::new(0, 0, 1));
        let shared = shared(vec![refusing, live], true);
        let mut state = ClientState::new(0, 0, 1);
        let sent = send_failing_over(&shared, &mut state, &op).await;
        assert_eq!(
            sent,
            Sent {
                answer: Answer::Status(200),
                refused: 1,
                failovers: 1
            }
        );
        // The next request starts where round-robin left off: at the refusing node again.
        let again = send_failing_over(&shared, &mut state, &op).await;
        assert_eq!(again.answer, Answer::Status(200));
        assert_eq!((again.refused, again.failovers), (1, 1));
    }

    #[tokio::test]
    async fn without_failover_a_refused_connection_is_an_error_of_its_own() {
        let (refusing, _live) = one_live_node_and_one_refusing().await;
        let op = Workload::Healthz.next_op(&mut ClientState::new(0, 0, 1));
        let shared = shared(vec![refusing.clone(), refusing], false);
        let sent = send_failing_over(&shared, &mut ClientState::new(0, 0, 1), &op).await;
        assert_eq!(sent.answer, Answer::Refused);
        let mut tally = Tally::new().expect("histogram");
        tally.record(Duration::from_millis(1), sent, &[200], Instant::now());
        let report = Report::new(&args(Workload::Healthz), &tally, Duration::from_secs(1));
        assert_eq!(report.errors, BTreeMap::from([("refused".into(), 1)]));
        assert_eq!((report.refused_connections, report.failovers), (1, 0));
        assert!(report
            .render_table()
            .contains("connections refused 1, failovers 0, errors after sending (io) 0"));
    }

    #[test]
    fn open_loop_reports_requests_due_but_never_sent() {
        let tally = tally_of(&[100; 4], &[Answer::Status(200); 4]);
        let mut open = args(Workload::Healthz);
        open.rate = Some(3.0);
        let report = Report::new(&open, &tally, Duration::from_secs(2));
        assert_eq!(report.unsent, Some(2));
        assert!(report.render_table().contains("unsent      2"));
        let closed = Report::new(&args(Workload::Healthz), &tally, Duration::from_secs(2));
        assert_eq!(closed.unsent, None);
    }

    #[test]
    fn report_renders_as_table_and_json() {
        let tally = tally_of(&[500, 1500], &[Answer::Status(200), Answer::Status(503)]);
        let report = Report::new(&args(Workload::Healthz), &tally, Duration::from_secs(1));
        let table = report.render_table();
        assert!(table.contains("workload    healthz"), "{table}");
        assert!(table.contains("throughput  2.00 req/s"), "{table}");
        assert!(table.contains("p50 0.50"), "{table}");
        assert!(table.contains("errors      503: 1"), "{table}");
        assert!(table.contains("rejected    1 (503)"), "{table}");
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(json["workload"], "healthz");
        assert_eq!(json["errors"]["503"], 1);
        // The 503 is timed apart from the accepted answer.
        assert_eq!(json["latency_ms"]["max"], 0.5);
        assert_eq!(json["rejected"]["count"], 1);
        assert_eq!(json["rejected"]["latency_ms"]["max"], 1.5);
        assert_eq!(json["target_rate"], Value::Null);
    }
}
