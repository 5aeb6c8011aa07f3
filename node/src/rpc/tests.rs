//! The RPC path over real TCP on 127.0.0.1: calls, deadlines, reconnection and refusals.
//!
//! The transport carries any [`Call`], so these tests bring their own: [`Ask`] and [`Reply`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::auth::Credentials;
use super::session::SealedWriter;
use super::{serve, Answer, Call, Handler, Lane, RpcClient, RpcError, ServerLimits};
use crate::config::{HostPort, Secret};
use crate::ids::NodeId;
use crate::net::tcp::{TcpAcceptor, TcpDialer};
use crate::net::Listener;

const MAX_FRAME: u32 = 64 * 1024;

/// A call of these tests.
#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Ping,
    /// A control call, answered late (see [`Echo`]).
    LeaseCheck,
    /// A data call, answered with its key (some keys make the handler wait or answer big).
    Echo(String),
}

/// An answer of these tests.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Reply {
    Pong(NodeId),
    HearsYou,
    Echo(String),
    /// What the server answers in place of an answer it cannot send.
    Failed(String),
}

impl Call for Ask {
    type Answer = Reply;
    const PROTOCOL_VERSION: u16 = 1;

    fn ping() -> Self {
        Self::Ping
    }

    fn lane(&self) -> Lane {
        match self {
            Self::Ping | Self::LeaseCheck => Lane::Control,
            Self::Echo(_) => Lane::Data,
        }
    }
}

impl Answer for Reply {
    fn failed(message: String) -> Self {
        Self::Failed(message)
    }
}

/// The calls of a build whose message set is incompatible with [`Ask`]'s.
#[derive(Debug, Serialize, Deserialize)]
struct Newer(Ask);

impl Call for Newer {
    type Answer = Reply;
    const PROTOCOL_VERSION: u16 = Ask::PROTOCOL_VERSION + 1;

    fn ping() -> Self {
        Self(Ask::Ping)
    }

    fn lane(&self) -> Lane {
        self.0.lane()
    }
}

struct Echo(NodeId);

impl Handler for Echo {
    type Call = Ask;

    async fn handle(&self, _from: NodeId, call: Ask) -> Reply {
        match call {
            Ask::Ping => Reply::Pong(self.0.clone()),
            Ask::LeaseCheck => {
                // Answered while a data call on the same peer times out.
                tokio::time::sleep(Duration::from_millis(800)).await;
                Reply::HearsYou
            }
            Ask::Echo(key) if key == "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Reply::Echo("too late".into())
            }
            Ask::Echo(key) if key == "takes a second" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Reply::Echo(key)
            }
            Ask::Echo(key) if key == "large answer" => Reply::Echo("x".repeat(MAX_FRAME as usize)),
            Ask::Echo(key) => Reply::Echo(key),
        }
    }
}

fn creds(node: &str, secret: &str) -> Credentials {
    Credentials::new("test", NodeId::new(node), Secret::new(secret))
}

/// Starts a server for `node` on `addr` (port 0 for a fresh one); returns its address and stop token.
async fn server(node: &str, secret: &str, addr: &str) -> (HostPort, CancellationToken) {
    server_with(node, secret, addr, limits(Duration::from_secs(30), 256)).await
}

/// [`server`] with other accept limits.
async fn server_with(
    node: &str,
    secret: &str,
    addr: &str,
    limits: ServerLimits,
) -> (HostPort, CancellationToken) {
    let listener = TcpAcceptor::bind(addr.parse().expect("addr"))
        .await
        .expect("bind");
    let bound = HostPort::from(listener.local_addr().expect("local addr"));
    let stop = CancellationToken::new();
    tokio::spawn(serve(
        Box::new(listener),
        creds(node, secret),
        limits,
        Arc::new(Echo(NodeId::new(node))),
        stop.clone(),
    ));
    (bound, stop)
}

/// A data call the test handler answers with `Reply::Echo(key)`.
fn data_call(key: &str) -> Ask {
    Ask::Echo(key.into())
}

