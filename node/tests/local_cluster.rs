//! `troupe local` and `troupe restart` as a user runs them: a local cluster, a rolling restart
//! of all its nodes under a read load, and a clean stop.

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A base port whose derived ports (HTTP base..+2, gossip +100.., RPC +200..) are all free now.
fn free_base_port() -> u16 {
    let pid_offset = (std::process::id() % 200) as u16 * 50;
    (0..100)
        .map(|k| 21_000 + pid_offset + k * 7)
        .find(|&base| {
            (0..3).all(|i| {
                TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                    && UdpSocket::bind(("127.0.0.1", base + 100 + i)).is_ok()
                    && TcpListener::bind(("127.0.0.1", base + 200 + i)).is_ok()
            })
        })
        .expect("a free port range")
}

/// Reads `locate` through the nodes in turn until stopped; a connection error or 503 is retried
/// on the next node within 1 s (counted as retried), anything else counts as failed.
async fn read_until(
    stop: Arc<AtomicBool>,
    urls: Vec<String>,
    retried: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> u64 {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut reads = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let path = format!("/cluster/locate/user/key-{}", reads % 64);
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut tries = 0usize;
        let status = loop {
            let url = format!("{}{path}", urls[(reads as usize + tries) % urls.len()]);
            tries += 1;
            let status = http.get(url).send().await.ok().map(|r| r.status().as_u16());
            if !matches!(status, None | Some(503)) || Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        reads += 1;
        match (status, tries) {
            (Some(200), 1) => {}
            (Some(200), _) => {
                retried.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reads
}

/// `troupe local` without a secret in the environment or the config generates one for its
/// cluster directory: 32 random bytes in hex, readable by the owner only.
fn assert_a_private_secret_was_generated(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let secret = std::fs::read_to_string(path).expect("troupe local wrote a secret file");
    let secret = secret.trim_end();
    assert_eq!(secret.len(), 64, "{secret:?}");
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()), "{secret:?}");
    let mode = std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "secret file readable by others: {mode:o}");
}

/// Runs `troupe node` with the embedded config and the given secret variables; it must exit
/// at once with an error. Returns what it printed.
fn refused_node_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_troupe"));
    command
        .args(["node", "--node-id=n1", "--region=eu-west-1"])
        .arg(format!("--data-dir={}", dir.path().display()))
        .env_remove("TROUPE_SECRET")
        .env_remove("TROUPE_SECRET_FILE")
        .env_remove("TROUPE_CONFIG")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run troupe node");
    assert!(!out.status.success(), "troupe node started with {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_without_a_secret_or_with_the_published_sample_or_a_short_one_refuses_to_start() {
    let missing = refused_node_start(&[]);
    assert!(
        missing.contains("cluster.secret: it is not set") && missing.contains("troupe secret"),
        "{missing}"
    );
    let sample = refused_node_start(&[("TROUPE_SECRET", "troupe-dev-secret-change-me")]);
    assert!(sample.contains("is the sample secret"), "{sample}");
    let short = refused_node_start(&[("TROUPE_SECRET", "only-twenty-bytes-xx")]);
    assert!(short.contains("at least 32 bytes long, got 20"), "{short}");
    let both = refused_node_start(&[
        ("TROUPE_SECRET", "a-secret-that-is-long-enough-32-bytes"),
        ("TROUPE_SECRET_FILE", "/nonexistent"),
    ]);
    assert!(both.contains("both set"), "{both}");
    let unreadable = refused_node_start(&[("TROUPE_SECRET_FILE", "/nonexistent/secret")]);
    assert!(unreadable.contains("/nonexistent/secret"), "{unreadable}");
}

/// A port the system just handed out as free (TCP, or UDP when `udp`).
fn free_port(udp: bool) -> u16 {
    let addr = if udp {
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())
    };
    addr.expect("a free port").port()
}

