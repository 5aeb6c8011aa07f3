//! Mutual authentication of a connection with the cluster secret, and its session keys.
//!
//! The Noise protocol's `NNpsk0` pattern (`Noise_NNpsk0_25519_AESGCM_BLAKE2s`, through the
//! `snow` crate; decision 020): the pre-shared key is derived from the cluster secret and the
//! cluster name, so only members of this cluster can complete it, and the secret never crosses
//! the wire. Both sides contribute a fresh ephemeral X25519 key, so every connection gets its
//! own session keys ([`SessionKeys`]), and a recorded session cannot be decrypted later even
//! with the secret. The client's node id travels in the clear (for the server's checks and
//! logs) but is bound, with the protocol version, the cluster name and the server's fresh nonce,
//! into the handshake's prologue: a hello altered on the way, or replayed on another
//! connection, does not open. The server's node id travels sealed in its answer. Both sides
//! prove: a node never sends calls to an impostor that merely accepts connections.

use snow::params::NoiseParams;
use snow::HandshakeState;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{read_frame, write_frame};
use super::session::SessionKeys;
use super::wire::{Bytes32, Handshake};
use crate::codec;
use crate::config::Secret;
use crate::ids::NodeId;
use crate::mac::mac;

/// Handshake frames are tiny; anything larger is hostile or corrupt.
const MAX_HANDSHAKE_FRAME: u32 = 4096;

/// Who this end is, for either side of a handshake.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Cluster name.
    pub cluster: String,
    /// This node.
    pub node_id: NodeId,
    /// Shared secret.
    pub secret: Secret,
    /// A second secret a server also accepts (`cluster.previous_secret`), so the secret can be
    /// rotated one node at a time (decision 019); a client always proves `secret`.
    pub previous_secret: Option<Secret>,
}

impl Credentials {
    /// Credentials with one secret and no second one.
    pub fn new(cluster: impl Into<String>, node_id: NodeId, secret: Secret) -> Self {
        Self {
            cluster: cluster.into(),
            node_id,
            secret,
            previous_secret: None,
        }
    }

    /// The secrets a server accepts, the current one first.
    fn accepted_secrets(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.secret).chain(self.previous_secret.as_ref())
    }
}

/// Why a handshake failed; logged by the server, returned to the client's caller.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The stream failed or closed.
    #[error("i/o during handshake: {0}")]
    Io(#[from] std::io::Error),
    /// A frame was not a handshake message.
    #[error("malformed handshake: {0}")]
    Malformed(String),
    /// The other side is not a member of this cluster (wrong secret, cluster name or version).
    #[error("{0}")]
    Rejected(String),
}

/// The Noise protocol of every connection.
const NOISE: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

/// A Noise handshake message: an ephemeral key, a short sealed payload and its tag.
const MAX_NOISE_MESSAGE: usize = 1024;

/// The pre-shared key of `cluster`: derived from the secret, so the secret itself is used only
/// as a MAC key, and bound to the cluster name, so two clusters sharing a secret by mistake
/// still do not accept each other.
fn psk(secret: &Secret, cluster: &str) -> Bytes32 {
    mac(secret, &[b"troupe rpc noise psk v1", cluster.as_bytes()])
}