fn limits(handshake_timeout: Duration, max_pending_handshakes: usize) -> ServerLimits {
    ServerLimits {
        max_frame: MAX_FRAME,
        handshake_timeout,
        max_pending_handshakes,
    }
}

fn client<C: Call>(secret: &str, timeout: Duration) -> RpcClient<C> {
    RpcClient::new(
        Arc::new(TcpDialer),
        creds("caller", secret),
        MAX_FRAME,
        timeout,
        CancellationToken::new(),
    )
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_get_their_own_answers() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(5));
    let node = NodeId::new("s1");
    let calls = (0..100).map(|i| {
        let (client, node, addr) = (client.clone(), node.clone(), addr.clone());
        tokio::spawn(async move {
            client
                .call(&node, &addr, data_call(&format!("key-{i}")))
                .await
        })
    });
    for (i, call) in calls.enumerate() {
        let answer = call.await.expect("task").expect("call");
        assert_eq!(answer, Reply::Echo(format!("key-{i}")));
    }
}

#[tokio::test]
async fn a_call_that_waits_does_not_hold_up_the_calls_after_it_on_its_connection() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(60));
    let node = NodeId::new("s1");
    let slow = slow_call_in_flight(&client, &node, &addr).await;
    let after = tokio::time::timeout(
        Duration::from_secs(10),
        client.call(&node, &addr, data_call("after")),
    )
    .await;
    assert!(
        matches!(&after, Ok(Ok(Reply::Echo(message))) if message == "after"),
        "{after:?}"
    );
    assert!(
        slow.now_or_never().is_none(),
        "the slow call is still waiting"
    );
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again_on_the_next_call() {
    let (addr, stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(5));
    let node = NodeId::new("s1");
    assert!(matches!(
        client.call(&node, &addr, Ask::Ping).await,
        Ok(Reply::Pong(_))
    ));
    stop.cancel();
    // The old connection dies with the server; a call meanwhile fails rather than hanging.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client.call(&node, &addr, Ask::Ping).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls kept succeeding after the server stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_again, _stop2) = server("s1", "secret-123", &addr.to_string()).await;
    assert!(matches!(
        client.call(&node, &addr, Ask::Ping).await,
        Ok(Reply::Pong(_))
    ));
}

#[tokio::test]
async fn a_silent_peer_times_out_at_the_deadline_and_the_connection_is_replaced() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_millis(300));
    let node = NodeId::new("s1");
    let started = tokio::time::Instant::now();
    let slow = client.call(&node, &addr, data_call("slow")).await;
    assert!(matches!(slow, Err(RpcError::Timeout { .. })), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        client.call(&node, &addr, Ask::Ping).await,
        Ok(Reply::Pong(_))
    ));
}

