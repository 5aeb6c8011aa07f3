//! A minimal HTTP/1.1 client over turmoil TCP, for the observer and the workload clients.
//!
//! One request per connection (`Connection: close`), so a body ends at EOF and no connection
//! state outlives a crash or a partition. Any status is returned: callers decide what it means.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

use crate::net::Traced;

/// A status and body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Sends `method path` with an optional JSON body to `host:port` and reads the whole answer.
pub async fn request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    json: Option<&[u8]>,
) -> io::Result<Reply> {
    let mut stream = Traced::new(TcpStream::connect((host, port)).await?)?;
    let body = json.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if json.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> io::Result<Reply> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = &response[split + 4..];
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("http/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(&format!("unexpected status line {status_line:?}")))?;
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body).ok_or_else(|| invalid("malformed chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(Reply { status, body })
}

/// Decodes a chunked body (hyper may chunk a body whose length it does not know up front).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies_are_read_with_their_status() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let reply = parse_response(plain).expect("plain body");
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let reply = parse_response(chunked).expect("chunked body");
        assert_eq!((reply.status, reply.body.as_slice()), (201, &b"abcde"[..]));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_response(refused).expect("503").status, 503);
        assert!(parse_response(b"garbage").is_err());
    }
}
