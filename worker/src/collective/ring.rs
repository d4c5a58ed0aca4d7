//! The pipelined ring algorithms over one connection to each neighbour.
//!
//! The tensor is cut into `world` segments and each segment into chunks of at most
//! `chunk_elems` elements. All-reduce is a reduce-scatter (after `world - 1` steps
//! rank `r` holds the full sum of segment `r + 1`) followed by an all-gather that
//! passes the finished segments around. Each segment is reduced exactly once and
//! then copied, so every rank ends with the same bits.
//!
//! Overlap: a sender thread writes chunks to the right neighbour straight from the
//! tensor's memory, while the calling thread receives from the left neighbour and
//! reduces. A chunk is handed to the sender as soon as it is reduced, so the next
//! step starts before the current one ends; the kernel's socket buffers keep data
//! flowing while the caller reduces. Chunks move between the threads as disjoint
//! `&mut` borrows over channels, so no chunk is ever touched by both at once.
//!
//! No deadlock: the job channel is unbounded (jobs are borrows, not copies), so the
//! caller only ever blocks reading from the left or waiting for the sender to give a
//! chunk back. It waits for a chunk only in the all-gather, and only for one whose
//! reduce-scatter frame the right neighbour has already read, because the right
//! neighbour reads every reduce-scatter frame before it waits for anything itself.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::error::{Error, Result};
use super::tensor_view::Element;
use super::wire::Link;

/// How long a rank whose send to the right failed waits for its left link to
/// report a loss of its own before it blames the right neighbour.
const BLAME_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// One collective call's view of the ring.
pub(crate) struct Ring<'a> {
    pub rank: usize,
    pub world: usize,
    pub left: &'a mut Link,
    pub right: &'a mut Link,
    /// A second handle on the left socket, used to wake the caller if the sender fails.
    pub left_waker: &'a TcpStream,
    /// Sequence number of this call, checked in every frame header.
    pub seq: u64,
    pub chunk_elems: usize,
}

/// A chunk in flight to the sender thread.
struct Job<'d, T> {
    segment: usize,
    chunk: usize,
    data: &'d mut [T],
}

/// The caller's side of the pipeline: the chunks it holds and its channels to the sender.
struct Pipeline<'d, T> {
    slots: Vec<Vec<Option<&'d mut [T]>>>,
    jobs: mpsc::Sender<Job<'d, T>>,
    done: mpsc::Receiver<Job<'d, T>>,
}

/// The sender thread stopped; its own result says why.
struct SenderGone;

impl From<SenderGone> for Error {
    fn from(_: SenderGone) -> Self {
        Error::Broken("the ring's sender thread stopped".into())
    }
}

impl<'d, T> Pipeline<'d, T> {
    fn chunks(&self, segment: usize) -> usize {
        self.slots[segment].len()
    }

    /// Takes a chunk, waiting for the sender to return it if it is in flight.
    fn take(&mut self, segment: usize, chunk: usize) -> Result<&'d mut [T], SenderGone> {
        loop {
            if let Some(data) = self.slots[segment][chunk].take() {
                return Ok(data);
            }
            let job = self.done.recv().map_err(|_| SenderGone)?;
            self.slots[job.segment][job.chunk] = Some(job.data);
        }
    }

    fn forward(&mut self, segment: usize, chunk: usize, data: &'d mut [T]) -> Result<(), SenderGone> {
        self.jobs.send(Job { segment, chunk, data }).map_err(|_| SenderGone)
    }

    fn put(&mut self, segment: usize, chunk: usize, data: &'d mut [T]) {
        self.slots[segment][chunk] = Some(data);
    }
}

/// Cuts `data` into `segments` near-equal segments of chunks of at most `chunk_elems`.
fn split<T>(data: &mut [T], segments: usize, chunk_elems: usize) -> Vec<Vec<Option<&mut [T]>>> {
    let len = data.len();
    let mut rest = data;
    let mut out = Vec::with_capacity(segments);
    for s in 0..segments {
        let seg_len = (s + 1) * len / segments - s * len / segments;
        let (seg, tail) = std::mem::take(&mut rest).split_at_mut(seg_len);
        rest = tail;
        out.push(seg.chunks_mut(chunk_elems.max(1)).map(Some).collect());
    }
    out
}

