//! The capture ring: a fixed-size, lock-free single-producer single-consumer queue of sample
//! blocks between the capture thread and its consumer (`heapless::spsc::Queue`).
//!
//! Each [`Block`] carries the absolute 16 kHz index of its first sample, so a block the
//! producer had to drop (the ring was full) shows up at the consumer as a jump in the index,
//! not as silently shifted audio. The producer never waits for the consumer in real-time use
//! ([`RingWriter::flush`] drops and counts); only a simulation may wait
//! ([`RingWriter::wait_for_room`]). After start-up nothing allocates.
//!
//! Capacity: [`RING_BLOCKS`]` − 1` blocks of up to [`BLOCK`] samples. The producer fills blocks
//! and flushes the partly filled one at the end of every device period, so with periods of at
//! least 128 samples at 16 kHz the ring holds 64 K samples (4 s); with short periods it holds
//! fewer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use heapless::spsc::{Consumer, Producer, Queue};

/// Samples per block (8 ms at 16 kHz).
pub const BLOCK: usize = 128;
/// Slots in the queue (one stays free).
pub const RING_BLOCKS: usize = 513;

/// A run of consecutive samples and the index of the first one.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    first: u64,
    len: usize,
    data: [f32; BLOCK],
}

impl Block {
    const EMPTY: Block = Block {
        first: 0,
        len: 0,
        data: [0.0; BLOCK],
    };

    fn samples(&self) -> &[f32] {
        &self.data[..self.len]
    }

    fn end(&self) -> u64 {
        self.first + self.len as u64
    }
}

type RingQueue = Queue<Block, RING_BLOCKS>;

/// Owns the queue's heap allocation and frees it once both halves are gone.
struct Storage(*mut RingQueue);

// SAFETY: the pointer is only dereferenced through the `Producer`/`Consumer` halves, which are
// `Send` themselves; `Storage` only frees the allocation when the last half is dropped.
unsafe impl Send for Storage {}
// SAFETY: `Storage` exposes no access to the queue; sharing it only shares the right to free it
// last (through `Arc`).
unsafe impl Sync for Storage {}

impl Drop for Storage {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `Box::into_raw` in `ring()` and is freed only here, once:
        // `Storage` lives in an `Arc` held by both halves, and each half drops its
        // `Producer`/`Consumer` (its first field) before its `Arc<Storage>` (its last field),
        // so no reference into the queue exists any more.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// What the two halves share besides the queue.
struct Flags {
    ended: AtomicBool,
}

/// Producer half: appends samples, flushes blocks into the queue.
pub struct RingWriter {
    producer: Producer<'static, Block>,
    pending: Block,
    /// Blocks dropped because the ring was full, and their samples.
    overruns: u64,
    dropped_samples: u64,
    /// When set (simulations only), a full ring is waited for until this stop flag is raised.
    wait_for_room: Option<Arc<AtomicBool>>,
    flags: Arc<Flags>,
    _storage: Arc<Storage>,
}

/// Consumer half: pops samples in index order.
pub struct RingReader {
    consumer: Consumer<'static, Block>,
    current: Block,
    /// Samples of `current` already handed out.
    taken: usize,
    flags: Arc<Flags>,
    _storage: Arc<Storage>,
}

/// Creates an empty ring and its two halves.
pub fn ring() -> (RingWriter, RingReader) {
    let raw = Box::into_raw(Box::new(RingQueue::new()));
    // SAFETY: `raw` is a valid, exclusively owned allocation that stays alive until `Storage`
    // frees it, which happens only after both halves (the only users of this reference) are
    // dropped (see `Storage::drop`). Nothing else ever dereferences `raw`.
    let queue: &'static mut RingQueue = unsafe { &mut *raw };
    let storage = Arc::new(Storage(raw));
    let (producer, consumer) = queue.split();
    let flags = Arc::new(Flags {
        ended: AtomicBool::new(false),
    });
    (
        RingWriter {
            producer,
            pending: Block::EMPTY,
            overruns: 0,
            dropped_samples: 0,
            wait_for_room: None,
            flags: Arc::clone(&flags),
            _storage: Arc::clone(&storage),
        },
        RingReader {
            consumer,
            current: Block::EMPTY,
            taken: 0,
            flags,
            _storage: storage,
        },
    )
}

impl RingWriter {
    /// Index of the sample after the last one written (pending or flushed).
    pub fn next_index(&self) -> u64 {
        self.pending.end()
    }

