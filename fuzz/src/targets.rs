//! The fuzz targets: every decoder a node runs on bytes it did not make itself, each with the
//! seeds it starts from and what it checks beyond "no panic, no outsized allocation" (which
//! [`run`](crate::run) checks for all of them).

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use troupe_actors::integers::Average;
use troupe_actors::parties::Party;
use troupe_node::codec::{self, Limit};
use troupe_node::config::{ClusterConfig, Secret};
use troupe_node::ids::NodeId;
use troupe_node::protocol::{Request, Response, PROTOCOL_VERSION};
use troupe_node::rpc::auth::{self, Credentials};
use troupe_node::rpc::frame::read_frame;
use troupe_node::rpc::wire::{Envelope, Handshake};
use troupe_node::services::integers::IntegerCommand;
use troupe_node::services::jobs::{JobCommand, JobRecord};
use troupe_node::services::machine::Outcome;
use troupe_node::services::parties::{IndexEntry, PartyCommand};
use troupe_node::services::sessions::{Leases, SessionCommand};
use troupe_node::services::users::{StoredUser, UserCommand};
use troupe_node::shard::PeerRequest;
use troupe_node::shard::{Entry, ShardMeta};

use crate::seeds;

/// What a target made of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded (or parsed) into a value, which passed the target's checks.
    Accepted,
    /// Refused with an error, as hostile bytes should be.
    Refused,
}

/// One decoder under test.
pub struct Target {
    /// Name, as `scripts/fuzz.sh` prints it and `--target` takes it.
    pub name: &'static str,
    /// Valid inputs made from real values.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Whether every seed must be accepted (a valid encoding the decoder refuses is a finding).
    pub seeds_valid: bool,
    /// Runs the decoder; `Err` is a finding (a check failed).
    pub check: fn(&[u8]) -> Result<Verdict, String>,
    /// Tokens of the input's text format for the mutator (empty for binary formats).
    pub dictionary: &'static [&'static [u8]],
}

/// Values that test a config's validation: edges of every integer type, floats that are not
/// numbers, empty strings and tables, and the names of the file's sections.
const TOML_TOKENS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"nan",
    b"inf",
    b"-inf",
    b"1e308",
    b"-0.0",
    b"0.5",
    b"true",
    b"\"\"",
    b"[]",
    b"{}",
    b"\"\\u0000\"",
    b"\n[[regions]]\n",
    b"\n[cluster]\n",
    b"\n[rpc]\n",
    b"\n[parties]\n",
    b"\n[integers]\n",
    b"\n[sessions]\n",
    b"\n[jobs]\n",
    b"\n[migration]\n",
    b"managers",
    b"max_participants",
    b"lat",
    b"lng",
];

/// Frame bound of the frame and handshake targets: small, so that length fields reach it.
const FUZZ_MAX_FRAME: u32 = 4096;

