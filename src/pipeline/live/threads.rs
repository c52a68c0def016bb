//! The loops of the live pipeline's threads. Each polls its stop flag every few milliseconds and
//! beats its heartbeat every turn; none allocates per frame or per audio chunk (buffers come
//! back through "free" channels).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::OnceLock;
use std::time::Duration;

use super::dump::LiveDump;
use super::feed::{AudioFeed, AudioOut};
use super::metrics::{beat, Metrics};
use super::schedule::{Indexed, Presenter, Schedule};
use super::{LiveError, Pacing};
use crate::audio::Timing;
use crate::backend::Backend;
use crate::clock::{Clock, FrameClock, Pts};
use crate::pipeline::{FrameOutcome, MotionFrame, MotionStage, RenderStage};
use crate::sink::{Frame, FrameSink, WriteOutcome};

/// Samples the motion thread takes from the feed at a time (10 ms at 16 kHz), and the size of
/// an audio chunk handed to the sink and the playback.
pub(super) const CHUNK: usize = 160;
/// How long a blocked thread sleeps between looks at the stop flag.
pub(super) const POLL: Duration = Duration::from_millis(2);

/// A run of consecutive samples of the stream.
pub(super) struct AudioChunk {
    pub first: u64,
    pub len: usize,
    pub data: ChunkBuf,
}

/// An audio chunk's buffer.
pub(super) type ChunkBuf = Box<[f32; CHUNK]>;

/// The producer's end of an audio consumer: where chunks go and where their buffers come back.
pub(super) struct AudioLane {
    pub to: SyncSender<AudioChunk>,
    pub free: Receiver<ChunkBuf>,
}

/// The consumer's end: chunks in, buffers back.
pub(super) struct AudioIn {
    pub rx: Receiver<AudioChunk>,
    pub free: SyncSender<ChunkBuf>,
}

/// A rendered frame in an RGB slot.
pub(super) struct Rendered {
    pub index: u64,
    pub rgb: Vec<u8>,
}

impl Indexed for Rendered {
    fn index(&self) -> u64 {
        self.index
    }
}

pub(super) enum ToRender {
    Frame(Box<MotionFrame>),
    End,
}

pub(super) enum ToOutput {
    Frame(Rendered),
    End,
}

/// What every thread shares.
pub(super) struct Shared<'a> {
    pub stop: &'a AtomicBool,
    pub metrics: &'a Metrics,
    pub t0: &'a OnceLock<Pts>,
    pub clock: &'a dyn Clock,
    pub pacing: Pacing,
    pub budget: Duration,
}

impl Shared<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn beat(&self, thread: usize) {
        beat(&self.metrics.heartbeat[thread], self.clock);
    }
}