/// Status of `GET url`, or 0 when nothing answers.
async fn status_of(http: &reqwest::Client, url: &str) -> u16 {
    match http.get(url).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_listener_the_operators_views_leave_the_client_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, admin_port) = (free_port(false), free_port(false));
    let mut node = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["node", "--node-id=n1", "--region=eu-west-1"])
        .arg(format!("--http-listen=127.0.0.1:{http_port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .arg(format!("--gossip-listen=127.0.0.1:{}", free_port(true)))
        .arg(format!("--rpc-listen=127.0.0.1:{}", free_port(false)))
        .arg(format!("--data-dir={}", dir.path().display()))
        .env("TROUPE_SECRET", "admin-listener-test-secret-of-32-bytes")
        .env_remove("TROUPE_SECRET_FILE")
        .env_remove("TROUPE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start troupe node");
    let http = reqwest::Client::new();
    let (client, admin) = (
        format!("http://127.0.0.1:{http_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(&http, &format!("{client}/readyz")).await != 200 {
        assert!(Instant::now() < deadline, "the node did not become ready");
        assert!(node.try_wait().expect("wait").is_none(), "the node exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in [
        "/cluster",
        "/cluster/shards",
        "/metrics",
        "/cluster/locate/user/1",
    ] {
        assert_eq!(
            status_of(&http, &format!("{client}{path}")).await,
            404,
            "{path}"
        );
        assert_eq!(
            status_of(&http, &format!("{admin}{path}")).await,
            200,
            "{path}"
        );
    }
    for path in ["/api/user/count", "/v1/integers"] {
        assert_eq!(
            status_of(&http, &format!("{admin}{path}")).await,
            404,
            "{path}"
        );
    }
    assert_eq!(
        status_of(&http, &format!("{client}/api/user/count")).await,
        200
    );
    assert_eq!(status_of(&http, &format!("{admin}/readyz")).await, 200);
    let _ = node.kill();
    let _ = node.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_a_local_cluster_fails_no_read_and_gives_every_node_a_new_generation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_base_port();
    let exe = env!("CARGO_BIN_EXE_troupe");
    let log = std::fs::File::create(dir.path().join("local.out")).expect("log");
    let mut local = Command::new(exe)
        .args([
            "local",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path().join("cluster"))
        .env("TROUPE_LOG", "info")
        .env_remove("TROUPE_SECRET")
        .env_remove("TROUPE_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log clone"))
        .stderr(log)
        .spawn()
        .expect("start troupe local");
    let state = dir.path().join("cluster").join("local.json");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !state.exists() {
        assert!(
            Instant::now() < deadline,
            "local cluster not ready: {}",
            std::fs::read_to_string(dir.path().join("local.out")).unwrap_or_default()
        );
        assert!(
            local.try_wait().expect("wait").is_none(),
            "troupe local exited early"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_a_private_secret_was_generated(&dir.path().join("cluster").join("secret"));

    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", base + i))
        .collect();
    let (stop, retried, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let reader = tokio::spawn(read_until(
        stop.clone(),
        urls,
        retried.clone(),
        failed.clone(),
    ));
    let started = Instant::now();
    let restart = tokio::task::spawn_blocking({
        let dir = dir.path().join("cluster");
        move || {
            Command::new(exe)
                .arg("restart")
                .arg("--dir")
                .arg(dir)
                .output()
                .expect("run troupe restart")
        }
    })
    .await
    .expect("restart task");
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    let out = String::from_utf8_lossy(&restart.stdout);
    assert!(
        restart.status.success(),
        "troupe restart failed: {out}{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(out.contains("every node runs a new generation"), "{out}");
    let (retried, failed) = (
        retried.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!("measured: rolling restart of 3 nodes took {} ms; {reads} reads, {retried} retried, {failed} failed", started.elapsed().as_millis());
    assert_eq!(
        failed, 0,
        "reads failed during the rolling restart ({retried} retried of {reads})"
    );
    assert!(reads > 50, "the reader barely ran: {reads} reads");

    let pid = nix::unistd::Pid::from_raw(local.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal troupe local");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = local.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "troupe local did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "troupe local exited with {status}");
    assert!(!state.exists(), "state file left behind");
}