/// Every target.
pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "frame-reader",
            seeds: frame_seeds,
            seeds_valid: true,
            check: check_frames,
            dictionary: &[],
        },
        Target {
            name: "handshake-server",
            seeds: || framed(vec![seeds::hello()]),
            seeds_valid: false,
            check: check_handshake_server,
            dictionary: &[],
        },
        Target {
            name: "handshake-client",
            seeds: client_seeds,
            seeds_valid: false,
            check: check_handshake_client,
            dictionary: &[],
        },
        Target {
            name: "handshake-message",
            seeds: || encodings(seeds::handshakes()),
            seeds_valid: true,
            check: |b| round_trip::<Handshake>(b, Limit::Handshake),
            dictionary: &[],
        },
        Target {
            name: "envelope-request",
            seeds: || encodings(seeds::envelopes(seeds::requests())),
            seeds_valid: true,
            check: |b| round_trip::<Envelope<Request>>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "envelope-response",
            seeds: || encodings(seeds::envelopes(seeds::responses())),
            seeds_valid: true,
            check: |b| round_trip::<Envelope<Response>>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-users",
            seeds: || encodings(seeds::user_commands()),
            seeds_valid: true,
            check: |b| round_trip::<UserCommand>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-sessions",
            seeds: || encodings(seeds::session_commands()),
            seeds_valid: true,
            check: |b| round_trip::<SessionCommand>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-jobs",
            seeds: || encodings(seeds::job_commands()),
            seeds_valid: true,
            check: |b| round_trip::<JobCommand>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-integers",
            seeds: || encodings(seeds::integer_commands()),
            seeds_valid: true,
            check: |b| round_trip::<IntegerCommand>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-parties",
            seeds: || encodings(seeds::party_commands()),
            seeds_valid: true,
            check: |b| round_trip::<PartyCommand>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "command-outcome",
            seeds: || encodings(seeds::outcomes()),
            seeds_valid: true,
            check: |b| round_trip::<Outcome>(b, Limit::Message),
            dictionary: &[],
        },
        Target {
            name: "stored-entry",
            seeds: || encodings(vec![seeds::entry()]),
            seeds_valid: true,
            check: |b| round_trip::<Entry>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-shard-meta",
            seeds: || encodings(seeds::shard_meta()),
            seeds_valid: true,
            check: |b| round_trip::<ShardMeta>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-user",
            seeds: || encodings(seeds::stored_users()),
            seeds_valid: true,
            check: |b| round_trip::<StoredUser>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-leases",
            seeds: || encodings(seeds::leases()),
            seeds_valid: true,
            check: |b| round_trip::<Leases>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-job",
            seeds: || encodings(seeds::job_records()),
            seeds_valid: true,
            check: |b| round_trip::<JobRecord>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-party",
            seeds: || encodings(vec![seeds::party()]),
            seeds_valid: true,
            check: |b| round_trip::<Party>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-party-index",
            seeds: || encodings(seeds::index_entries()),
            seeds_valid: true,
            check: |b| round_trip::<IndexEntry>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "stored-average",
            seeds: || encodings(vec![seeds::average()]),
            seeds_valid: true,
            check: |b| round_trip::<Average>(b, Limit::Stored),
            dictionary: &[],
        },
        Target {
            name: "cluster-toml",
            seeds: config_seeds,
            seeds_valid: false,
            check: check_config,
            dictionary: TOML_TOKENS,
        },
    ]
}

fn encodings<T: Serialize>(values: Vec<T>) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|v| codec::encode(v).unwrap_or_else(|e| panic!("a seed encodes: {e}")))
        .collect()
}

/// One input of every message of `messages` as consecutive frames.
fn framed<T: Serialize>(messages: Vec<T>) -> Vec<Vec<u8>> {
    let mut input = Vec::new();
    for body in encodings(messages) {
        input.extend_from_slice(&(body.len() as u32).to_be_bytes());
        input.extend_from_slice(&body);
    }
    vec![input]
}

/// A decoded value must encode again, and that encoding must decode to the same encoding:
/// a value the decoder accepts is one the node can use.
fn round_trip<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: Limit,
) -> Result<Verdict, String> {
    let Ok(value) = codec::decode::<T>(bytes, limit) else {
        return Ok(Verdict::Refused);
    };
    let again =
        codec::encode(&value).map_err(|e| format!("a decoded value does not encode: {e}"))?;
    let back: T = codec::decode(&again, limit)
        .map_err(|e| format!("the re-encoding of a decoded value does not decode: {e}"))?;
    let third =
        codec::encode(&back).map_err(|e| format!("a decoded value does not encode: {e}"))?;
    if third != again {
        return Err("re-encoding a decoded value is not stable".into());
    }
    Ok(Verdict::Accepted)
}

/// What a server sends: a challenge, then a welcome or a refusal.
fn client_seeds() -> Vec<Vec<u8>> {
    let messages = seeds::handshakes();
    let challenge = || messages[0].clone();
    let mut all = framed(vec![challenge(), messages[2].clone()]);
    all.extend(framed(vec![challenge(), messages[3].clone()]));
    all
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let mut all = framed(seeds::envelopes(seeds::requests()));
    all.extend(framed(seeds::envelopes(vec![
        Request::Ping,
        Request::Shard(PeerRequest::LeaseCheck),
    ])));
    all.push(Vec::new());
    all
}