impl Ring<'_> {
    /// Sums `data` over the ring in place, then multiplies the sum by `scale`.
    pub fn all_reduce<T: Element>(&mut self, data: &mut [T], scale: Option<T>) -> Result<()> {
        let (n, r, seq) = (self.world, self.rank, self.seq);
        let slots = split(data, n, self.chunk_elems);
        let longest_chunk = slots.iter().flatten().flatten().map(|c| c.len()).max().unwrap_or(0);
        let mut scratch = vec![T::zeroed(); longest_chunk];
        self.pipelined(slots, |p, left| {
            for c in 0..p.chunks(r) {
                let d = p.take(r, c)?;
                p.forward(r, c, d)?;
            }
            // Reduce-scatter: at step s, receive segment r-s-1 and add our part.
            for s in 0..n - 1 {
                let seg = (r + 2 * n - s - 1) % n;
                for c in 0..p.chunks(seg) {
                    let d = p.take(seg, c)?;
                    let incoming = &mut scratch[..d.len()];
                    left.recv_data(seq, bytemuck::cast_slice_mut(incoming))?;
                    for (x, y) in d.iter_mut().zip(incoming.iter()) {
                        *x += *y;
                    }
                    if let (true, Some(k)) = (s == n - 2, scale) {
                        d.iter_mut().for_each(|x| *x *= k);
                    }
                    p.forward(seg, c, d)?;
                }
            }
            // All-gather: at step s, receive the finished segment r-s into place.
            for s in 0..n - 1 {
                let seg = (r + n - s) % n;
                for c in 0..p.chunks(seg) {
                    let d = p.take(seg, c)?;
                    left.recv_data(seq, bytemuck::cast_slice_mut(d))?;
                    if s < n - 2 { p.forward(seg, c, d)? } else { p.put(seg, c, d) }
                }
            }
            Ok(())
        })
    }

    /// Copies `root`'s `data` to every rank, chunk by chunk along the ring.
    pub fn broadcast<T: bytemuck::Pod + Send>(&mut self, data: &mut [T], root: usize) -> Result<()> {
        let (n, r, seq) = (self.world, self.rank, self.seq);
        let slots = split(data, 1, self.chunk_elems);
        let relays = (r + 1) % n != root;
        self.pipelined(slots, |p, left| {
            for c in 0..p.chunks(0) {
                let d = p.take(0, c)?;
                if r != root {
                    left.recv_data(seq, bytemuck::cast_slice_mut(d))?;
                }
                if r == root || relays { p.forward(0, c, d)? } else { p.put(0, c, d) }
            }
            Ok(())
        })
    }

    /// Runs `body` on this thread with a sender thread serving its `forward`s, then
    /// settles which failure, if any, is the root cause.
    fn pipelined<'d, T: bytemuck::Pod + Send>(
        &mut self,
        slots: Vec<Vec<Option<&'d mut [T]>>>,
        body: impl FnOnce(&mut Pipeline<'d, T>, &mut Link) -> Result<()>,
    ) -> Result<()> {
        let cancel = AtomicBool::new(false);
        let woke_main = AtomicBool::new(false);
        let (seq, right, left, waker) = (self.seq, &mut *self.right, &mut *self.left, self.left_waker);
        let (main, sent) = std::thread::scope(|scope| {
            let (jobs, job_rx) = mpsc::channel::<Job<'d, T>>();
            let (done_tx, done) = mpsc::channel();
            let (cancel, woke_main) = (&cancel, &woke_main);
            let sender = scope.spawn(move || {
                for job in job_rx {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = right.send_data(seq, bytemuck::cast_slice(job.data)) {
                        // The right neighbour may have closed because it lost a rank
                        // upstream of us, which our left link is about to report too;
                        // give that a moment before blaming the right neighbour and
                        // waking the caller if it is blocked reading from the left.
                        let deadline = std::time::Instant::now() + BLAME_GRACE;
                        while !cancel.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        if !cancel.load(Ordering::Relaxed) {
                            woke_main.store(true, Ordering::Relaxed);
                            let _ = waker.shutdown(Shutdown::Read);
                        }
                        return Err(e);
                    }
                    let _ = done_tx.send(job);
                }
                Ok(())
            });
            let mut pipeline = Pipeline { slots, jobs, done };
            let main = body(&mut pipeline, left);
            if main.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            drop(pipeline);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(Error::Broken("the ring's sender thread panicked".into())));
            (main, sent)
        });
        match (main, sent) {
            (Ok(()), Ok(())) => Ok(()),
            // A loss reported from upstream is the root cause even if our sender failed too.
            (Err(e @ Error::RemoteLoss { .. }), _) => self.forward_loss(e),
            (Err(e), Ok(())) => self.forward_loss(e),
            // The left side failed on its own: that loss is the root cause, and the
            // right neighbour most likely closed because of it.
            (Err(e), Err(_)) if !woke_main.load(Ordering::Relaxed) => self.forward_loss(e),
            // Our right neighbour failed; the caller's error, if any, is the wake-up.
            (_, Err(e)) => Err(e),
        }
    }

    /// Tells the right neighbour which rank was lost, then returns `e`.
    fn forward_loss(&mut self, e: Error) -> Result<()> {
        if let Some(lost) = e.lost_rank() {
            let reason = match &e {
                Error::PeerLost { reason, .. } | Error::RemoteLoss { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            self.right.send_abort(lost, &reason);
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_covers_every_element_once_in_near_equal_segments() {
        let check = |len: usize, segments: usize, chunk: usize, expected: &[&[usize]]| {
            let mut data: Vec<u32> = (0..len as u32).collect();
            let slots = split(&mut data, segments, chunk);
            let lens: Vec<Vec<usize>> =
                slots.iter().map(|s| s.iter().map(|c| c.as_ref().unwrap().len()).collect()).collect();
            assert_eq!(lens, expected, "len {len}, {segments} segments, chunk {chunk}");
        };
        check(0, 2, 4, &[&[], &[]]);
        check(1, 3, 4, &[&[], &[], &[1]]);
        check(7, 2, 2, &[&[2, 1], &[2, 2]]);
        check(10, 4, 100, &[&[2], &[3], &[2], &[3]]);
    }
}
