//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.
//!
//! The length is checked against a bound before any allocation, so a corrupt or hostile peer
//! cannot make a node allocate gigabytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
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
}