/// The server's read loop: frames up to the bound, each decoded as a request, until the
/// input ends cleanly or a frame is refused.
fn check_frames(bytes: &[u8]) -> Result<Verdict, String> {
    let mut reader = bytes;
    loop {
        let frame = read_frame(&mut reader, FUZZ_MAX_FRAME)
            .now_or_never()
            .ok_or("the frame reader waited on a reader that is always ready")?;
        match frame {
            Ok(None) => return Ok(Verdict::Accepted),
            Ok(Some(body)) if body.len() > FUZZ_MAX_FRAME as usize => {
                return Err(format!("a frame of {} bytes passed the bound", body.len()))
            }
            Ok(Some(body)) => {
                if codec::decode::<Envelope<Request>>(&body, Limit::Message).is_err() {
                    return Ok(Verdict::Refused);
                }
            }
            Err(_) => return Ok(Verdict::Refused),
        }
    }
}

fn credentials(node: &str) -> Credentials {
    Credentials::new(
        "troupe",
        NodeId::new(node),
        Secret::new("a fuzzing secret of some length"),
    )
}

/// Runs `side` of the handshake against an in-memory duplex stream whose other end has sent
/// `bytes` and stays open. A handshake still waiting once they are used up is refused (a
/// real connection would time out); one that ends must have ended in an error, because no
/// input can carry a proof of the secret bound to a fresh nonce. A handshake rejected for
/// what its messages say (cluster, version, proof) counts as accepted: they decoded.
fn handshake<F, Fut>(bytes: &[u8], side: F) -> Result<Verdict, String>
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<
        Output = Result<(NodeId, troupe_node::rpc::session::SessionKeys), auth::HandshakeError>,
    >,
{
    let (mut peer, mine) = tokio::io::duplex(2 * crate::mutate::MAX_INPUT);
    peer.write_all(bytes)
        .now_or_never()
        .ok_or("the duplex stream did not take the input")?
        .map_err(|e| format!("the duplex stream refused the input: {e}"))?;
    let result = side(mine).now_or_never();
    drop(peer);
    match result {
        // Well-formed messages, refused for what they say (cluster, version, proof).
        Some(Err(auth::HandshakeError::Rejected(_))) => Ok(Verdict::Accepted),
        None | Some(Err(_)) => Ok(Verdict::Refused),
        Some(Ok((node, _keys))) => Err(format!(
            "a handshake without the secret succeeded as {node}"
        )),
    }
}

fn check_handshake_server(bytes: &[u8]) -> Result<Verdict, String> {
    handshake(bytes, |mut stream| async move {
        auth::accept(&mut stream, &credentials("n1"), PROTOCOL_VERSION).await
    })
}

fn check_handshake_client(bytes: &[u8]) -> Result<Verdict, String> {
    handshake(bytes, |mut stream| async move {
        auth::connect(&mut stream, &credentials("n2"), PROTOCOL_VERSION).await
    })
}

/// The repository's cluster.toml (which holds no secret, so it is refused), the same with a
/// secret of its own (accepted), and the smallest file.
fn config_seeds() -> Vec<Vec<u8>> {
    let sample = include_str!("../../cluster.toml");
    let with_secret = sample.replacen(
        "[cluster]\n",
        "[cluster]\nsecret = \"d2f1c0a7b3e94856a1f0c3d2b4e5f6a7b8c9d0e1f2a3b4c5\"\n",
        1,
    );
    vec![
        sample.as_bytes().to_vec(),
        with_secret.into_bytes(),
        b"[cluster]\nname = \"t\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n".to_vec(),
    ]
}

fn check_config(bytes: &[u8]) -> Result<Verdict, String> {
    let text = String::from_utf8_lossy(bytes);
    Ok(match ClusterConfig::parse(&text, "fuzz") {
        Ok(_) => Verdict::Accepted,
        Err(_) => Verdict::Refused,
    })
}
