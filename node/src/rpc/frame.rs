//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.
//!
//! The length is checked against a bound before any allocation, so a corrupt or hostile peer
//! cannot make a node allocate gigabytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Reads one frame. `Ok(None)` means the peer closed the connection cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_len: u32,
) -> io::Result<Option<Vec<u8>>> {
    let mut len_bytes = [0u8; 4];
    match reader.read_exact(&mut len_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len_bytes);
    if len > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max_len} bytes"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes one frame and flushes it. Refuses bodies over `max_len`, the receiver's bound.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
    max_len: u32,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 4);
    append_frame(&mut out, body, max_len)?;
    writer.write_all(&out).await?;
    writer.flush().await
}

/// Writes `first` and every frame already waiting in `queue` (up to [`COALESCE_BYTES`]) with
/// one write and one flush. Under load a connection carries many small frames at once, and each
/// write is a system call and a TCP segment through the whole network stack: coalescing them
/// saves most of that work when frames queue up.
///
/// When `first` is alone, the writer yields once before writing. Tokio runs a task woken by
/// the running one next (its LIFO slot), so without the yield the writer would send every
/// frame the moment its caller queued it, before the other request tasks that are already
/// runnable queue theirs. The yield lets them run first, and their frames share the write:
/// measured +14 % users-read and +13 % users-write at 16 clients (docs/BENCHMARKS.md, seventh
/// pass). A lone frame on an idle node pays one pass of the scheduler, a few microseconds.
pub async fn write_queued<W: AsyncWrite + Unpin>(
    writer: &mut W,
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Vec<u8>>,
    max_len: u32,
) -> io::Result<()> {
    let out = gather(first, queue, max_len).await?;
    writer.write_all(&out).await?;
    writer.flush().await
}

/// The bytes [`write_queued`] writes: `first` and the frames waiting behind it, framed. The
/// encrypted session ([`super::session`]) seals them before writing.
pub async fn gather(
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Vec<u8>>,
    max_len: u32,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(first.len() + 4);
    gather_into(&mut out, first, queue, max_len).await?;
    Ok(out)
}

/// Like [`gather`], appending to `out`, so the encrypted session can gather behind room for a
/// record header in a buffer it keeps.
pub async fn gather_into(
    out: &mut Vec<u8>,
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Vec<u8>>,
    max_len: u32,
) -> io::Result<()> {
    let start = out.len();
    append_frame(out, &first, max_len)?;
    if queue.is_empty() {
        tokio::task::yield_now().await;
    }
    while out.len() - start < COALESCE_BYTES {
        match queue.try_recv() {
            Ok(body) => append_frame(out, &body, max_len)?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Read buffer of a connection: most frames arrive whole in one read.
pub const READ_BUFFER: usize = 64 * 1024;

/// Bytes of queued frames gathered into one write at most (one frame may exceed it alone).
pub const COALESCE_BYTES: usize = 256 * 1024;

/// Appends the length prefix and `body` to `out`; refuses bodies over `max_len`.
fn append_frame(out: &mut Vec<u8>, body: &[u8], max_len: u32) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= max_len)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {max_len} bytes",
                    body.len()
                ),
            )
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_frames_and_reports_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, b"hello", 100).await.expect("writes");
        write_frame(&mut a, b"", 100).await.expect("writes empty");
        drop(a);
        assert_eq!(
            read_frame(&mut b, 100).await.expect("reads"),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            read_frame(&mut b, 100).await.expect("reads"),
            Some(Vec::new())
        );
        assert_eq!(read_frame(&mut b, 100).await.expect("eof"), None);
    }

    #[tokio::test]
    async fn oversize_frames_are_refused_on_both_sides() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let err = write_frame(&mut a, &[0u8; 101], 100)
            .await
            .expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        a.write_all(&1_000_000u32.to_be_bytes())
            .await
            .expect("raw write");
        let err = read_frame(&mut b, 100).await.expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_not_a_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&10u32.to_be_bytes()).await.expect("raw write");
        a.write_all(b"abc").await.expect("raw write");
        drop(a);
        assert!(read_frame(&mut b, 100).await.is_err());
    }

    /// Counts write calls, to show that queued frames share one.
    struct CountingWriter {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Runs `write_queued` for `first` on a fresh writer and returns how many writes it
    /// made and the frames it wrote, in order.
    async fn write_and_read_back(
        first: &[u8],
        queue: &mut mpsc::Receiver<Vec<u8>>,
    ) -> (usize, Vec<Vec<u8>>) {
        let mut out = CountingWriter {
            bytes: Vec::new(),
            writes: 0,
        };
        write_queued(&mut out, first.to_vec(), queue, 100)
            .await
            .expect("writes");
        let mut reader = out.bytes.as_slice();
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut reader, 100).await.expect("reads") {
            frames.push(frame);
        }
        (out.writes, frames)
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_one_write_and_in_order() {
        let (tx, mut rx) = mpsc::channel(8);
        for body in [b"two".to_vec(), b"three".to_vec()] {
            tx.send(body).await.expect("queued");
        }
        let (writes, frames) = write_and_read_back(b"one", &mut rx).await;
        assert_eq!(writes, 1);
        assert_eq!(frames, [&b"one"[..], b"two", b"three"]);
    }

    #[tokio::test]
    async fn frames_queued_by_tasks_already_runnable_share_the_write_of_a_lone_frame() {
        let (tx, mut rx) = mpsc::channel(8);
        // Runnable, but not run yet: it queues its frame only once the writer yields.
        let later = tokio::spawn(async move { tx.send(b"two".to_vec()).await });
        let (writes, frames) = write_and_read_back(b"one", &mut rx).await;
        later.await.expect("task").expect("queued");
        assert_eq!(writes, 1);
        assert_eq!(frames, [&b"one"[..], b"two"]);
    }
}