/// Hands `samples` (the first with index `first`) to every audio consumer, in chunks. A full
/// lane drops the chunk (counted), unless `wait`: then it waits for room (or the stop).
fn forward(sh: &Shared<'_>, lanes: &[AudioLane], samples: &[f32], first: u64, wait: bool) {
    let metrics = sh.metrics;
    for lane in lanes {
        let mut at = first;
        for piece in samples.chunks(CHUNK) {
            let mut free = lane.free.try_recv();
            while wait && free.is_err() && !sh.stopped() {
                sh.beat(0);
                free = lane
                    .free
                    .recv_timeout(POLL)
                    .map_err(|_| TryRecvError::Empty);
            }
            match free {
                Ok(mut data) => {
                    data[..piece.len()].copy_from_slice(piece);
                    let chunk = AudioChunk {
                        first: at,
                        len: piece.len(),
                        data,
                    };
                    if lane.to.try_send(chunk).is_err() {
                        metrics.audio_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    metrics.audio_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            at += piece.len() as u64;
        }
    }
}

/// Feed → MotionStage → motion frames; the samples also go to the audio consumers.
pub(super) fn motion_loop<B: Backend>(
    sh: &Shared<'_>,
    feed: &mut dyn AudioFeed,
    motion: &mut MotionStage<B>,
    to_render: &SyncSender<ToRender>,
    free: &Receiver<Box<MotionFrame>>,
    lanes: &[AudioLane],
) -> Result<(), LiveError> {
    let mut buf = [0f32; CHUNK];
    let silence = [0f32; CHUNK];
    let mut slot: Option<Box<MotionFrame>> = None;
    let mut expected = 0u64;
    let mut ended = false;
    let mut turns = 0u32;
    // No free motion frame last turn: the renderer is behind; hand out frames before taking
    // more audio (a simulation's feed would otherwise run arbitrarily far ahead).
    let mut backlogged = false;
    // A live device runs on its own clock: a consumer that is stuck loses audio. A simulation
    // or a feed from memory waits for its consumers instead.
    let wait = sh.pacing == Pacing::Virtual || !feed.is_live();
    while !sh.stopped() {
        sh.beat(0);
        // The source's state for the status, every 100 turns (at least once a second).
        if turns.is_multiple_of(100) {
            let st = feed.status();
            sh.metrics.capture_xruns.store(st.xruns, Ordering::Relaxed);
            sh.metrics
                .audio_connected
                .store(st.connected, Ordering::Relaxed);
        }
        turns = turns.wrapping_add(1);
        let read = if backlogged {
            FeedReadNone::none(expected)
        } else {
            feed.pop(&mut buf)
        };
        if read.samples > 0 {
            if sh.t0.get().is_none() {
                if let Some(t) = feed.t0() {
                    let _ = sh.t0.set(t);
                }
            }
            // Samples the capture had to drop: silence keeps every index in its place.
            while expected < read.first_index {
                let n = ((read.first_index - expected) as usize).min(CHUNK);
                motion.push(&silence[..n])?;
                forward(sh, lanes, &silence[..n], expected, wait);
                sh.metrics.gap_filled.fetch_add(n as u64, Ordering::Relaxed);
                expected += n as u64;
            }
            motion.push(&buf[..read.samples])?;
            forward(sh, lanes, &buf[..read.samples], read.first_index, wait);
            expected = read.first_index + read.samples as u64;
            sh.metrics
                .samples
                .fetch_add(read.samples as u64, Ordering::Relaxed);
        }
        if read.end_of_stream && !ended {
            motion.end_of_stream()?;
            ended = true;
        }
        // Hand out every frame that is ready.
        backlogged = false;
        loop {
            let mut frame = match slot.take() {
                Some(f) => f,
                None => match free.recv_timeout(POLL) {
                    Ok(f) => f,
                    Err(RecvTimeoutError::Timeout) => {
                        backlogged = true;
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
            };
            let runs = motion.stats().moda_runs;
            if motion.next_frame(&mut frame)? {
                let new_runs = (motion.stats().moda_runs - runs) as u64;
                sh.metrics
                    .motion_runs
                    .fetch_add(new_runs, Ordering::Relaxed);
                if to_render.send(ToRender::Frame(frame)).is_err() {
                    return Ok(());
                }
            } else {
                slot = Some(frame);
                if ended {
                    // Every frame of the stream was handed out.
                    return Ok(());
                }
                break;
            }
        }
        if read.samples == 0 && !backlogged {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// A read that took nothing.
struct FeedReadNone;

impl FeedReadNone {
    fn none(next: u64) -> super::feed::FeedRead {
        super::feed::FeedRead {
            samples: 0,
            first_index: next,
            end_of_stream: false,
        }
    }
}

/// The render thread's debug controls.
pub(super) struct RenderDebug<'a> {
    /// While set, the loop blocks without a heartbeat, as a stalled stage would.
    pub stall: Option<&'a AtomicBool>,
    /// Draw the frame/sample stamp into each frame, whose side is this many pixels.
    pub stamp: Option<u32>,
}

/// Motion frames → rendered RGB slots. The loop takes a free slot before it decides on a frame,
/// so that it never renders a picture it cannot hand over, and the decision is made at the time
/// it could actually start: a frame whose deadline is nearer than the last render took is
/// skipped. The `stall` debug control blocks the loop without a heartbeat.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_loop(
    sh: &Shared<'_>,
    stage: &mut dyn RenderStage,
    rx: &Receiver<ToRender>,
    motion_free: &SyncSender<Box<MotionFrame>>,
    to_output: &SyncSender<ToOutput>,
    rgb_free: &Receiver<Vec<u8>>,
    debug: RenderDebug<'_>,
    mut dump: Option<&mut LiveDump>,
) -> Result<(), LiveError> {
    let stalled = || debug.stall.is_some_and(|s| s.load(Ordering::Relaxed));
    let fclock = FrameClock::MODA;
    let mut render_time = Duration::ZERO;
    // A free output slot, kept across skipped frames.
    let mut slot: Option<Vec<u8>> = None;
    loop {
        sh.beat(1);
        if sh.stopped() {
            return Ok(());
        }
        let frame = match rx.recv_timeout(POLL) {
            Ok(ToRender::Frame(f)) => f,
            Ok(ToRender::End) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => continue,
        };
        let k = frame.index;
        let mut rgb = match slot.take() {
            Some(b) => b,
            None => loop {
                match rgb_free.recv_timeout(POLL) {
                    Ok(b) => break b,
                    Err(RecvTimeoutError::Timeout) if !sh.stopped() => {
                        if stalled() {
                            sh.metrics.render_stalled.store(true, Ordering::Relaxed);
                        } else {
                            sh.beat(1);
                        }
                    }
                    Err(_) => return Ok(()),
                }
            },
        };
        while stalled() {
            sh.metrics.render_stalled.store(true, Ordering::Relaxed);
            if sh.stopped() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        sh.metrics.render_stalled.store(false, Ordering::Relaxed);
        if sh.pacing == Pacing::RealTime {
            if let Some(&t0) = sh.t0.get() {
                // The output shows frame k at its deadline: it must be ready before.
                let deadline = Schedule::new(t0, sh.budget, fclock).deadline(k);
                if sh.clock.now().after(render_time) >= deadline {
                    sh.metrics.skipped.fetch_add(1, Ordering::Relaxed);
                    let _ = motion_free.send(frame);
                    slot = Some(rgb);
                    continue;
                }
            }
        }
        // Timed on the pipeline's clock, like the deadlines it is compared with (a test's manual
        // clock does not move while a frame renders, however slow the machine or emulator).
        let started = sh.clock.now();
        if stage.process(&frame)? == FrameOutcome::KeptPrevious {
            sh.metrics.nonfinite.fetch_add(1, Ordering::Relaxed);
        }
        render_time = sh.clock.now().since(started);
        if let Some(d) = dump.as_deref_mut() {
            d.record(&frame, stage.buffers());
        }
        let _ = motion_free.send(frame);
        rgb.copy_from_slice(&stage.buffers().out);
        if let Some(side) = debug.stamp {
            crate::sink::stamp::write(&mut rgb, side, side, k as u32, fclock.first_sample(k));
        }
        if to_output
            .send(ToOutput::Frame(Rendered { index: k, rgb }))
            .is_err()
        {
            return Ok(());
        }
        sh.metrics.rendered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the output loop gets and returns things.
pub(super) struct OutputIo<'a> {
    pub sink: &'a mut dyn FrameSink,
    pub rx: &'a Receiver<ToOutput>,
    pub rgb_free: &'a SyncSender<Vec<u8>>,
    /// The stream's audio, for sinks with a sound track.
    pub audio: Option<&'a AudioIn>,
}

/// The frame clock: at each deadline, the frame due or the previous picture again.
pub(super) fn output_loop(sh: &Shared<'_>, io: OutputIo<'_>, size: usize) -> Result<(), LiveError> {
    let fclock = FrameClock::MODA;
    let mut shown = vec![0u8; size * size * 3];
    let mut presenter: Presenter<Rendered> = Presenter::default();
    let mut ended = false;
    let recycle = |r: Rendered| {
        let _ = io.rgb_free.send(r.rgb);
    };
    let t0 = loop {
        sh.beat(2);
        if sh.stopped() {
            return Ok(());
        }
        if let Some(&t) = sh.t0.get() {
            break t;
        }
        std::thread::sleep(POLL);
    };
    let schedule = Schedule::new(t0, sh.budget, fclock);
    let mut k = match sh.pacing {
        Pacing::RealTime => schedule.first_frame_due_after(sh.clock.now()),
        Pacing::Virtual => 0,
    };
    let first_sample = fclock.first_sample(k);
    while !sh.stopped() {
        sh.beat(2);
        let deadline = schedule.deadline(k);
        let frame = match sh.pacing {
            Pacing::RealTime => {
                // Sleep in short steps so the heartbeat and the stop flag stay live.
                loop {
                    let now = sh.clock.now();
                    if now >= deadline || sh.stopped() {
                        break;
                    }
                    sh.clock
                        .sleep_until(deadline.min(now.after(Duration::from_millis(50))));
                    sh.beat(2);
                }
                if sh.stopped() {
                    return Ok(());
                }
                let mut next = || match io.rx.try_recv() {
                    Ok(ToOutput::Frame(f)) => Some(f),
                    Ok(ToOutput::End) => {
                        ended = true;
                        None
                    }
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
                };
                presenter.take(k, &mut next, recycle)
            }
            Pacing::Virtual => loop {
                match io.rx.recv_timeout(POLL) {
                    Ok(ToOutput::Frame(f)) => break Some(f),
                    Ok(ToOutput::End) | Err(RecvTimeoutError::Disconnected) => {
                        ended = true;
                        break None;
                    }
                    Err(RecvTimeoutError::Timeout) if sh.stopped() => return Ok(()),
                    Err(RecvTimeoutError::Timeout) => sh.beat(2),
                }
            },
        };
        if ended && frame.is_none() {
            return Ok(());
        }
        let index = match (sh.pacing, &frame) {
            (Pacing::Virtual, Some(f)) => f.index,
            _ => k,
        };
        // The sound up to what has been captured goes first (a muxer interleaves by time).
        if let Some(audio) = io.audio {
            while let Ok(chunk) = audio.rx.try_recv() {
                let end = chunk.first + chunk.len as u64;
                if end > first_sample {
                    let skip = first_sample.saturating_sub(chunk.first) as usize;
                    let at = chunk.first + skip as u64;
                    let pts = fclock.sample_pts(t0, at).after(sh.budget);
                    io.sink.write_audio(&chunk.data[skip..chunk.len], pts)?;
                }
                let _ = audio.free.send(chunk.data);
            }
        }
        match frame {
            Some(f) => {
                shown.copy_from_slice(&f.rgb);
                recycle(f);
            }
            None => sh.metrics.late.store(presenter.late, Ordering::Relaxed),
        }
        let outcome = io
            .sink
            .write_frame(&Frame::rgb(index, schedule.deadline(index), &shown))?;
        if outcome == WriteOutcome::Dropped {
            sh.metrics.sink_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if sh.pacing == Pacing::RealTime {
            let latency = sh.clock.now().since(schedule.frame_time(index));
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            sh.metrics.latency_min_ns.fetch_min(ns, Ordering::Relaxed);
            sh.metrics.latency_max_ns.fetch_max(ns, Ordering::Relaxed);
            sh.metrics.latencies.record(latency);
        }
        sh.metrics.presented.fetch_add(1, Ordering::Relaxed);
        sh.metrics.stale.store(presenter.stale, Ordering::Relaxed);
        k = index + 1;
    }
    Ok(())
}

/// Delayed playback: every few milliseconds, the samples that arrived and what is due.
pub(super) fn playback_loop(sh: &Shared<'_>, out: &mut dyn AudioOut, audio: &AudioIn) {
    while !sh.stopped() {
        sh.beat(3);
        let Some(&t0) = sh.t0.get() else {
            std::thread::sleep(POLL);
            continue;
        };
        let timing = Timing {
            t0,
            budget: sh.budget,
        };
        sh.metrics
            .playback_xruns
            .store(out.xruns(), Ordering::Relaxed);
        match audio.rx.recv_timeout(Duration::from_millis(5)) {
            Ok(chunk) => {
                out.write(&chunk.data[..chunk.len], chunk.first, timing);
                let _ = audio.free.send(chunk.data);
            }
            Err(RecvTimeoutError::Timeout) => out.write(&[], 0, timing),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