    /// Appends `samples` whose first one has index `first`. A jump in the index starts a new
    /// block. Blocks that fill up are flushed (and dropped when the ring is full). Does not
    /// allocate.
    pub fn write(&mut self, first: u64, samples: &[f32]) {
        self.write_with(first, samples.len(), |dst, offset| {
            dst.copy_from_slice(&samples[offset..offset + dst.len()]);
        });
    }

    /// Appends `n` zeros from index `first`.
    pub fn write_silence(&mut self, first: u64, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.write_with(first, n, |dst, _| dst.fill(0.0));
    }

    fn write_with(&mut self, first: u64, n: usize, mut fill: impl FnMut(&mut [f32], usize)) {
        if n == 0 {
            return;
        }
        if self.pending.len > 0 && self.pending.end() != first {
            self.flush();
        }
        if self.pending.len == 0 {
            self.pending.first = first;
        }
        let mut done = 0;
        while done < n {
            let at = self.pending.len;
            let k = (BLOCK - at).min(n - done);
            fill(&mut self.pending.data[at..at + k], done);
            self.pending.len += k;
            done += k;
            if self.pending.len == BLOCK {
                self.flush();
                self.pending.first = first + done as u64;
            }
        }
    }

    /// From now on a full ring is waited for (polling every 200 µs) instead of dropping the
    /// block, until `stop` is raised: only for simulations, where the producer may block.
    pub fn wait_for_room(&mut self, stop: Arc<AtomicBool>) {
        self.wait_for_room = Some(stop);
    }

    /// Hands the pending block to the consumer. When the ring is full the block is dropped and
    /// counted (the producer never waits), unless [`RingWriter::wait_for_room`] was called.
    /// Returns whether it went in.
    pub fn flush(&mut self) -> bool {
        if self.pending.len == 0 {
            return true;
        }
        if let Some(stop) = &self.wait_for_room {
            while !self.producer.ready() && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        let next = self.pending.end();
        let ok = match self.producer.enqueue(self.pending) {
            Ok(()) => true,
            Err(_) => {
                self.overruns += 1;
                self.dropped_samples += self.pending.len as u64;
                false
            }
        };
        self.pending.len = 0;
        self.pending.first = next;
        ok
    }

    /// Marks the end of the stream (after flushing what is pending).
    pub fn end(&mut self) {
        self.flush();
        self.flags.ended.store(true, Ordering::Release);
    }

    /// Blocks dropped because the ring was full.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Samples in those blocks.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }
}

/// What one `Capture::pop` delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Popped {
    /// Samples written to the front of the buffer.
    pub samples: usize,
    /// Absolute 16 kHz index of the first of them (of the next one when `samples` is 0).
    pub first_index: u64,
    /// The stream has ended and everything was handed out.
    pub end_of_stream: bool,
}

impl RingReader {
    /// Copies the next consecutive samples into `out` without waiting: stops at the end of
    /// `out`, when the ring is empty, or at a jump in the index (the next pop starts at the new
    /// index). Does not allocate.
    pub fn pop(&mut self, out: &mut [f32]) -> Popped {
        let mut first_index = self.current.first + self.taken as u64;
        let mut n = 0;
        while n < out.len() {
            if self.taken == self.current.len {
                let next_first = match self.consumer.peek() {
                    Some(b) => b.first,
                    None => break,
                };
                let expected = self.current.first + self.current.len as u64;
                if n > 0 && next_first != expected {
                    break;
                }
                if let Some(b) = self.consumer.dequeue() {
                    self.current = b;
                    self.taken = 0;
                    if n == 0 {
                        first_index = b.first;
                    }
                }
                continue;
            }
            let rest = &self.current.samples()[self.taken..];
            let k = rest.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&rest[..k]);
            self.taken += k;
            n += k;
        }
        let end_of_stream = n == 0 && self.is_drained();
        Popped {
            samples: n,
            first_index,
            end_of_stream,
        }
    }

