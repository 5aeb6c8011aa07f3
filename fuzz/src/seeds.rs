//! Real values of every type a node decodes, for the seed corpora: built with the node's own
//! types and constructors, so a seed is exactly what a node writes or sends.

use troupe_actors::integers::Average;
use troupe_actors::jobs::{Job, JobStatus};
use troupe_actors::parties::{Participant, Party};
use troupe_actors::sessions::{SessionOutcome, SessionReply, SessionUser};
use troupe_actors::users::{User, UserId, UserPatch};
use troupe_http::views::Located;
use troupe_node::config::HostPort;
use troupe_node::ids::{NodeId, ShardId};
use troupe_node::protocol::{Request, Response, PROTOCOL_VERSION};
use troupe_node::rpc::wire::{Envelope, Handshake};
use troupe_node::services::integers::{IntegerCommand, Integers, Sample};
use troupe_node::services::jobs::{JobCommand, JobRecord, Jobs};
use troupe_node::services::machine::{self, Outcome, Service};
use troupe_node::services::parties::{self, IndexEntry, Parties, PartyCommand};
use troupe_node::services::sessions::{self, Leases, SessionCommand, Sessions};
use troupe_node::services::users::{self, StoredUser, UserCommand, Users};
use troupe_node::shard::query::{Query, QueryAnswer};
use troupe_node::shard::store::Item;
use troupe_node::shard::Command;
use troupe_node::shard::{Entry, Epoch, Op, Peer, PeerReply, PeerRequest, Position, ShardMeta};

const USER_ID: &str = "00000000-0000-4000-8000-000000000007";

fn user_id() -> UserId {
    UserId::parse(USER_ID).unwrap_or_else(|e| panic!("a valid user id: {e}"))
}

fn user() -> User {
    User {
        id: user_id(),
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        group: 7,
    }
}

fn session_user() -> SessionUser {
    SessionUser::parse(Some("user-42")).unwrap_or_else(|e| panic!("a valid session user: {e}"))
}

fn epoch(term: u64) -> Epoch {
    Epoch {
        term,
        owner: NodeId::new("n1"),
    }
}

fn position(applied: u64) -> Position {
    Position {
        last_epoch: Some(epoch(3)),
        applied,
    }
}

fn peer() -> Peer {
    Peer {
        node_id: NodeId::new("n2"),
        rpc_addr: HostPort::new("10.0.0.2", 7000),
    }
}

/// A party of three devices.
pub fn party() -> Party {
    Party {
        code: "123456789".into(),
        region: "eu-west-1".into(),
        manager: "eu-west-1/0".into(),
        lat: 48.85,
        lng: 2.35,
        participants: (1..=3)
            .map(|i| Participant {
                participant_id: i,
                device_id: format!("device-{i}"),
                participant_name: format!("player {i}"),
            })
            .collect(),
        next_id: 4,
    }
}

/// A stored log entry: two users written and one deleted.
pub fn entry() -> Entry {
    Entry {
        seq: 12,
        epoch: epoch(3),
        ops: vec![
            Op {
                tenant: users::TENANT,
                key: vec![0x11; 16],
                value: Some(vec![1, 4, b'n', b'a', b'm', b'e', 1, b'e', 7]),
            },
            Op {
                tenant: sessions::TENANT,
                key: b"user-42".to_vec(),
                value: None,
            },
        ],
        trim_before: 9,
    }
}

/// A shard's bookkeeping.
pub fn shard_meta() -> Vec<ShardMeta> {
    vec![
        ShardMeta::default(),
        ShardMeta {
            epoch: Some(epoch(4)),
            position: position(12),
            installing: false,
        },
        ShardMeta {
            epoch: Some(epoch(5)),
            position: Position::default(),
            installing: true,
        },
    ]
}

/// Every users command.
pub fn user_commands() -> Vec<UserCommand> {
    vec![
        UserCommand::Create(user()),
        UserCommand::Update(UserPatch {
            id: user_id(),
            name: Some("Ada".into()),
            email: None,
            group: Some(3),
        }),
        UserCommand::Delete(user_id()),
    ]
}

/// Every sessions command.
pub fn session_commands() -> Vec<SessionCommand> {
    vec![
        SessionCommand::Add(session_user()),
        SessionCommand::Remove(session_user()),
        SessionCommand::Expire(session_user()),
    ]
}

/// Every jobs command.
pub fn job_commands() -> Vec<JobCommand> {
    vec![
        JobCommand::Create {
            object_id: "object-1".into(),
        },
        JobCommand::Finish {
            job_id: "job-1".into(),
            attempt: 2,
        },
        JobCommand::Rerun {
            job_id: "job-1".into(),
        },
    ]
}

