//! Frames on a ring connection: a 16-byte header before every data chunk, and an
//! abort frame that tells the next rank which rank was lost.
//!
//! Header layout (little endian): kind `u8`, 3 zero bytes, payload length `u32`,
//! collective sequence number `u64`. The sequence number and length let the
//! receiver detect ranks whose calls got out of step instead of mixing data.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::error::{Error, Result};

const DATA: u8 = 1;
const ABORT: u8 = 2;
pub(crate) const HEADER_BYTES: usize = 16;
/// Longest reason text an abort frame carries.
const MAX_REASON_BYTES: usize = 1024;

/// One end of a ring connection: the stream and the rank at the other end.
#[derive(Debug)]
pub(crate) struct Link {
    pub stream: TcpStream,
    pub peer: usize,
    pub timeout: Duration,
}

fn header(kind: u8, len: usize, seq: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0] = kind;
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h
}

impl Link {
    /// Sends one data frame carrying `payload`.
    pub fn send_data(&mut self, seq: u64, payload: &[u8]) -> Result<()> {
        let during = "sending data";
        self.stream.write_all(&header(DATA, payload.len(), seq)).map_err(|e| self.io_error(e, during))?;
        self.stream.write_all(payload).map_err(|e| self.io_error(e, during))
    }

    /// Receives one data frame into `payload`, which must be exactly the frame's size.
    pub fn recv_data(&mut self, seq: u64, payload: &mut [u8]) -> Result<()> {
        let during = "receiving data";
        let mut h = [0u8; HEADER_BYTES];
        self.stream.read_exact(&mut h).map_err(|e| self.io_error(e, during))?;
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let their_seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        match h[0] {
            DATA => {}
            ABORT => return Err(self.read_abort(len)),
            kind => {
                return Err(self.protocol(format!("unknown frame kind {kind}")));
            }
        }
        if their_seq != seq {
            return Err(self.protocol(format!(
                "it is at collective call #{their_seq}, this rank at #{seq}: do all ranks make the same calls?"
            )));
        }
        if len != payload.len() {
            return Err(self.protocol(format!(
                "it sent a chunk of {len} bytes where {} were expected: do all ranks pass tensors of the same size and kind?",
                payload.len()
            )));
        }
        self.stream.read_exact(payload).map_err(|e| self.io_error(e, during))
    }

    /// Tells the rank at the other end that `lost` failed, so that the whole ring
    /// reports the same culprit. Best effort: the peer may be gone too.
    pub fn send_abort(&mut self, lost: usize, reason: &str) {
        let mut body = (lost as u32).to_le_bytes().to_vec();
        body.extend(reason.bytes().take(MAX_REASON_BYTES));
        let _ = self.stream.set_write_timeout(Some(Duration::from_millis(500)));
        let _ =
            self.stream.write_all(&header(ABORT, body.len(), 0)).and_then(|()| self.stream.write_all(&body));
    }

    fn read_abort(&mut self, len: usize) -> Error {
        if !(4..=4 + MAX_REASON_BYTES).contains(&len) {
            return self.protocol(format!("abort frame of {len} bytes"));
        }
        let mut body = vec![0u8; len];
        if let Err(e) = self.stream.read_exact(&mut body) {
            return self.io_error(e, "receiving an abort notice");
        }
        let lost = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        let reason = String::from_utf8_lossy(&body[4..]);
        Error::RemoteLoss { rank: lost, reason: reason.into_owned(), via: self.peer }
    }

    /// Maps a socket error to the error that blames the peer.
    pub fn io_error(&self, e: io::Error, during: &'static str) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Error::Timeout { rank: self.peer, during, timeout: self.timeout }
            }
            io::ErrorKind::UnexpectedEof => {
                Error::PeerLost { rank: self.peer, reason: format!("connection closed while {during}") }
            }
            _ => Error::PeerLost { rank: self.peer, reason: format!("{e} while {during}") },
        }
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Protocol { rank: self.peer, reason }
    }
}
