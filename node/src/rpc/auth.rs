//! Mutual authentication of a connection with the cluster secret.
//!
//! A challenge-response with HMAC-SHA256: the secret never crosses the wire, each proof is bound
//! to a fresh nonce from the other side (so a recorded handshake cannot be replayed) and to the
//! cluster name and node id (so a proof cannot be reused for another identity). Both sides prove:
//! a node never sends calls to an impostor that merely accepts connections.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{read_frame, write_frame};
use super::wire::{Bytes32, Handshake, PROTOCOL_VERSION};
use crate::codec;
use crate::config::Secret;
use crate::ids::NodeId;

type HmacSha256 = Hmac<Sha256>;

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

/// HMAC-SHA256 under the cluster secret over length-prefixed `parts` (so `["ab", "c"]` and
/// `["a", "bc"]` differ). Also used to sign gossip membership entries.
pub fn mac(secret: &Secret, parts: &[&[u8]]) -> Bytes32 {
    // `new_from_slice` accepts keys of any length for HMAC; the error type exists only for
    // fixed-key-size MACs.
    let mut mac = HmacSha256::new_from_slice(secret.expose())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    for part in parts {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares two MACs in constant time: a timing side channel must not reveal how many bytes
/// matched.
pub fn same_mac(a: &Bytes32, b: &Bytes32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn proof(
    secret: &Secret,
    role: &[u8],
    nonce: &Bytes32,
    cluster: &str,
    node_id: &NodeId,
) -> Bytes32 {
    mac(
        secret,
        &[
            role,
            nonce.as_slice(),
            cluster.as_bytes(),
            node_id.as_str().as_bytes(),
        ],
    )
}

fn verify(
    secret: &Secret,
    role: &[u8],
    nonce: &Bytes32,
    cluster: &str,
    node_id: &NodeId,
    claimed: &Bytes32,
) -> bool {
    same_mac(&proof(secret, role, nonce, cluster, node_id), claimed)
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

/// Runs the server side; returns the authenticated peer's node id.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Credentials,
) -> Result<NodeId, HandshakeError> {
    let server_nonce: Bytes32 = rand::random();
    send(
        stream,
        &Handshake::Challenge {
            protocol: PROTOCOL_VERSION,
            nonce: server_nonce,
        },
    )
    .await?;
    let Handshake::Hello {
        protocol,
        cluster,
        node_id,
        nonce,
        proof: claimed,
    } = recv(stream).await?
    else {
        return Err(HandshakeError::Malformed("expected hello".into()));
    };
    let refusal = if protocol != PROTOCOL_VERSION {
        Some(format!(
            "protocol version {protocol} is not supported (this node speaks {PROTOCOL_VERSION})"
        ))
    } else if cluster != me.cluster {
        Some(format!("cluster {cluster:?} is not this node's cluster"))
    } else if !verify(
        &me.secret,
        b"client",
        &server_nonce,
        &cluster,
        &node_id,
        &claimed,
    ) {
        Some("invalid proof of the cluster secret".to_owned())
    } else {
        None
    };
    if let Some(reason) = refusal {
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
    }
    let proof = proof(&me.secret, b"server", &nonce, &me.cluster, &me.node_id);
    send(
        stream,
        &Handshake::Welcome {
            node_id: me.node_id.clone(),
            proof,
        },
    )
    .await?;
    Ok(node_id)
}

/// Runs the client side; returns the node id that answered (after checking its proof).
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Credentials,
) -> Result<NodeId, HandshakeError> {
    let Handshake::Challenge {
        protocol,
        nonce: server_nonce,
    } = recv(stream).await?
    else {
        return Err(HandshakeError::Malformed("expected challenge".into()));
    };
    if protocol != PROTOCOL_VERSION {
        return Err(HandshakeError::Rejected(format!(
            "peer speaks protocol version {protocol}, this node {PROTOCOL_VERSION}"
        )));
    }
    let client_nonce: Bytes32 = rand::random();
    let proof_bytes = proof(
        &me.secret,
        b"client",
        &server_nonce,
        &me.cluster,
        &me.node_id,
    );
    let hello = Handshake::Hello {
        protocol: PROTOCOL_VERSION,
        cluster: me.cluster.clone(),
        node_id: me.node_id.clone(),
        nonce: client_nonce,
        proof: proof_bytes,
    };
    send(stream, &hello).await?;
    match recv(stream).await? {
        Handshake::Welcome {
            node_id,
            proof: claimed,
        } => {
            if verify(
                &me.secret,
                b"server",
                &client_nonce,
                &me.cluster,
                &node_id,
                &claimed,
            ) {
                Ok(node_id)
            } else {
                Err(HandshakeError::Rejected(format!(
                    "node {node_id} did not prove the cluster secret"
                )))
            }
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

    fn creds(node: &str, secret: &str) -> Credentials {
        Credentials {
            cluster: "c".into(),
            node_id: NodeId::new(node),
            secret: Secret::new(secret),
        }
    }

    async fn handshake(
        server: Credentials,
        client: Credentials,
    ) -> (
        Result<NodeId, HandshakeError>,
        Result<NodeId, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let server_side = tokio::spawn(async move { accept(&mut a, &server).await });
        let client_side = connect(&mut b, &client).await;
        (server_side.await.expect("server task"), client_side)
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ends() {
        let (s, c) = handshake(creds("n1", "secret-one"), creds("n2", "secret-one")).await;
        assert_eq!(s.expect("server accepts").as_str(), "n2");
        assert_eq!(c.expect("client accepts").as_str(), "n1");
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
    async fn other_cluster_is_refused() {
        let mut other = creds("n2", "secret-one");
        other.cluster = "other".into();
        let (s, _) = handshake(creds("n1", "secret-one"), other).await;
        assert!(s
            .expect_err("refused")
            .to_string()
            .contains("not this node's cluster"));
    }

    #[test]
    fn proofs_bind_role_nonce_and_identity() {
        let secret = Secret::new("s3cr3t-value");
        let n = [7u8; 32];
        let base = proof(&secret, b"client", &n, "c", &NodeId::new("n1"));
        assert_ne!(base, proof(&secret, b"server", &n, "c", &NodeId::new("n1")));
        assert_ne!(
            base,
            proof(&secret, b"client", &[8u8; 32], "c", &NodeId::new("n1"))
        );
        assert_ne!(base, proof(&secret, b"client", &n, "c", &NodeId::new("n2")));
        assert!(verify(
            &secret,
            b"client",
            &n,
            "c",
            &NodeId::new("n1"),
            &base
        ));
    }
}