/// Every integers command.
pub fn integer_commands() -> Vec<IntegerCommand> {
    vec![IntegerCommand::StoreAverage(average())]
}

/// Every parties command.
pub fn party_commands() -> Vec<PartyCommand> {
    vec![
        PartyCommand::Create(party()),
        PartyCommand::Join {
            code: "123456789".into(),
            device_id: "device-9".into(),
            name: "player 9".into(),
        },
        PartyCommand::Leave {
            code: "123456789".into(),
            device_id: "device-1".into(),
        },
    ]
}

/// Service `S`'s commands as the engine and the wire carry them.
fn engine<S: Service>(commands: Vec<S::Command>) -> Vec<Command> {
    commands
        .iter()
        .map(|c| machine::command::<S>(c).unwrap_or_else(|e| panic!("encodable: {e}")))
        .collect()
}

/// Every command of every service, as a client's request (or an owner's timer) makes it.
pub fn commands() -> Vec<Command> {
    let mut all = engine::<Users>(user_commands());
    all.extend(engine::<Sessions>(session_commands()));
    all.extend(engine::<Jobs>(job_commands()));
    all.extend(engine::<Integers>(integer_commands()));
    all.extend(engine::<Parties>(party_commands()));
    all
}

/// Every outcome a command may have.
pub fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::User(user()),
        Outcome::Deleted,
        Outcome::NotFound("no user".into()),
        Outcome::Conflict("exists".into()),
        Outcome::Invalid("bad".into()),
        Outcome::Session(SessionReply {
            outcome: SessionOutcome::Added,
            user_id: session_user(),
            active_sessions: 2,
            max_sessions: 5,
        }),
        Outcome::Job(Job {
            job_id: "job-1".into(),
            object_id: "object-1".into(),
            status: JobStatus::Processing,
            timestamp: "2026-12-06T20:00:00.000Z".into(),
            attempts: 1,
        }),
        Outcome::Stored,
        Outcome::Participant {
            party_code: "123456789".into(),
            participant_id: 3,
            existed: false,
        },
        Outcome::Left {
            party_code: "123456789".into(),
            participant_id: 1,
            host: Some(2),
        },
    ]
}

/// An integers window's average.
pub fn average() -> Average {
    Average {
        window_start_ms: 1_765_000_000_000,
        average: 49.5,
        count: 1200,
        complete: true,
    }
}

/// Every shard peer request.
pub fn peer_requests() -> Vec<PeerRequest> {
    let shard = ShardId(5);
    vec![
        PeerRequest::LeaseCheck,
        PeerRequest::Seal {
            shard,
            epoch: epoch(4),
        },
        PeerRequest::Replicate {
            shard,
            epoch: epoch(3),
            prev: position(11),
            entry: entry(),
        },
        PeerRequest::CatchUp {
            shard,
            epoch: epoch(3),
            source: peer(),
            replica: true,
        },
        PeerRequest::PreCopy { shard, to: peer() },
        PeerRequest::EntriesAfter {
            shard,
            from: position(2),
        },
        PeerRequest::SnapshotPage {
            shard,
            after: Some(vec![1, 2, 3]),
        },
        PeerRequest::Drop {
            shard,
            epoch: epoch(3),
        },
    ]
}

/// Every request, each command, query and shard peer request included.
pub fn requests() -> Vec<Request> {
    let shard = ShardId(5);
    let mut requests = vec![
        Request::Ping,
        Request::Locate {
            kind: "user".into(),
            key: USER_ID.into(),
        },
        Request::Integer(Sample {
            generator: 3,
            tick: 99,
            value: 42,
            at_ms: 1_765_000_000_123,
        }),
        Request::Report,
    ];
    requests.extend(peer_requests().into_iter().map(Request::Shard));
    requests.extend(commands().into_iter().map(|command| Request::Command {
        shard,
        command,
        wait_ms: 2000,
    }));
    let queries = [
        Query::Get {
            tenant: users::TENANT,
            key: vec![0x11; 16],
        },
        Query::Count {
            tenant: users::TENANT,
        },
        Query::Prefix {
            tenant: parties::INDEX_TENANT,
            prefix: b"eu-west-1/0/".to_vec(),
            limit: 2000,
        },
        Query::Page {
            tenant: users::TENANT,
            limit: 1000,
        },
    ];
    requests.extend(queries.into_iter().map(|query| Request::Read {
        shard,
        query,
        allow_replica: false,
    }));
    requests
}

