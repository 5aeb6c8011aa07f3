//! The HTTP edge under abuse, against a real `troupe node` process on 127.0.0.1: trickling
//! (slowloris) connections are closed by the header-read timeout and capped, while the API keeps
//! answering and the node's descriptors stay bounded; a trickling body is cut at its deadline.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{cluster_lock, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections the slowloris client keeps open (reopening each one the node closes).
const ATTACKERS: usize = 2_000;
/// The node's connection cap in these tests.
const MAX_CONNECTIONS: usize = 400;
/// How fast a probe must be answered during the attack.
const PROMPT: Duration = Duration::from_secs(2);
/// The node's header-read and body timeouts in these tests.
const TIMEOUT_MS: u64 = 2_000;

fn overrides() -> [(&'static str, String); 4] {
    [
        // One node holds every copy.
        ("replication_factor", "1".to_owned()),
        ("header_read_timeout_ms", TIMEOUT_MS.to_string()),
        ("body_timeout_ms", TIMEOUT_MS.to_string()),
        ("max_connections", MAX_CONNECTIONS.to_string()),
    ]
}

async fn start_node() -> TestCluster {
    let owned = overrides();
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = TestCluster::start_with(1, &pairs);
    cluster.wait_ready(&[0], Duration::from_secs(60)).await;
    cluster
}

/// Open descriptors of the node process.
fn open_fds(cluster: &TestCluster) -> usize {
    let pid = cluster.nodes[0].child.as_ref().expect("node runs").id();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Raises this process's soft descriptor limit so the client side of the attack fits.
fn raise_fd_limit(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < needed {
        assert!(
            hard >= needed,
            "this test needs {needed} descriptors, the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("setrlimit");
    }
}

/// One slowloris connection: a request head that never ends, one header line a second; when
/// the node closes it, counts the close and opens another.
async fn trickle(port: u16, stop: Arc<AtomicBool>, closed: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut sent = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await;
        let mut buf = [0u8; 256];
        while sent.is_ok() && !stop.load(Ordering::Relaxed) {
            tokio::select! {
                // The node closed (or answered, which it must not before the head ends).
                _ = stream.read(&mut buf) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    sent = stream.write_all(b"X-Trickle: 1\r\n").await;
                }
            }
        }
        if !stop.load(Ordering::Relaxed) {
            closed.fetch_add(1, Ordering::Relaxed);
            // A real attacker reopens at once; a pause keeps two shared cores usable.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_are_closed_and_capped_while_the_api_keeps_answering() {
    let _lock = cluster_lock().await;
    raise_fd_limit(ATTACKERS as u64 + 1_024);
    let cluster = start_node().await;
    let id = "00000000-0000-4000-8000-000000000001";
    let user = json!({ "id": id, "name": "Ada", "email": "ada@example.com", "group": 1 });
    // Shards open just after readiness: a write may get 503 for a moment.
    cluster
        .wait_for("the user stored", Duration::from_secs(30), || async {
            let (status, body) = cluster.post(0, "/api/user", user.clone()).await;
            if status != 201 {
                eprintln!("create: {status} {body}");
            }
            (status == 201).then_some(())
        })
        .await;
    let baseline = open_fds(&cluster);

    let port = cluster.nodes[0].http_port;
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicUsize::new(0));
    // Opened over about two seconds, as slowloris tools do (and so the first connections are
    // not all refused in one burst).
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        attackers.push(tokio::spawn(trickle(port, stop.clone(), closed.clone())));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A fresh connection per probe: a pooled one could hide a node that accepts no more.
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PROMPT)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut most_fds = 0;
    let mut slowest = Duration::ZERO;
    // Long enough for every attacker to be closed by the header timeout a few times over.
    while started.elapsed() < Duration::from_millis(TIMEOUT_MS * 5) {
        for path in ["/healthz".to_owned(), format!("/api/user/{id}")] {
            // A client retries a connection the node closed before reading it (at the cap, a
            // new connection can be replaced before it sent its head): within the bound.
            let asked = Instant::now();
            let mut last = None;
            while asked.elapsed() < PROMPT {
                match probe.get(cluster.nodes[0].url(&path)).send().await {
                    Ok(answer) if answer.status() == 200 => {
                        last = None;
                        break;
                    }
                    other => last = Some(format!("{other:?}")),
                }
            }
            if let Some(failure) = last {
                stop.store(true, Ordering::Relaxed);
                cluster.dump_logs();
                panic!("{path} not answered within {PROMPT:?} during the attack: {failure}");
            }
            slowest = slowest.max(asked.elapsed());
        }
        most_fds = most_fds.max(open_fds(&cluster));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = attacker.await;
    }
    let closes = closed.load(Ordering::Relaxed);
    eprintln!(
        "baseline {baseline} fds, at most {most_fds} during the attack; {closes} attacker \
         connections closed by the node; slowest probe {slowest:?}"
    );
    assert!(
        most_fds <= baseline + MAX_CONNECTIONS + 64,
        "the node held {most_fds} descriptors (baseline {baseline}, cap {MAX_CONNECTIONS})"
    );
    assert!(
        closes >= ATTACKERS,
        "only {closes} of {ATTACKERS} trickling connections were closed by the node"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "slowest probe took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_trickles_past_its_deadline_is_refused_and_the_connection_freed() {
    let _lock = cluster_lock().await;
    let cluster = start_node().await;
    let mut stream = TcpStream::connect(("127.0.0.1", cluster.nodes[0].http_port))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /api/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{",
        )
        .await
        .expect("head");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Duration::from_millis(TIMEOUT_MS * 10);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                // One more byte of body now and then: never the whole of it.
                let _ = stream.write_all(b" ").await;
            }
        }
        assert!(
            started.elapsed() < deadline,
            "the trickling body was still accepted after {deadline:?}"
        );
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("in time"),
        "expected a 400 saying the body did not arrive in time, got {answer:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS / 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_requests_get_a_fast_503_with_retry_after_and_are_counted() {
    let _lock = cluster_lock().await;
    let cluster =
        TestCluster::start_with(1, &[("replication_factor", "1"), ("max_in_flight", "1")]);
    cluster.wait_ready(&[0], Duration::from_secs(60)).await;
    // Listings ask all 64 shards: long enough for concurrent ones to overlap.
    let url = cluster.nodes[0].url("/api/user?limit=1000");
    let answers = futures_util::future::join_all((0..64).map(|_| {
        let (http, url) = (cluster.http.clone(), url.clone());
        async move {
            let response = http.get(&url).send().await.expect("answered");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
    }))
    .await;
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(
        answers.iter().all(|(s, _, _)| *s == 200 || *s == 503),
        "{answers:?}"
    );
    assert!(!refused.is_empty(), "64 concurrent listings, none refused");
    for (_, retry_after, body) in &refused {
        assert_eq!(retry_after.as_deref(), Some("1"));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("http.max_in_flight"), "{message}");
    }
    let metrics = cluster
        .http
        .get(cluster.nodes[0].url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let counted = format!(
        "troupe_http_rejected_total{{reason=\"in_flight\"}} {}",
        refused.len()
    );
    assert!(
        metrics.contains(&counted),
        "expected {counted:?} in:\n{metrics}"
    );
}
