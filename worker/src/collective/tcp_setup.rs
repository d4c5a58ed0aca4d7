//! Building the TCP ring: rank r listens, connects to rank r+1, accepts rank r-1,
//! and both sides of each connection check a handshake before any data flows.
//!
//! Hello (connector → listener): magic `SCOPRNG1`, protocol version, world size,
//! the connector's rank, then the job token, all little endian and length-prefixed.
//! Reply: a status byte (0 accepted, 1 refused) and a reason. A refused connector
//! fails at once with the listener's reason; the listener keeps waiting for the
//! right peer (so a stray connection cannot break the job) until the timeout, and
//! then reports the last refusal it made.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::wire::Link;

const MAGIC: &[u8; 8] = b"SCOPRNG1";
const VERSION: u32 = 1;
const MAX_REASON_BYTES: u32 = 1024;
/// Pause between attempts to reach a neighbour that is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Who this rank is, for the handshake.
pub(crate) struct Identity<'a> {
    pub rank: usize,
    pub world: usize,
    pub token: &'a str,
    /// Limit on building the links (reaching, accepting and the handshakes).
    pub connect_timeout: Duration,
    /// Limit on each socket operation of the built links, while a peer is silent.
    pub timeout: Duration,
}

/// Connects to the right neighbour at `right_addr` while accepting the left one on
/// `listener`; returns `(left, right)`.
pub(crate) fn build_links(
    me: &Identity<'_>,
    listener: TcpListener,
    right_addr: &str,
) -> Result<(Link, Link)> {
    let deadline = Instant::now() + me.connect_timeout;
    let left_rank = (me.rank + me.world - 1) % me.world;
    let right_rank = (me.rank + 1) % me.world;
    let (left, right) = std::thread::scope(|scope| {
        let accepting = scope.spawn(|| accept_left(me, &listener, left_rank, deadline));
        let right = connect_right(me, right_addr, right_rank, deadline);
        let left =
            accepting.join().unwrap_or_else(|_| Err(Error::Setup("the accepting thread panicked".into())));
        (left, right)
    });
    // A refusal seen by our connector is the more specific error, so it goes first.
    let right = right?;
    let left = left?;
    let link = |stream: TcpStream, peer: usize| -> Result<Link> {
        configure(&stream, me.timeout).map_err(|e| setup_io("configure the socket", e))?;
        Ok(Link { stream, peer, timeout: me.timeout })
    };
    Ok((link(left, left_rank)?, link(right, right_rank)?))
}

fn configure(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))
}

fn setup_io(what: &str, e: io::Error) -> Error {
    Error::Setup(format!("cannot {what}: {e}"))
}

fn connect_right(me: &Identity<'_>, addr: &str, right_rank: usize, deadline: Instant) -> Result<TcpStream> {
    let target: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Setup(format!("rank {right_rank}'s address {addr:?} does not resolve: {e}")))?
        .collect();
    let mut last_error = String::from("no address");
    loop {
        for a in &target {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match TcpStream::connect_timeout(a, left) {
                Ok(stream) => return hello(me, stream, addr, right_rank),
                Err(e) => last_error = e.to_string(),
            }
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(Error::Setup(format!(
                "rank {} could not reach rank {right_rank} at {addr} within {:?}: {last_error}",
                me.rank, me.connect_timeout
            )));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Sends our hello on a fresh connection and reads the verdict.
fn hello(me: &Identity<'_>, mut stream: TcpStream, addr: &str, right_rank: usize) -> Result<TcpStream> {
    configure(&stream, me.connect_timeout).map_err(|e| setup_io("configure the socket", e))?;
    let mut msg = MAGIC.to_vec();
    for v in [VERSION, me.world as u32, me.rank as u32, me.token.len() as u32] {
        msg.extend(v.to_le_bytes());
    }
    msg.extend(me.token.as_bytes());
    let fail = |e: io::Error| Error::Setup(format!("handshake with rank {right_rank} at {addr} failed: {e}"));
    stream.write_all(&msg).map_err(fail)?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).map_err(fail)?;
    let reason = read_text(&mut stream, MAX_REASON_BYTES).map_err(fail)?;
    if status[0] == 0 {
        Ok(stream)
    } else {
        Err(Error::Setup(format!(
            "rank {right_rank} at {addr} refused the handshake of rank {}: {reason}",
            me.rank
        )))
    }
}

fn accept_left(
    me: &Identity<'_>,
    listener: &TcpListener,
    left_rank: usize,
    deadline: Instant,
) -> Result<TcpStream> {
    listener.set_nonblocking(true).map_err(|e| setup_io("poll the listener", e))?;
    let mut last_refusal: Option<String> = None;
    loop {
        match listener.accept() {
            Ok((stream, from)) => match judge(me, stream, left_rank) {
                Ok(stream) => return Ok(stream),
                Err(reason) => last_refusal = Some(format!("refused {from}: {reason}")),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(setup_io("accept a connection", e)),
        }
        if Instant::now() >= deadline {
            let refusal = last_refusal.map(|r| format!(" (last {r})")).unwrap_or_default();
            return Err(Error::Setup(format!(
                "rank {} got no valid connection from rank {left_rank} within {:?}{refusal}",
                me.rank, me.connect_timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a hello and answers it; `Err` carries the reason the peer was told.
fn judge(
    me: &Identity<'_>,
    mut stream: TcpStream,
    left_rank: usize,
) -> std::result::Result<TcpStream, String> {
    configure(&stream, me.connect_timeout).map_err(|e| e.to_string())?;
    let verdict = read_hello(&mut stream).map_err(|e| e.to_string()).and_then(|(world, rank, token)| {
        // Constant time: how long the refusal takes says nothing about the token.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(token.as_bytes(), me.token.as_bytes())) {
            Err("job token mismatch".to_owned())
        } else if world != me.world {
            Err(format!("world size mismatch: this rank has world {}, the peer says {world}", me.world))
        } else if rank != left_rank {
            Err(format!("rank {} expects rank {left_rank} to connect, got rank {rank}", me.rank))
        } else {
            Ok(())
        }
    });
    let (status, reason) = match &verdict {
        Ok(()) => (0u8, ""),
        Err(reason) => (1u8, reason.as_str()),
    };
    let mut reply = vec![status];
    reply.extend((reason.len() as u32).to_le_bytes());
    reply.extend(reason.as_bytes());
    let answered = stream.write_all(&reply).map_err(|e| e.to_string());
    verdict.and(answered).map(|()| stream)
}

fn read_hello(stream: &mut TcpStream) -> io::Result<(usize, usize, String)> {
    let mut fixed = [0u8; 24];
    stream.read_exact(&mut fixed)?;
    if &fixed[..8] != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a scop ring peer (bad magic)"));
    }
    let word = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
    if word(8) != VERSION {
        let msg = format!("ring protocol version {} is not {VERSION}", word(8));
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    let token = read_sized_text(stream, word(20), scop_core::rendezvous::MAX_TOKEN_BYTES as u32)?;
    Ok((word(12) as usize, word(16) as usize, token))
}

fn read_text(stream: &mut TcpStream, max: u32) -> io::Result<String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    read_sized_text(stream, u32::from_le_bytes(len), max)
}

fn read_sized_text(stream: &mut TcpStream, len: u32, max: u32) -> io::Result<String> {
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("text of {len} bytes exceeds {max}")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