/// Every shard peer reply.
pub fn peer_replies() -> Vec<PeerReply> {
    vec![
        PeerReply::LeaseAnswer { hears_you: true },
        PeerReply::Sealed(ShardMeta {
            epoch: Some(epoch(4)),
            position: position(12),
            installing: false,
        }),
        PeerReply::Fenced(epoch(9)),
        PeerReply::Behind(position(3)),
        PeerReply::Done,
        PeerReply::Entries {
            entries: vec![entry(), entry()],
        },
        PeerReply::NeedSnapshot,
        PeerReply::Page {
            items: vec![
                Item {
                    key: vec![1, 0x11, 0x22],
                    value: vec![1, 2, b'a', b'b'],
                },
                Item {
                    key: vec![2, b'u'],
                    value: vec![1, 1, 200],
                },
            ],
            position: position(12),
            last: true,
        },
    ]
}

/// Every response, each outcome, answer and shard peer reply included.
pub fn responses() -> Vec<Response> {
    let mut responses = vec![
        Response::Pong {
            node_id: NodeId::new("n3"),
        },
        Response::Located(Located {
            kind: "user".into(),
            key: USER_ID.into(),
            shard: 5,
            owner: "n1".into(),
            replicas: vec!["n2".into(), "n3".into()],
            served_by: "n2".into(),
        }),
        Response::NotOwner {
            owner: Some(NodeId::new("n2")),
        },
        Response::Moving {
            message: "shard 5 is moving".into(),
        },
        Response::possibly_applied("replica n2 did not confirm"),
        Response::Failed {
            message: "storage failed".into(),
        },
        Response::TooLarge {
            message: "the change is too large".into(),
        },
        Response::Report(r#"{"node":"n2","at_ms":1765000000123,"requests":{"window_ms":10000,"total":{"route":"all","requests":3,"per_second":0.3,"p50_ms":0.4,"p99_ms":1.2,"errors":0,"client_errors":1},"routes":[]}}"#.into()),
    ];
    let outcomes: Vec<Vec<u8>> = outcomes()
        .iter()
        .map(|o| troupe_node::codec::encode(o).unwrap_or_else(|e| panic!("encodable: {e}")))
        .collect();
    responses.extend(outcomes.into_iter().map(Response::Outcome));
    let answers = [
        QueryAnswer::Value(Some(vec![1, 2, 3])),
        QueryAnswer::Value(None),
        QueryAnswer::Count(1_000_000),
        QueryAnswer::Items(vec![(b"k".to_vec(), b"v".to_vec())]),
        QueryAnswer::Page {
            count: 2,
            items: vec![(vec![0x11; 16], vec![1, 1, b'x', 1, b'y', 3])],
        },
    ];
    responses.extend(answers.into_iter().map(Response::Answer));
    responses.extend(peer_replies().into_iter().map(Response::Shard));
    responses
}

/// Handshake messages, each variant.
pub fn handshakes() -> Vec<Handshake> {
    vec![
        Handshake::Challenge {
            protocol: PROTOCOL_VERSION,
            nonce: [7; 32],
        },
        hello(),
        Handshake::Welcome { noise: vec![9; 64] },
        Handshake::Refused {
            reason: "invalid proof of the cluster secret".into(),
        },
    ]
}

/// A client's hello (its Noise message cannot open under the cluster's key and a server's
/// fresh nonce).
pub fn hello() -> Handshake {
    Handshake::Hello {
        protocol: PROTOCOL_VERSION,
        cluster: "troupe".into(),
        node_id: NodeId::new("n2"),
        noise: vec![5; 48],
    }
}

/// Envelopes of `bodies`, with call ids of each varint width.
pub fn envelopes<T>(bodies: Vec<T>) -> Vec<Envelope<T>> {
    let ids = [0, 7, 300, 70_000, 1 << 40];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Envelope {
            id: ids[i % ids.len()],
            body,
        })
        .collect()
}

/// A stored user.
pub fn stored_users() -> Vec<StoredUser> {
    vec![
        StoredUser {
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            group: 7,
        },
        StoredUser {
            name: "é".repeat(300),
            email: "x@y.z".into(),
            group: u64::MAX,
        },
    ]
}

/// Stored session expiries.
pub fn leases() -> Vec<Leases> {
    vec![
        Leases(vec![]),
        Leases(vec![1_765_000_000_000, 1_765_000_060_000, 5]),
    ]
}

/// Stored jobs, each status.
pub fn job_records() -> Vec<JobRecord> {
    [
        JobStatus::Processing,
        JobStatus::Finished,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, status)| JobRecord {
        object_id: format!("object-{i}"),
        status,
        created_ms: 1_765_000_000_000 + i as u64,
        attempts: i as u32 + 1,
        duration_ms: 1500,
    })
    .collect()
}

/// A manager's index entries.
pub fn index_entries() -> Vec<IndexEntry> {
    vec![IndexEntry {
        code: "123456789".into(),
        region: "eu-west-1".into(),
        lat: 48.85,
        lng: -2.35,
        participants: 3,
    }]
}
