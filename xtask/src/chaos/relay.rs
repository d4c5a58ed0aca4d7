//! A userspace TCP relay the chaos suite puts in a connection's path: it can
//! cut every connection and refuse new ones for a while (a broken worker
//! stream), and it can impair the traffic it carries (a slow, lossy network).
//! The impairment is done here rather than with `tc qdisc ... netem` on the
//! hosts' veths because the kernels the suite runs on, CI's included, have no
//! `sch_netem` module: namespaces, veths and bridges work there, netem does not.
//!
//! Impairment works on what the relay reads: every chunk is held for the
//! delay before it is written on (in order, so a connection stays pipelined),
//! and each 1448-byte segment of it is "lost" with the loss probability. A
//! relay cannot drop bytes from a TCP stream without corrupting it, so a lost
//! segment costs what TCP pays for one: the stream stalls for a
//! retransmission timeout (200 ms, Linux's minimum RTO) before it and
//! everything behind it go on.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;

/// TCP's payload per segment on an Ethernet link (MTU 1500 with timestamps).
const SEGMENT: usize = 1448;
/// What a lost segment costs: Linux's minimum retransmission timeout.
const RETRANSMIT: Duration = Duration::from_millis(200);
/// How long the relay keeps trying to reach a target for an accepted client.
const CONNECT_FOR: Duration = Duration::from_secs(30);

/// How the relay degrades the traffic while impaired.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub delay: Duration,
    /// Probability that one segment is lost, in [0, 1].
    pub loss: f64,
}

#[derive(Debug)]
struct State {
    /// While set and in the future, connections are refused.
    cut_until: Mutex<Option<Instant>>,
    live: Mutex<Vec<TcpStream>>,
    impairment: Impairment,
    impaired: AtomicBool,
    stopped: AtomicBool,
    /// Segments "lost" so far, and bytes carried.
    lost: AtomicU64,
    bytes: AtomicU64,
    seed: AtomicU64,
}

/// One relay: listeners, each forwarding to its own target.
#[derive(Debug, Clone)]
pub struct Relay {
    state: Arc<State>,
    listening: Vec<SocketAddr>,
}

impl Relay {
    /// Listens on each `(listen, target)` pair's address and forwards every
    /// connection to its target; impairs nothing until [`Relay::impair`].
    pub fn start(routes: &[(SocketAddr, SocketAddr)], impairment: Impairment) -> anyhow::Result<Relay> {
        let state = Arc::new(State {
            cut_until: Mutex::new(None),
            live: Mutex::new(Vec::new()),
            impairment,
            impaired: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            lost: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        });
        let mut listening = Vec::new();
        for &(listen, target) in routes {
            let listener =
                TcpListener::bind(listen).with_context(|| format!("relay: cannot listen on {listen}"))?;
            listening.push(listener.local_addr()?);
            let state = state.clone();
            std::thread::spawn(move || accept_loop(&listener, target, &state));
        }
        Ok(Relay { state, listening })
    }

    /// The address the `index`th route listens on.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.listening[index]
    }

    /// Drops every connection and refuses new ones for `duration`.
    pub fn cut(&self, duration: Duration) {
        *self.state.cut_until.lock().unwrap() = Some(Instant::now() + duration);
        for stream in self.state.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn impair(&self, on: bool) {
        self.state.impaired.store(on, Ordering::SeqCst);
    }

    /// (segments lost, bytes carried) so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.state.lost.load(Ordering::Relaxed), self.state.bytes.load(Ordering::Relaxed))
    }

    /// Closes every connection; the listeners stop at their next connection.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        for stream in self.state.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for addr in &self.listening {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<State>) {
    for incoming in listener.incoming() {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        let cut = state.cut_until.lock().unwrap().is_some_and(|until| Instant::now() < until);
        if cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let state = state.clone();
        std::thread::spawn(move || connect(client, target, &state));
    }
}

/// Joins `client` to `target`. The client's connection is already accepted,
/// so a target that is not listening yet (a rank still starting) cannot
/// refuse it as it would without the relay: the relay keeps trying, as a
/// client's SYN retransmissions would, and gives up after [`CONNECT_FOR`].
fn connect(client: TcpStream, target: SocketAddr, state: &Arc<State>) {
    let deadline = Instant::now() + CONNECT_FOR;
    let server = loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(server) => break server,
            Err(_) if Instant::now() < deadline && !state.stopped.load(Ordering::SeqCst) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut live = state.live.lock().unwrap();
        live.retain(|s| s.peer_addr().is_ok());
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                live.push(clone);
            }
        }
    }
    for (from, to) in [(&client, &server), (&server, &client)] {
        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else { continue };
        let state = state.clone();
        std::thread::spawn(move || pump(from, to, &state));
    }
}

/// Copies one direction: a reader that stamps each chunk with when it may be
/// written, and a writer that waits for that moment.
fn pump(mut from: TcpStream, to: TcpStream, state: &Arc<State>) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        let mut to = to;
        for (at, chunk) in due {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    // A chunk never overtakes the one before it.
    let mut last_due = Instant::now();
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        state.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut at = Instant::now();
        if state.impaired.load(Ordering::SeqCst) {
            let Impairment { delay, loss } = state.impairment;
            at += delay;
            for _ in 0..n.div_ceil(SEGMENT) {
                if next_unit(&state.seed) < loss {
                    state.lost.fetch_add(1, Ordering::Relaxed);
                    at += RETRANSMIT;
                }
            }
        }
        last_due = last_due.max(at);
        if chunks.send((last_due, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

/// A uniform number in [0, 1) from a shared xorshift generator (reproducible
/// enough for a fault injector; no dependency for it).
fn next_unit(seed: &AtomicU64) -> f64 {
    let mut x = seed.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    seed.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        addr
    }

    fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer)?;
        Ok(answer.to_vec())
    }

    #[test]
    fn relays_delays_and_cuts() {
        let target = echo_server();
        let relay = Relay::start(
            &[("127.0.0.1:0".parse().unwrap(), target)],
            Impairment { delay: Duration::from_millis(50), loss: 0.0 },
        )
        .unwrap();
        assert_eq!(round_trip(relay.addr(0)).unwrap(), b"ping");

        relay.impair(true);
        let started = Instant::now();
        assert_eq!(round_trip(relay.addr(0)).unwrap(), b"ping");
        assert!(started.elapsed() >= Duration::from_millis(100), "delayed both ways");
        relay.impair(false);

        // An open connection is dropped by a cut, and new ones are refused until it ends.
        let mut open = TcpStream::connect(relay.addr(0)).unwrap();
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        relay.cut(Duration::from_millis(500));
        let mut byte = [0u8; 1];
        assert!(matches!(open.read(&mut byte), Ok(0) | Err(_)), "the open connection was dropped");
        assert!(round_trip(relay.addr(0)).is_err(), "refused during the cut");
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(round_trip(relay.addr(0)).unwrap(), b"ping", "back after the cut");
        relay.stop();
    }

    #[test]
    fn loss_costs_retransmission_stalls_at_the_asked_rate() {
        let seed = AtomicU64::new(1);
        let draws = 100_000;
        let lost = (0..draws).filter(|_| next_unit(&seed) < 0.01).count();
        assert!((800..1200).contains(&lost), "1 % of {draws} segments, got {lost}");
    }
}