#[tokio::test]
async fn a_peer_that_accepts_but_never_speaks_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = HostPort::from(listener.local_addr().expect("addr"));
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = client("secret-123", Duration::from_millis(300));
    let answer = client.call(&NodeId::new("s1"), &addr, Ask::Ping).await;
    assert!(
        matches!(answer, Err(RpcError::Timeout { .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let answer = client("another-secret", Duration::from_secs(5))
        .call(&NodeId::new("s1"), &addr, Ask::Ping)
        .await;
    assert!(
        matches!(&answer, Err(RpcError::Auth { reason, .. }) if reason.contains("refused")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_different_node_at_the_expected_address_is_detected() {
    let (addr, _stop) = server("s2", "secret-123", "127.0.0.1:0").await;
    let answer = client("secret-123", Duration::from_secs(5))
        .call(&NodeId::new("s1"), &addr, Ask::Ping)
        .await;
    assert!(
        matches!(answer, Err(RpcError::WrongPeer { .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_peer_speaking_another_protocol_version_is_refused_with_both_versions() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let newer: RpcClient<Newer> = client("secret-123", Duration::from_secs(5));
    let answer = newer
        .call(&NodeId::new("s1"), &addr, Newer(Ask::Ping))
        .await;
    let (ours, theirs) = (Ask::PROTOCOL_VERSION, Newer::PROTOCOL_VERSION);
    assert!(
        matches!(&answer, Err(RpcError::Auth { reason, .. })
            if reason.contains(&format!("protocol version {ours}")) && reason.contains(&theirs.to_string())),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_without_allocating_it() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let mut raw = tokio::net::TcpStream::connect((addr.host(), addr.port()))
        .await
        .expect("connect");
    let (_, keys) = super::auth::connect(
        &mut raw,
        &creds("caller", "secret-123"),
        Ask::PROTOCOL_VERSION,
    )
    .await
    .expect("handshake");
    let mut sealer = SealedWriter::new(tokio::io::sink(), keys);
    let sealed = sealer
        .seal(&(MAX_FRAME + 1).to_be_bytes())
        .expect("seal the length");
    raw.write_all(&sealed).await.expect("write length");
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
    )
    .await
    .expect("server reacts");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "server kept the connection open: {read:?}"
    );
}

/// Starts a call that the server answers only after 30 s on a connected client, and checks
/// it is in flight: polled once, its frame is queued ahead of later calls on the connection.
async fn slow_call_in_flight(
    client: &RpcClient<Ask>,
    node: &NodeId,
    addr: &HostPort,
) -> std::pin::Pin<Box<impl std::future::Future<Output = Result<Reply, RpcError>>>> {
    let connected = client.call(node, addr, data_call("connect")).await;
    assert!(
        matches!(&connected, Ok(Reply::Echo(message)) if message == "connect"),
        "{connected:?}"
    );
    let slow = data_call("slow");
    let (client, node, addr) = (client.clone(), node.clone(), addr.clone());
    let mut slow = Box::pin(async move { client.call(&node, &addr, slow).await });
    assert!((&mut slow).now_or_never().is_none());
    slow
}

/// Calls `request` on a connection with a slow call in flight, and checks that afterwards the
/// connection still answers a ping and the slow call is still waiting.
async fn call_beside_a_call_in_flight(request: Ask) -> Result<Reply, RpcError> {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(60));
    let node = NodeId::new("s1");
    let mut slow = slow_call_in_flight(&client, &node, &addr).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), client.call(&node, &addr, request))
        .await
        .expect("answered before the deadline");
    let after = client.call(&node, &addr, data_call("after")).await;
    assert!(
        matches!(&after, Ok(Reply::Echo(message)) if message == "after"),
        "{after:?}"
    );
    assert!(
        (&mut slow).now_or_never().is_none(),
        "the call in flight lost its connection"
    );
    answer
}

#[tokio::test]
async fn a_request_too_large_for_a_frame_fails_alone_and_the_calls_in_flight_go_on() {
    let refused = call_beside_a_call_in_flight(data_call(&"x".repeat(MAX_FRAME as usize))).await;
    assert!(
        matches!(&refused, Err(error @ RpcError::TooLarge { .. }) if !error.may_have_been_delivered()),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_answer_too_large_for_a_frame_becomes_a_failure_and_the_calls_in_flight_go_on() {
    let answer = call_beside_a_call_in_flight(data_call("large answer")).await;
    assert!(
        matches!(&answer, Ok(Reply::Failed(message)) if message.contains("exceeds the frame limit")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_timed_out_data_call_does_not_fail_a_concurrent_lease_check_to_the_same_peer() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(5));
    let node = NodeId::new("s1");
    let lease_check = {
        let (client, node, addr) = (client.clone(), node.clone(), addr.clone());
        tokio::spawn(async move { client.call(&node, &addr, Ask::LeaseCheck).await })
    };
    let slow = client
        .call_with_timeout(&node, &addr, data_call("slow"), Duration::from_millis(300))
        .await;
    assert!(matches!(slow, Err(RpcError::Timeout { .. })), "{slow:?}");
    let answer = lease_check.await.expect("task");
    assert!(matches!(answer, Ok(Reply::HearsYou)), "{answer:?}");
}

#[tokio::test]
async fn a_timed_out_call_does_not_fail_the_other_calls_on_its_connection() {
    let (addr, _stop) = server("s1", "secret-123", "127.0.0.1:0").await;
    let client = client("secret-123", Duration::from_secs(5));
    let node = NodeId::new("s1");
    let other = {
        let (client, node, addr) = (client.clone(), node.clone(), addr.clone());
        tokio::spawn(async move { client.call(&node, &addr, data_call("takes a second")).await })
    };
    let slow = client
        .call_with_timeout(&node, &addr, data_call("slow"), Duration::from_millis(300))
        .await;
    assert!(matches!(slow, Err(RpcError::Timeout { .. })), "{slow:?}");
    let answer = other.await.expect("task");
    assert!(
        matches!(&answer, Ok(Reply::Echo(message)) if message == "takes a second"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_connection_that_goes_silent_is_dropped_and_the_next_call_dials_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = HostPort::from(listener.local_addr().expect("addr"));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _silent = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                // Authenticates, then never answers: a peer behind a half-open connection.
                if super::auth::accept(
                    &mut socket,
                    &creds("s1", "secret-123"),
                    Ask::PROTOCOL_VERSION,
                )
                .await
                .is_ok()
                {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                held.push(socket);
            }
        })
    };
    let client = client("secret-123", Duration::from_millis(300));
    let node = NodeId::new("s1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        let answer = client.call(&node, &addr, data_call("anyone there")).await;
        // Lost when the probe gives up on the connection while the call waits.
        assert!(
            matches!(
                answer,
                Err(RpcError::Timeout { .. } | RpcError::ConnectionLost { .. })
            ),
            "{answer:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent connection was never replaced"
        );
    }
}

/// Opens `n` TCP connections to `addr` from `source` that send nothing.
async fn idle_connections(addr: &HostPort, source: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let target: std::net::SocketAddr = addr.to_string().parse().expect("socket addr");
    let mut idle = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{source}:0").parse().expect("source"))
            .expect("bind source");
        idle.push(socket.connect(target).await.expect("connect"));
    }
    idle
}

/// Whether the server closes `stream` within `within` (whatever it sent before).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match tokio::io::AsyncReadExt::read(stream, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn connections_over_the_handshake_caps_are_closed_at_once_and_real_peers_still_call() {
    // At most 16 in handshake, 4 of them from one host; each would be given 30 s.
    let (addr, stop) = server_with(
        "s1",
        "secret-123",
        "127.0.0.1:0",
        limits(Duration::from_secs(30), 16),
    )
    .await;
    let mut flood = idle_connections(&addr, "127.0.0.2", 40).await;
    let mut closed = 0;
    for stream in &mut flood {
        if closed_within(stream, Duration::from_millis(500)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 36, "all but the host's 4 slots are closed at once");
    // The flood still holds its slots: a real peer from another host connects and calls.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client("secret-123", Duration::from_secs(5)).call(&NodeId::new("s1"), &addr, Ask::Ping),
    )
    .await
    .expect("answered");
    assert!(matches!(answer, Ok(Reply::Pong(_))), "{answer:?}");
    stop.cancel();
}

#[tokio::test]
async fn an_idle_or_trickling_connection_is_closed_after_the_handshake_timeout() {
    let (addr, stop) = server_with(
        "s1",
        "secret-123",
        "127.0.0.1:0",
        limits(Duration::from_millis(300), 256),
    )
    .await;
    let mut idle = idle_connections(&addr, "127.0.0.1", 1).await;
    let mut trickling = idle_connections(&addr, "127.0.0.1", 1).await.remove(0);
    let started = tokio::time::Instant::now();
    // A hello that claims 100 bytes and sends one every 100 ms.
    let trickle = async move {
        let _ = trickling.write_all(&100u32.to_be_bytes()).await;
        let mut closed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickling.write_all(&[1]).await.is_err() {
                closed = true;
                break;
            }
        }
        closed || closed_within(&mut trickling, Duration::from_millis(100)).await
    };
    let (idle_closed, trickle_closed) =
        tokio::join!(closed_within(&mut idle[0], Duration::from_secs(3)), trickle);
    assert!(idle_closed, "the idle connection is still open");
    assert!(trickle_closed, "the trickling connection is still open");
    assert!(started.elapsed() < Duration::from_secs(5));
    stop.cancel();
}
