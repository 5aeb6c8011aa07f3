//! The answering side: accepts connections, authenticates them, and runs each call on its own
//! task so one slow call does not hold up the others on the same connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::auth::{self, Credentials};
use super::frame::{read_frame, write_queued, READ_BUFFER};
use super::wire::{Envelope, Request, Response};
use crate::codec::{self, CodecError};
use crate::ids::NodeId;
use crate::net::{BoxListener, BoxStream};

/// Time a new connection has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls one connection may have in flight; further frames wait to be read (back-pressure).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Answers queued for one connection's writer.
const WRITE_QUEUE: usize = 1024;

/// What the node does with an authenticated call.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers `request` from peer `from`.
    async fn handle(&self, from: NodeId, request: Request) -> Response;
}

/// Accepts connections on `listener` until `shutdown`; each one is served on its own task.
pub async fn serve(
    mut listener: BoxListener,
    creds: Credentials,
    max_frame: u32,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            // The node is stopping: no new connections.
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer_addr)) => {
                let conn = Connection {
                    creds: creds.clone(),
                    max_frame,
                    handler: handler.clone(),
                    shutdown: shutdown.child_token(),
                };
                tokio::spawn(
                    conn.run(stream)
                        .instrument(tracing::debug_span!("rpc_conn", %peer_addr)),
                );
            }
            Err(error) => {
                warn!(%error, "rpc accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Connection {
    creds: Credentials,
    max_frame: u32,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, mut stream: BoxStream) {
        let peer =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, auth::accept(&mut stream, &self.creds))
                .await
            {
                Ok(Ok(peer)) => peer,
                Ok(Err(error)) => {
                    warn!(%error, "rpc peer refused");
                    return;
                }
                Err(_) => {
                    warn!("rpc peer refused: handshake timed out");
                    return;
                }
            };
        info!(%peer, "rpc peer authenticated");
        let (reader, writer) = tokio::io::split(stream);
        let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, reader);
        let (answers_tx, answers_rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_answers(
            writer,
            answers_rx,
            self.max_frame,
            self.shutdown.clone(),
        ));
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
        loop {
            let frame = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                frame = read_frame(&mut reader, self.max_frame) => frame,
            };
            let bytes = match frame {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(error) => {
                    warn!(%peer, %error, "rpc read failed, closing the connection");
                    break;
                }
            };
            let request = codec::decode::<Envelope<Request>>(&bytes, codec::Limit::Message);
            let Envelope { id, body } = match request {
                Ok(envelope) => envelope,
                Err(error) => {
                    warn!(%peer, %error, "undecodable rpc request, closing the connection");
                    break;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (handler, answers, from) = (self.handler.clone(), answers_tx.clone(), peer.clone());
            let max_frame = self.max_frame;
            tokio::spawn(async move {
                let response = handler.handle(from, body).await;
                match encode_answer(id, response, max_frame) {
                    Ok(bytes) => {
                        // The writer may be gone (connection closed); the caller then times out.
                        let _ = answers.send(bytes).await;
                    }
                    Err(error) => warn!(%error, "cannot encode rpc response"),
                }
                drop(permit);
            });
        }
        debug!(%peer, "rpc connection closed");
    }
}

/// The frame of answer `id`. An answer larger than a frame may be is replaced by a
/// [`Response::Failed`] saying so: written as is, it would fail the connection's writer and with
/// it every other call in flight on the connection.
fn encode_answer(id: u64, response: Response, max_frame: u32) -> Result<Vec<u8>, CodecError> {
    let bytes = codec::encode(&Envelope { id, body: response })?;
    if bytes.len() <= max_frame as usize {
        return Ok(bytes);
    }
    warn!(
        bytes = bytes.len(),
        max_frame, "rpc answer exceeds the frame limit, answering a failure instead"
    );
    let message = format!(
        "the answer of {} bytes exceeds the frame limit of {max_frame} bytes (rpc.max_frame_bytes)",
        bytes.len()
    );
    codec::encode(&Envelope {
        id,
        body: Response::Failed { message },
    })
}

async fn write_answers(
    mut writer: tokio::io::WriteHalf<BoxStream>,
    mut answers: mpsc::Receiver<Vec<u8>>,
    max_frame: u32,
    shutdown: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            _ = shutdown.cancelled() => return,
            bytes = answers.recv() => match bytes { Some(b) => b, None => return },
        };
        if let Err(error) = write_queued(&mut writer, bytes, &mut answers, max_frame).await {
            debug!(%error, "rpc answer write failed");
            return;
        }
    }
}
