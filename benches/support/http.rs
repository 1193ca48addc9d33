//! Raw HTTP/1.1 on a keep-alive connection, as the load generators of the benchmarks speak
//! it (no client library between the measurement and the socket). Shared by `postbacks.rs`
//! and `request_path.rs` (each includes it with `#[path]`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a keep-alive connection to the local `port` (Nagle off).
pub async fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `GET target` (with `headers`, each `Name: value\r\n`) into `req`.
pub fn get_request(req: &mut Vec<u8>, target: &str, headers: &str) {
    use std::io::Write;
    req.clear();
    write!(req, "GET {target} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n").unwrap();
}

/// The head of an answer once `buf` holds all of it: (status, where the body starts,
/// Content-Length, any case). Parses without allocating.
fn parse_head(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..end];
    let status = (head[9] - b'0') as u16 * 100 + (head[10] - b'0') as u16 * 10 + (head[11] - b'0') as u16;
    const NAME: &[u8] = b"content-length: ";
    let len = head.windows(NAME.len()).position(|w| w.eq_ignore_ascii_case(NAME)).map_or(0, |at| {
        head[at + NAME.len()..].iter().take_while(|b| b.is_ascii_digit()).fold(0usize, |n, b| n * 10 + (b - b'0') as usize)
    });
    Some((status, end + 4, len))
}

/// One answer being read into a buffer.
#[derive(Default)]
struct Reading {
    have: usize,
    head: Option<(u16, usize, usize)>,
}

impl Reading {
    /// The bytes the whole answer takes, once its head is in.
    fn need(&self) -> Option<usize> {
        self.head.map(|(_, at, len)| at + len)
    }

    /// (status, length) once the answer is complete.
    fn done(&self) -> Option<(u16, usize)> {
        self.head.filter(|_| self.need().is_some_and(|n| self.have >= n)).map(|(status, ..)| (status, self.have))
    }

    /// Where the next read goes: `buf` grown to hold the answer (or twice its size while the
    /// head is not complete).
    fn room<'a>(&self, buf: &'a mut Vec<u8>) -> &'a mut [u8] {
        let want = self.need().unwrap_or(if self.have == buf.len() { buf.len() * 2 } else { buf.len() }).max(64 * 1024);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        &mut buf[self.have..]
    }

    fn advance(&mut self, n: usize, buf: &[u8]) {
        assert!(n > 0, "connection closed");
        self.have += n;
        self.head = self.head.or_else(|| parse_head(&buf[..self.have]));
    }
}

/// Sends `req` and reads one answer into `buf` (grown when the answer is larger); returns the
/// status and the answer's length in `buf`.
pub async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> (u16, usize) {
    s.write_all(req).await.unwrap();
    let mut r = Reading::default();
    loop {
        match r.done() {
            Some(answer) => return answer,
            None => r.advance(s.read(r.room(buf)).await.unwrap(), buf),
        }
    }
}

/// [`exchange`] on a blocking socket.
pub fn exchange_blocking(s: &mut std::net::TcpStream, req: &[u8], buf: &mut Vec<u8>) -> (u16, usize) {
    use std::io::{Read, Write};
    s.write_all(req).unwrap();
    let mut r = Reading::default();
    loop {
        match r.done() {
            Some(answer) => return answer,
            None => r.advance(s.read(r.room(buf)).unwrap(), buf),
        }
    }
}