/// Everything the client says in the clear, and the server's nonce, length-prefixed.
fn prologue(protocol: u16, server_nonce: &Bytes32, cluster: &str, client: &NodeId) -> Vec<u8> {
    let parts: [&[u8]; 5] = [
        b"troupe rpc v1",
        &protocol.to_be_bytes(),
        server_nonce,
        cluster.as_bytes(),
        client.as_str().as_bytes(),
    ];
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn noise_state(
    initiator: bool,
    secret: &Secret,
    cluster: &str,
    prologue: &[u8],
) -> Result<HandshakeState, HandshakeError> {
    let failed = |e: snow::Error| HandshakeError::Malformed(format!("noise set-up: {e}"));
    let params: NoiseParams = NOISE.parse().map_err(failed)?;
    let psk = psk(secret, cluster);
    let builder = snow::Builder::new(params)
        .prologue(prologue)
        .map_err(failed)?
        .psk(0, &psk)
        .map_err(failed)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(failed)
}

fn into_keys(mut state: HandshakeState) -> Result<SessionKeys, HandshakeError> {
    SessionKeys::from_handshake(&mut state)
        .map_err(|e| HandshakeError::Malformed(format!("noise split: {e}")))
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &Handshake,
) -> Result<(), HandshakeError> {
    let bytes = codec::encode(msg).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    write_frame(stream, &bytes, MAX_HANDSHAKE_FRAME).await?;
    Ok(())
}

async fn recv<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Handshake, HandshakeError> {
    let bytes = read_frame(stream, MAX_HANDSHAKE_FRAME)
        .await?
        .ok_or_else(|| HandshakeError::Malformed("connection closed during handshake".into()))?;
    codec::decode(&bytes, codec::Limit::Handshake)
        .map_err(|e| HandshakeError::Malformed(e.to_string()))
}

/// Runs the server side; returns the authenticated peer's node id and the session keys.
/// `speaks` is the protocol version of the messages the connection is to carry
/// ([`Call::PROTOCOL_VERSION`](super::Call::PROTOCOL_VERSION)): a client speaking another one
/// is refused with both versions named.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Credentials,
    speaks: u16,
) -> Result<(NodeId, SessionKeys), HandshakeError> {
    let server_nonce: Bytes32 = rand::random();
    send(
        stream,
        &Handshake::Challenge {
            protocol: speaks,
            nonce: server_nonce,
        },
    )
    .await?;
    let Handshake::Hello {
        protocol,
        cluster,
        node_id,
        noise,
    } = recv(stream).await?
    else {
        return Err(HandshakeError::Malformed("expected hello".into()));
    };
    let mut state = None;
    let refusal = if protocol != speaks {
        Some(format!(
            "protocol version {protocol} is not supported (this node speaks {speaks})"
        ))
    } else if cluster != me.cluster {
        Some(format!("cluster {cluster:?} is not this node's cluster"))
    } else {
        let prologue = prologue(protocol, &server_nonce, &cluster, &node_id);
        let mut payload = [0u8; MAX_NOISE_MESSAGE];
        for secret in me.accepted_secrets() {
            let mut responder = noise_state(false, secret, &me.cluster, &prologue)?;
            if responder.read_message(&noise, &mut payload).is_ok() {
                state = Some(responder);
                break;
            }
        }
        state
            .is_none()
            .then(|| "invalid proof of the cluster secret".to_owned())
    };
    let (Some(mut state), None) = (state, refusal.clone()) else {
        let reason = refusal.unwrap_or_else(|| "refused".to_owned());
        // Best effort: the peer learns why; we log either way.
        let _ = send(
            stream,
            &Handshake::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(HandshakeError::Rejected(format!(
            "node {node_id} refused: {reason}"
        )));
    };
    let mut message = [0u8; MAX_NOISE_MESSAGE];
    let len = state
        .write_message(me.node_id.as_str().as_bytes(), &mut message)
        .map_err(|e| HandshakeError::Malformed(format!("noise answer: {e}")))?;
    send(
        stream,
        &Handshake::Welcome {
            noise: message[..len].to_vec(),
        },
    )
    .await?;
    Ok((node_id, into_keys(state)?))
}

/// Runs the client side; returns the node id that answered (after checking its proof) and
/// the session keys. `speaks` as for [`accept`].
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Credentials,
    speaks: u16,
) -> Result<(NodeId, SessionKeys), HandshakeError> {
    let Handshake::Challenge {
        protocol,
        nonce: server_nonce,
    } = recv(stream).await?
    else {
        return Err(HandshakeError::Malformed("expected challenge".into()));
    };
    if protocol != speaks {
        return Err(HandshakeError::Rejected(format!(
            "peer speaks protocol version {protocol}, this node {speaks}"
        )));
    }
    let mut state = noise_state(
        true,
        &me.secret,
        &me.cluster,
        &prologue(speaks, &server_nonce, &me.cluster, &me.node_id),
    )?;
    let mut message = [0u8; MAX_NOISE_MESSAGE];
    let len = state
        .write_message(&[], &mut message)
        .map_err(|e| HandshakeError::Malformed(format!("noise hello: {e}")))?;
    let hello = Handshake::Hello {
        protocol: speaks,
        cluster: me.cluster.clone(),
        node_id: me.node_id.clone(),
        noise: message[..len].to_vec(),
    };
    send(stream, &hello).await?;
    match recv(stream).await? {
        Handshake::Welcome { noise } => {
            let mut payload = [0u8; MAX_NOISE_MESSAGE];
            let len = state.read_message(&noise, &mut payload).map_err(|_| {
                HandshakeError::Rejected("the peer did not prove the cluster secret".into())
            })?;
            let node_id = std::str::from_utf8(&payload[..len])
                .map_err(|_| HandshakeError::Malformed("peer node id is not utf-8".into()))?;
            Ok((NodeId::new(node_id), into_keys(state)?))
        }
        Handshake::Refused { reason } => Err(HandshakeError::Rejected(format!(
            "refused by peer: {reason}"
        ))),
        other => Err(HandshakeError::Malformed(format!("unexpected {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol version both ends of these tests speak.
    const SPEAKS: u16 = 7;

    fn creds(node: &str, secret: &str) -> Credentials {
        Credentials::new("c", NodeId::new(node), Secret::new(secret))
    }

    async fn handshake(
        server: Credentials,
        client: Credentials,
    ) -> (
        Result<NodeId, HandshakeError>,
        Result<NodeId, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let server_side = tokio::spawn(async move { accept(&mut a, &server, SPEAKS).await });
        let client_side = connect(&mut b, &client, SPEAKS).await;
        (
            server_side.await.expect("server task").map(|(id, _)| id),
            client_side.map(|(id, _)| id),
        )
    }

    /// The hello a client sends in answer to a challenge of its own (recorded on the wire).
    async fn recorded_hello(secret: &str) -> Handshake {
        let (mut c, mut d) = tokio::io::duplex(64 * 1024);
        let client = creds("n2", secret);
        let client_side = tokio::spawn(async move { connect(&mut c, &client, SPEAKS).await });
        send(
            &mut d,
            &Handshake::Challenge {
                protocol: SPEAKS,
                nonce: rand::random(),
            },
        )
        .await
        .expect("challenge");
        let hello = recv(&mut d).await.expect("hello");
        client_side.abort();
        hello
    }

    /// Runs the server side against a client that sends `hello` whatever the challenge.
    async fn server_given(hello: Handshake, secret: &str) -> Result<NodeId, HandshakeError> {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let server = creds("n1", secret);
        let server_side = tokio::spawn(async move { accept(&mut a, &server, SPEAKS).await });
        let _challenge = recv(&mut b).await.expect("challenge");
        send(&mut b, &hello).await.expect("hello");
        server_side.await.expect("server task").map(|(id, _)| id)
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ends() {
        let (s, c) = handshake(creds("n1", "secret-one"), creds("n2", "secret-one")).await;
        assert_eq!(s.expect("server accepts").as_str(), "n2");
        assert_eq!(c.expect("client accepts").as_str(), "n1");
    }

    #[tokio::test]
    async fn a_client_of_another_protocol_version_gives_up_naming_both_versions() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let server = creds("n1", "secret-one");
        let server_side = tokio::spawn(async move { accept(&mut a, &server, SPEAKS).await });
        let client = connect(&mut b, &creds("n2", "secret-one"), SPEAKS + 1).await;
        drop(b);
        let error = client.expect_err("refused").to_string();
        let (theirs, mine) = (SPEAKS.to_string(), (SPEAKS + 1).to_string());
        assert!(error.contains(&theirs) && error.contains(&mine), "{error}");
        assert!(server_side.await.expect("server task").is_err());
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_with_a_reason_on_both_sides() {
        let (s, c) = handshake(creds("n1", "secret-one"), creds("n2", "secret-two")).await;
        let s = s.expect_err("server refuses").to_string();
        assert!(s.contains("n2") && s.contains("invalid proof"), "{s}");
        assert!(c
            .expect_err("client refused")
            .to_string()
            .contains("refused by peer"));
    }

    #[tokio::test]
    async fn a_server_also_accepts_its_previous_secret_so_a_secret_rotates_node_by_node() {
        let rotating = |node, secret, previous: &str| Credentials {
            previous_secret: Some(Secret::new(previous)),
            ..creds(node, secret)
        };
        // A server already on the new secret accepts a client still on the old one, and the
        // other way round: each side proves its current secret.
        let (s, c) = handshake(
            rotating("n1", "secret-new", "secret-old"),
            creds("n2", "secret-old"),
        )
        .await;
        assert_eq!(s.expect("accepted"), NodeId::new("n2"));
        assert_eq!(c.expect("accepted"), NodeId::new("n1"));
        let (s, c) = handshake(
            rotating("n1", "secret-old", "secret-new"),
            creds("n2", "secret-new"),
        )
        .await;
        assert!(s.is_ok() && c.is_ok());
        // A client's previous secret is never what it proves.
        let (s, _) = handshake(
            creds("n1", "secret-old"),
            rotating("n2", "secret-other", "secret-old"),
        )
        .await;
        assert!(s.is_err(), "a client proved its previous secret");
    }

    #[tokio::test]
    async fn other_cluster_is_refused() {
        let mut other = creds("n2", "secret-one");
        other.cluster = "other".into();
        let (s, _) = handshake(creds("n1", "secret-one"), other).await;
        assert!(s
            .expect_err("refused")
            .to_string()
            .contains("not this node's cluster"));
    }

    #[tokio::test]
    async fn a_hello_replayed_on_another_connection_is_refused() {
        let hello = recorded_hello("secret-one").await;
        let answer = server_given(hello, "secret-one").await;
        let error = answer.expect_err("refused").to_string();
        assert!(error.contains("invalid proof"), "{error}");
    }

    #[tokio::test]
    async fn a_hello_whose_node_id_was_altered_is_refused() {
        // The hello answers the challenge of this very server, but its node id was changed on
        // the way: the id is in the clear, and bound into the handshake.
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let server = creds("n1", "secret-one");
        let server_side = tokio::spawn(async move { accept(&mut a, &server, SPEAKS).await });
        let (mut c, mut d) = tokio::io::duplex(64 * 1024);
        let client = creds("n2", "secret-one");
        let _client_side = tokio::spawn(async move { connect(&mut c, &client, SPEAKS).await });
        let challenge = recv(&mut b).await.expect("challenge");
        send(&mut d, &challenge).await.expect("relay challenge");
        let Handshake::Hello {
            protocol,
            cluster,
            noise,
            ..
        } = recv(&mut d).await.expect("hello")
        else {
            panic!("expected a hello");
        };
        let altered = Handshake::Hello {
            protocol,
            cluster,
            node_id: NodeId::new("n3"),
            noise,
        };
        send(&mut b, &altered).await.expect("relay hello");
        let error = server_side
            .await
            .expect("server task")
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("n3") && error.contains("invalid proof"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_impostor_server_without_the_secret_is_not_believed() {
        let (s, c) = handshake(creds("n1", "secret-two"), creds("n2", "secret-one")).await;
        assert!(s.is_err());
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn a_hello_with_a_garbage_noise_message_of_any_size_is_refused() {
        for len in [0usize, 10, 31, 48, 1_000, 1_100, 3_000] {
            let hello = Handshake::Hello {
                protocol: SPEAKS,
                cluster: "c".into(),
                node_id: NodeId::new("n2"),
                noise: vec![0xAB; len],
            };
            let error = server_given(hello, "secret-one")
                .await
                .expect_err("refused")
                .to_string();
            assert!(error.contains("invalid proof"), "{len}: {error}");
        }
    }
}
