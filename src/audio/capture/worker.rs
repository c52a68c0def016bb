//! The capture thread's loops, one per kind of source: a decoded file and silence paced by the
//! clock, a pipe played as it arrives, a device placed on the clock by its timestamps (see
//! the parent module for the contract).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::super::align::{Aligner, Fix};
use super::super::pipe::{PipeRead, PipeSource};
use super::super::ring::{RingWriter, BLOCK};
use super::super::source::{AudioSource, SourceError};
use super::super::stream_resample::StreamResampler;
use super::super::SAMPLE_RATE;
use super::{CaptureSettings, ClockMode, DeviceOpener, Shared, PIPE_GRACE};
use crate::clock::{Clock, MonotonicClock, Pts};

/// Samples the pipe buffers ahead of the clock (1 s); beyond it the writer is held back.
const PIPE_FIFO: usize = 16_000;
/// Longest wait between two checks of the stop flag.
const STOP_POLL: Duration = Duration::from_millis(5);

/// Replaces NaN and ±Inf by 0 and clamps to [-1, 1]; returns how many samples it changed.
/// (The hardening branch brings a shared `audio::sanitize`; this is the capture's own.)
fn sanitize(x: &mut [f32]) -> u64 {
    let mut repaired = 0;
    for v in x {
        if !v.is_finite() {
            *v = 0.0;
            repaired += 1;
        } else if v.abs() > 1.0 {
            *v = v.clamp(-1.0, 1.0);
            repaired += 1;
        }
    }
    repaired
}

/// The source error with its causes, for one log line.
pub(super) fn describe(e: &SourceError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Sleeps on `clock` until `deadline`, checking the stop flag at least every [`STOP_POLL`].
/// Returns `false` when asked to stop.
fn sleep_until(clock: &dyn Clock, deadline: Pts, shared: &Shared) -> bool {
    loop {
        if shared.stopped() {
            return false;
        }
        let now = clock.now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep(deadline.since(now).min(STOP_POLL));
    }
}

/// Index of the last sample whose time has fully passed, `⌊(now − t0)·16000⌋`.
fn due(now: Pts, t0: Pts) -> u64 {
    (u128::from(now.since(t0).as_nanos() as u64) * 16_000 / 1_000_000_000) as u64
}

/// The capture thread's state.
pub(super) struct Worker {
    pub(super) settings: CaptureSettings,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) writer: RingWriter,
    pub(super) shared: Arc<Shared>,
    pub(super) name: String,
}

/// A connected device and the conversion of its samples to 16 kHz.
struct Connected {
    source: Box<dyn AudioSource>,
    resampler: StreamResampler,
    /// Samples fed to / produced by the resampler since the connection.
    fed: u64,
    made: u64,
}

impl Worker {
    /// Hands the pending block to the ring (see [`RingWriter::flush`]) and publishes the
    /// counters; `false` when asked to stop.
    fn flush(&mut self) -> bool {
        self.writer.flush();
        self.shared.publish(&self.writer);
        !self.shared.stopped()
    }

    /// `t0` of a clock-paced source: the clock's time at start (set before the thread runs,
    /// so `Capture::t0` is known as soon as `start` returns).
    pub(super) fn start_clock(&self) -> Pts {
        let t0 = self.clock.now();
        self.shared.set_t0(t0);
        t0
    }

    /// A decoded file: paced by the clock (or by the consumer in a simulation).
    pub(super) fn run_samples(
        mut self,
        mut samples: Vec<f32>,
        looped: bool,
        mode: ClockMode,
        t0: Pts,
    ) {
        let repaired = sanitize(&mut samples);
        self.shared.repaired.store(repaired, Ordering::Relaxed);
        if repaired > 0 {
            log::warn!(
                "{}: {repaired} samples were NaN, infinite or out of range; repaired",
                self.name
            );
        }
        let tick = self.settings.tick();
        let (mut next, mut pos) = (0u64, 0usize);
        let mut tick_end = t0;
        loop {
            if self.shared.stopped() {
                return;
            }
            let target = match mode {
                ClockMode::RealTime => due(self.clock.now(), t0),
                ClockMode::Virtual => next + BLOCK as u64,
            };
            while next < target {
                if pos == samples.len() {
                    if looped && !samples.is_empty() {
                        pos = 0;
                    } else {
                        self.writer.end();
                        self.shared.publish(&self.writer);
                        return;
                    }
                }
                let k = ((target - next) as usize).min(samples.len() - pos);
                self.writer.write(next, &samples[pos..pos + k]);
                pos += k;
                next += k as u64;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            }
        }
    }

    /// Endless silence, paced by the clock (or by the consumer).
    pub(super) fn run_silence(mut self, mode: ClockMode, t0: Pts) {
        let tick = self.settings.tick();
        let mut next = 0u64;
        let mut tick_end = t0;
        loop {
            let target = match mode {
                ClockMode::RealTime => due(self.clock.now(), t0),
                ClockMode::Virtual => next + BLOCK as u64,
            };
            if target > next {
                self.writer.write_silence(next, target - next);
                next = target;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            } else if self.shared.stopped() {
                return;
            }
        }
    }