    /// The stream has ended and nothing is left to pop.
    fn is_drained(&self) -> bool {
        // `ended` is set after the last enqueue, so check it before looking at the queue.
        self.flags.ended.load(Ordering::Acquire)
            && self.consumer.peek().is_none()
            && self.taken == self.current.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_out_in_order_with_their_index() {
        let (mut w, mut r) = ring();
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        w.write(0, &x[..300]);
        w.write(300, &x[300..]);
        w.flush();
        let mut out = vec![0.0; 333];
        let mut got = Vec::new();
        loop {
            let p = r.pop(&mut out);
            if p.samples == 0 {
                assert!(!p.end_of_stream, "not ended yet");
                assert_eq!(p.first_index, 1000);
                break;
            }
            assert_eq!(p.first_index as usize, got.len());
            got.extend_from_slice(&out[..p.samples]);
        }
        assert_eq!(got, x);
        w.end();
        assert!(r.pop(&mut out).end_of_stream);
    }

    #[test]
    fn a_jump_in_the_index_ends_a_pop() {
        let (mut w, mut r) = ring();
        w.write(0, &[1.0; 10]);
        w.write_silence(50, 5);
        w.write(55, &[2.0; 3]);
        w.end();
        let mut out = [9.0; 64];
        assert_eq!(
            r.pop(&mut out),
            Popped {
                samples: 10,
                first_index: 0,
                end_of_stream: false
            }
        );
        let p = r.pop(&mut out);
        assert_eq!((p.samples, p.first_index), (8, 50));
        assert_eq!(out[..8], [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0]);
        assert!(r.pop(&mut out).end_of_stream);
    }

    #[test]
    fn a_full_ring_drops_new_blocks_without_waiting() {
        let (mut w, mut r) = ring();
        let start = std::time::Instant::now();
        let total = (RING_BLOCKS + 100) * BLOCK;
        let x: Vec<f32> = (0..total).map(|i| i as f32).collect();
        w.write(0, &x);
        w.flush();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(w.overruns(), 101);
        assert_eq!(w.dropped_samples(), 101 * BLOCK as u64);
        // The consumer sees the first RING_BLOCKS - 1 blocks, then the next block written
        // after it made room carries a later index.
        let mut out = vec![0.0; total];
        let p = r.pop(&mut out);
        assert_eq!(p.samples, (RING_BLOCKS - 1) * BLOCK);
        assert_eq!(out[..p.samples], x[..p.samples]);
        w.write(total as u64, &[7.0; 4]);
        w.flush();
        let p = r.pop(&mut out);
        assert_eq!((p.first_index, p.samples), (total as u64, 4));
    }

    #[test]
    fn halves_can_live_on_different_threads_and_drop_in_any_order() {
        let (mut w, mut r) = ring();
        w.wait_for_room(Arc::new(AtomicBool::new(false)));
        let t = std::thread::spawn(move || {
            // 2000 blocks: more than the ring holds, so the producer has to wait.
            for i in 0..2000u64 {
                w.write(i * 10, &[i as f32; 10]);
                w.flush();
            }
            w.end();
        });
        let mut out = [0.0; 7];
        let mut next = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(std::time::Instant::now() < deadline, "timed out");
            let p = r.pop(&mut out);
            if p.end_of_stream {
                break;
            }
            if p.samples == 0 {
                std::thread::yield_now();
                continue;
            }
            assert_eq!(p.first_index, next);
            for (k, v) in out[..p.samples].iter().enumerate() {
                assert_eq!(*v, ((next + k as u64) / 10) as f32);
            }
            next += p.samples as u64;
        }
        assert_eq!(next, 20_000);
        t.join().unwrap();
        drop(r);
    }
}