    /// Raw PCM from a pipe: as soon as it arrives, never ahead of the clock, silence when the
    /// writer is idle, the end when the pipe closes.
    pub(super) fn run_pipe(mut self, mut pipe: PipeSource, mode: ClockMode, t0: Pts) {
        let frames = self.settings.period_frames.max(16) as usize;
        let Some(mut resampler) = StreamResampler::new(pipe.format().rate, SAMPLE_RATE, frames)
        else {
            self.writer.end();
            return;
        };
        let mut input = vec![0.0f32; frames.max(resampler.delay_input_samples())];
        let mut output = vec![0.0f32; resampler.max_output(input.len())];
        let mut fifo: VecDeque<f32> = VecDeque::with_capacity(PIPE_FIFO + output.len());
        let grace = (PIPE_GRACE.as_nanos() * 16_000 / 1_000_000_000) as u64;
        let tick = self.settings.tick();
        let mut tick_end = t0;
        let mut next = 0u64;
        let mut pipe_ended = false;
        loop {
            if self.shared.stopped() {
                return;
            }
            // Take what the pipe has (in a simulation: wait for it), as long as there is room.
            let wait = match mode {
                ClockMode::RealTime => Duration::ZERO,
                ClockMode::Virtual => Duration::from_millis(50),
            };
            while !pipe_ended && fifo.len() + output.len() <= fifo.capacity() {
                let n = match pipe.try_read(&mut input[..frames], wait) {
                    Ok(PipeRead::Samples(0)) | Ok(PipeRead::Idle) => break,
                    Ok(PipeRead::Samples(n)) => n,
                    Ok(PipeRead::End) => {
                        // Push the resampler's last outputs out with zeros.
                        pipe_ended = true;
                        let tail = resampler.delay_input_samples();
                        input[..tail].fill(0.0);
                        tail
                    }
                    Err(e) => {
                        log::error!("{}: {}; ending the stream", self.name, describe(&e));
                        pipe_ended = true;
                        0
                    }
                };
                let made = resampler.process(&input[..n], &mut output);
                let repaired = sanitize(&mut output[..made]);
                self.shared.repaired.fetch_add(repaired, Ordering::Relaxed);
                fifo.extend(&output[..made]);
                if mode == ClockMode::Virtual {
                    break;
                }
            }
            let (target, silence_to) = match mode {
                ClockMode::RealTime => {
                    let d = due(self.clock.now(), t0);
                    (d, d.saturating_sub(grace))
                }
                ClockMode::Virtual => (u64::MAX, 0),
            };
            let k = (fifo.len() as u64).min(target.saturating_sub(next)) as usize;
            let (a, b) = fifo.as_slices();
            let from_a = k.min(a.len());
            self.writer.write(next, &a[..from_a]);
            self.writer.write(next + from_a as u64, &b[..k - from_a]);
            fifo.drain(..k);
            next += k as u64;
            if pipe_ended && fifo.is_empty() {
                self.writer.end();
                self.shared.publish(&self.writer);
                return;
            }
            if next < silence_to {
                self.writer.write_silence(next, silence_to - next);
                next = silence_to;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            }
        }
    }

    /// A live device: placed on the clock by its timestamps; silence and retries while it is
    /// missing.
    pub(super) fn run_device(
        mut self,
        mut opener: Box<dyn DeviceOpener>,
        first: Option<Box<dyn AudioSource>>,
        t0: Option<Pts>,
    ) {
        let frames = self.settings.period_frames.max(16) as usize;
        let mut input = vec![0.0f32; frames];
        let mut output: Vec<f32> = Vec::new();
        let mut aligner = Aligner::new();
        if let Some(t0) = t0 {
            aligner.start_at(t0);
        }
        let margin = u64::from(self.settings.period_frames);
        let tick = self.settings.tick();
        let mut connected: Option<Connected> = None;
        let mut pending_first = first;
        let mut lost = pending_first.is_none();
        let mut next_try = self.clock.now().after(self.settings.retry);
        loop {
            if self.shared.stopped() {
                return;
            }
            // (Re)connect.
            if connected.is_none() {
                let opened = match pending_first.take() {
                    Some(src) => Some(src),
                    None if self.clock.now() >= next_try => match opener.open() {
                        Ok(src) => Some(src),
                        Err(e) => {
                            log::debug!("{}: still unavailable: {}", self.name, describe(&e));
                            next_try = self.clock.now().after(self.settings.retry);
                            None
                        }
                    },
                    None => None,
                };
                if let Some(source) = opened {
                    let rate = source.sample_rate();
                    let Some(resampler) = StreamResampler::new(rate, SAMPLE_RATE, frames) else {
                        log::error!("{}: the device reports a sample rate of 0 Hz", self.name);
                        next_try = self.clock.now().after(self.settings.retry);
                        continue;
                    };
                    output.resize(resampler.max_output(frames), 0.0);
                    // Two device periods (at 16 kHz) of timestamp uncertainty are smoothed.
                    aligner.set_gap(2.0 * frames as f64 * 16_000.0 / f64::from(rate));
                    aligner.resync();
                    if lost {
                        log::info!("{} is back", self.name);
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        lost = false;
                    }
                    self.shared.connected.store(true, Ordering::Relaxed);
                    connected = Some(Connected {
                        source,
                        resampler,
                        fed: 0,
                        made: 0,
                    });
                }
            }
            match connected.as_mut() {
                None => {
                    // Keep time with silence, a period behind the clock.
                    let (first, n) = aligner.silence_until(self.clock.now(), margin);
                    if let Some(t0) = aligner.t0() {
                        self.shared.set_t0(t0);
                    }
                    self.writer.write_silence(first, n);
                    self.shared.filled.fetch_add(n, Ordering::Relaxed);
                    self.flush();
                    let wake = self.clock.now().after(tick).min(next_try);
                    if !sleep_until(&*self.clock, wake, &self.shared) {
                        return;
                    }
                }
                Some(dev) => match dev.source.read(&mut input) {
                    Ok(c) if c.samples > 0 => {
                        if c.lost > 0 {
                            self.shared.xruns.fetch_add(1, Ordering::Relaxed);
                            aligner.resync();
                        }
                        // The chunk's capture time on our clock, by its age on CLOCK_MONOTONIC.
                        let age = MonotonicClock::read().since(c.timestamp);
                        let t_in = self.clock.now().nanos() as f64 - age.as_nanos() as f64;
                        let made = dev.resampler.process(&input[..c.samples], &mut output);
                        if made > 0 {
                            let rate = f64::from(dev.resampler.from_rate());
                            let lag = dev.resampler.input_position(dev.made) - dev.fed as f64;
                            let t_out = (t_in + lag * 1e9 / rate).max(0.0);
                            let chunk = &mut output[..made];
                            let repaired = sanitize(chunk);
                            self.shared.repaired.fetch_add(repaired, Ordering::Relaxed);
                            let plan = aligner.place(made, Pts::from_nanos(t_out as u64));
                            self.writer.write_silence(plan.first, plan.pad);
                            let body = &chunk[plan.skip..];
                            let at = plan.first + plan.pad;
                            match plan.fix {
                                Fix::None => self.writer.write(at, body),
                                Fix::Insert => {
                                    self.writer.write(at, body);
                                    if let Some(&last) = body.last() {
                                        self.writer.write(at + body.len() as u64, &[last]);
                                    }
                                }
                                Fix::Drop => {
                                    self.writer.write(at, &body[..body.len().saturating_sub(1)])
                                }
                            }
                            dev.made += made as u64;
                            let st = aligner.stats();
                            self.shared.inserted.store(st.inserted, Ordering::Relaxed);
                            self.shared.dropped.store(st.dropped, Ordering::Relaxed);
                            self.shared.skipped.store(st.skipped, Ordering::Relaxed);
                            self.shared.filled.fetch_add(plan.pad, Ordering::Relaxed);
                            if let Some(t0) = aligner.t0() {
                                self.shared.set_t0(t0);
                            }
                        }
                        dev.fed += c.samples as u64;
                        self.flush();
                    }
                    result => {
                        let why = match result {
                            Err(e) => describe(&e),
                            Ok(_) => format!("{}: the device stopped delivering audio", self.name),
                        };
                        log::warn!(
                            "{why}; producing silence and retrying every {:.1} s",
                            self.settings.retry.as_secs_f64()
                        );
                        self.shared.connected.store(false, Ordering::Relaxed);
                        connected = None;
                        lost = true;
                        // Try once at once (a device that failed may reopen), then every `retry`.
                        next_try = self.clock.now();
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_repairs_and_counts() {
        let mut x = [0.5, f32::NAN, f32::INFINITY, -3.0, 1.0, f32::NEG_INFINITY];
        assert_eq!(sanitize(&mut x), 4);
        assert_eq!(x, [0.5, 0.0, 0.0, -1.0, 1.0, 0.0]);
    }

    #[test]
    fn due_counts_whole_samples() {
        let t0 = Pts::from_nanos(1_000);
        assert_eq!(due(t0, t0), 0);
        assert_eq!(due(t0.after(Duration::from_micros(62)), t0), 0);
        assert_eq!(due(t0.after(Duration::from_nanos(62_500)), t0), 1);
        assert_eq!(due(t0.after(Duration::from_secs(3600)), t0), 57_600_000);
        assert_eq!(due(Pts::ZERO, t0), 0);
    }
}
