//! Delayed playback: the service's 16 kHz mono audio to an ALSA device, so that sample `n` is
//! heard at `t0 + n/16000 + budget` — the same instant frame `k` (whose samples start at
//! `⌊k·1600/3⌋`) is shown, so lips and sound stay together.
//!
//! # Timing
//!
//! The device plays what it is given after a delay it can tell us (`snd_pcm_delay`: frames
//! queued plus the hardware's own latency). At each [`Playback::write`] the next frame we hand
//! over will be heard at `P = now + delay/rate` (plus the resampler's `half` input samples when
//! the device does not take 16 kHz). The sample that belongs at `P` is
//! `n_due = (P − t0 − budget)·16000`. Our cursor `c` is the index of the next sample we hand
//! over; the error `c − n_due` says:
//!
//! - positive (we are early, e.g. at start, when samples arrive a whole budget ahead): the
//!   device first gets that much silence (up to the room it has; the rest at the next call);
//! - negative (we are late: the caller was stalled, the device ran dry): the late samples are
//!   skipped;
//! - small (device clock drift, measurement jitter): smoothed over [`TAU_S`] s and corrected by
//!   repeating or skipping one sample, at most one per 1000; beyond the gap threshold
//!   (20 ms or two periods) it is fixed at once as above.
//!
//! Samples wait in a fixed FIFO ([`FIFO_SAMPLES`], 4 s) until the device has room. If nothing
//! is there when the device is about to run dry, a period of silence is played in place of the
//! missing samples (they will be late and skipped when they come) so the device keeps running;
//! an underrun that happens anyway is recovered and counted.
//!
//! Call [`Playback::write`] at least every half buffer (the scheduler's output thread does, once
//! per frame; `write` with no samples just keeps the device fed). It never blocks and does not
//! allocate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alsa::pcm::State;
use alsa::Direction;

use super::alsa_pcm::{classify, encode_mono, AlsaSettings, Pcm};
use super::source::SourceError;
use super::stream_resample::StreamResampler;
use super::uri::PlaybackUri;
use super::SAMPLE_RATE;
use crate::clock::{Clock, Pts};

/// Samples (16 kHz) that can wait for the device: 4 s.
pub const FIFO_SAMPLES: usize = 4 * 16_000;
/// Smoothing time constant of the timing error.
pub const TAU_S: f64 = 2.0;
/// Smoothed error (samples) beyond which single samples are repeated or skipped.
const DEADBAND: f64 = 2.0;
/// At least this many samples between two single-sample corrections.
const MIN_FIX_SPACING: u64 = 1000;
/// Smallest error fixed at once: 20 ms.
const MIN_GAP: i64 = 320;
/// Samples converted per step.
const STEP: usize = 256;

/// When sample `n` is due: `t0 + n/16000 + budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Capture time of sample 0 (`Capture::t0`).
    pub t0: Pts,
    /// The fixed audio-to-picture latency.
    pub budget: Duration,
}

/// What one [`Playback::write`] did, in 16 kHz samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayReport {
    /// Silence played before early samples.
    pub padded: u64,
    /// Late samples skipped.
    pub dropped: u64,
    /// Silence played because nothing was there (the device would have run dry).
    pub filled: u64,
    /// Our samples handed to the device.
    pub played: u64,
    /// Samples that did not fit in the FIFO (written too far ahead) and were discarded.
    pub overflow: u64,
}

impl PlayReport {
    /// Everything handed to the device (samples and silence), in 16 kHz samples.
    pub fn to_device(&self) -> u64 {
        self.padded + self.filled + self.played
    }

    fn add(&mut self, o: &PlayReport) {
        self.padded += o.padded;
        self.dropped += o.dropped;
        self.filled += o.filled;
        self.played += o.played;
        self.overflow += o.overflow;
    }
}

/// Totals since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    pub totals: PlayReport,
    /// Underruns recovered.
    pub xruns: u64,
    /// Single samples repeated / skipped to follow the device clock.
    pub drift_inserted: u64,
    pub drift_dropped: u64,
}

/// How to open the playback device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaybackSettings {
    /// Period, buffer and preferred format (16 kHz mono by default; the device may choose
    /// another rate and channel count, which we convert to).
    pub alsa: AlsaSettings,
}

/// An open playback device with its queue; see the module documentation.
pub struct Playback {
    pcm: Pcm,
    clock: Arc<dyn Clock>,
    resampler: StreamResampler,
    /// Samples waiting, the first one with index `fifo_first`.
    fifo: VecDeque<f32>,
    fifo_first: u64,
    /// Index of the next sample handed to the device; `None` until the first write.
    cursor: Option<u64>,
    /// Timing is resynchronized exactly at the next write (start, after an underrun).
    resync: bool,
    err: f64,
    since_fix: u64,
    gap: i64,
    step: Vec<f32>,
    device: Vec<f32>,
    bytes: Vec<u8>,
    stats: PlaybackStats,
}

impl Playback {
    /// Opens `uri` for playback.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when the device is missing or busy (retry later),
    /// [`SourceError::Config`] when it takes no format we can convert to,
    /// [`SourceError::Failed`] otherwise.
    pub fn open(
        uri: &PlaybackUri,
        settings: &PlaybackSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Playback, SourceError> {
        let pcm = Pcm::open(&uri.device, Direction::Playback, &settings.alsa)?;
        let resampler = StreamResampler::new(SAMPLE_RATE, pcm.rate, STEP).ok_or_else(|| {
            SourceError::Config {
                name: pcm.name.clone(),
                detail: "the device reports a sample rate of 0 Hz".into(),
            }
        })?;
        let device = vec![0.0; resampler.max_output(STEP)];
        let bytes = vec![0; device.len() * pcm.frame_bytes()];
        let period16 = pcm.period as u64 * 16_000 / u64::from(pcm.rate);
        let gap = MIN_GAP.max(2 * period16 as i64);
        Ok(Playback {
            pcm,
            clock,
            resampler,
            fifo: VecDeque::with_capacity(FIFO_SAMPLES),
            fifo_first: 0,
            cursor: None,
            resync: true,
            err: 0.0,
            since_fix: 0,
            gap,
            step: vec![0.0; STEP + 1],
            device,
            bytes,
            stats: PlaybackStats::default(),
        })
    }

    /// `alsa://DEVICE`.
    pub fn name(&self) -> &str {
        &self.pcm.name
    }

    /// The device's rate and channel count.
    pub fn device_format(&self) -> (u32, usize) {
        (self.pcm.rate, self.pcm.channels)
    }

    pub fn stats(&self) -> PlaybackStats {
        self.stats
    }

    /// Queues `samples` (16 kHz mono; the first has index `first_index`) and hands the device
    /// what is due; see the module documentation. `samples` may be empty. Never blocks, does
    /// not allocate.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when the device went away (reopen it later),
    /// [`SourceError::Failed`] for other device errors.
    pub fn write(
        &mut self,
        samples: &[f32],
        first_index: u64,
        timing: Timing,
    ) -> Result<PlayReport, SourceError> {
        let mut report = PlayReport::default();
        self.enqueue(samples, first_index, &mut report);
        self.feed(timing, &mut report)?;
        self.stats.totals.add(&report);
        Ok(report)
    }

    /// Appends to the FIFO, keeping it one run of consecutive indices: a jump forward is
    /// filled with silence, samples already behind the cursor are dropped.
    fn enqueue(&mut self, samples: &[f32], first_index: u64, report: &mut PlayReport) {
        if samples.is_empty() {
            return;
        }
        if self.cursor.is_none() {
            self.cursor = Some(first_index);
            self.fifo_first = first_index;
        }
        let mut first = first_index;
        let mut samples = samples;
        if self.fifo.is_empty() {
            self.fifo_first = self.fifo_first.max(self.cursor.unwrap_or(0));
        }
        let end = self.fifo_first + self.fifo.len() as u64;
        if first < end {
            // Overlaps what is queued or what was played: keep only what is new.
            let skip = ((end - first) as usize).min(samples.len());
            report.dropped += skip as u64;
            samples = &samples[skip..];
            first = end;
        }
        if samples.is_empty() {
            return;
        }
        let room = FIFO_SAMPLES - self.fifo.len();
        let gap = (first - end) as usize;
        if gap > 0 {
            if self.fifo.is_empty() {
                self.fifo_first = first;
            } else {
                let k = gap.min(room);
                self.fifo.extend(std::iter::repeat_n(0.0, k));
            }
        }
        let room = FIFO_SAMPLES - self.fifo.len();
        let k = samples.len().min(room);
        self.fifo.extend(&samples[..k]);
        report.overflow += (samples.len() - k) as u64;
    }

    /// Samples (16 kHz) that fit in `frames` device frames after conversion.
    fn fits(&self, frames: usize) -> usize {
        if self.resampler.is_identity() {
            return frames;
        }
        let (to, from) = (u64::from(self.pcm.rate), u64::from(SAMPLE_RATE));
        (frames.saturating_sub(2) as u64 * from / to).saturating_sub(1) as usize
    }

    /// Hands the device padding, samples and filler as the timing requires.
    fn feed(&mut self, timing: Timing, report: &mut PlayReport) -> Result<(), SourceError> {
        let Some(mut cursor) = self.cursor else {
            return Ok(());
        };
        if self.pcm.pcm.state() == State::XRun {
            self.underrun()?;
        }
        let (avail, delay) = match self.pcm.pcm.avail_delay() {
            Ok(v) => v,
            Err(e) if e.errno() == libc::EPIPE => {
                self.underrun()?;
                self.pcm
                    .pcm
                    .avail_delay()
                    .map_err(|e| classify(&self.pcm.name, e))?
            }
            Err(e) => return Err(classify(&self.pcm.name, e)),
        };
        let mut room = self.fits(usize::try_from(avail.max(0)).unwrap_or(0));
        // When the next sample we hand over will be heard, and which sample belongs there.
        let now = self.clock.now();
        let heard = now.nanos() as i128
            + i128::from(delay.max(0)) * 1_000_000_000 / i128::from(self.pcm.rate)
            + self.resampler.delay_input_samples() as i128 * 1_000_000_000 / 16_000;
        let origin = timing.t0.after(timing.budget).nanos() as i128;
        let n_due = (heard - origin) * 16_000 / 1_000_000_000;
        let e = cursor as i128 - n_due;
        let mut insert = false;
        if self.resync || e.abs() > i128::from(self.gap) {
            self.resync = false;
            self.err = 0.0;
            if e > 0 {
                let pad = (e as u64).min(room as u64) as usize;
                self.play_silence(pad)?;
                report.padded += pad as u64;
                room -= pad;
                if (pad as i128) < e {
                    // Still early: the rest of the padding at the next call.
                    self.resync = true;
                    return Ok(());
                }
            } else if e < 0 {
                let skip = (-e) as u64;
                report.dropped += self.skip_to(cursor + skip);
                cursor += skip;
            }
        } else {
            // Smooth over about TAU_S of what the device is about to take.
            let taking = room.min(self.fifo.len()).max(1) as f64;
            let alpha = (taking / 16_000.0 / TAU_S).min(1.0);
            self.err += alpha * (e as f64 - self.err);
            if self.since_fix >= MIN_FIX_SPACING {
                if self.err > DEADBAND {
                    // Early by a little: hand one sample twice.
                    insert = true;
                    self.err -= 1.0;
                    self.stats.drift_inserted += 1;
                    self.since_fix = 0;
                } else if self.err < -DEADBAND {
                    // Late by a little: skip one sample.
                    report.dropped += self.skip_to(cursor + 1);
                    cursor += 1;
                    self.err += 1.0;
                    self.stats.drift_dropped += 1;
                    self.since_fix = 0;
                }
            }
        }
        // Drop what is behind the cursor, fill a hole before the queued samples.
        report.dropped += self.skip_to(cursor);
        if !self.fifo.is_empty() && self.fifo_first > cursor {
            let hole = ((self.fifo_first - cursor) as usize).min(room);
            self.play_silence(hole)?;
            report.filled += hole as u64;
            room -= hole;
            cursor += hole as u64;
        }
        // Our samples.
        let mut played = 0usize;
        while played < room && !self.fifo.is_empty() && self.fifo_first == cursor {
            let k = STEP.min(room - played).min(self.fifo.len());
            for (dst, src) in self.step[..k].iter_mut().zip(self.fifo.drain(..k)) {
                *dst = src;
            }
            self.fifo_first += k as u64;
            cursor += k as u64;
            played += k;
            if insert && played < room {
                // Repeat the last sample of the first step once.
                self.step[k] = self.step[k - 1];
                self.play_step(k + 1)?;
                played += 1;
                insert = false;
            } else {
                self.play_step(k)?;
            }
        }
        report.played += played as u64;
        self.since_fix += played as u64;
        // About to run dry with nothing to play: a period of silence in place of the missing
        // samples (they will be late).
        let handed = report.padded + report.filled + played as u64;
        let queued = delay.max(0) as u64 + handed * u64::from(self.pcm.rate) / 16_000;
        if self.fifo.is_empty() && queued < self.pcm.period as u64 && room > played {
            let fill = self.fits(self.pcm.period).min(room - played);
            self.play_silence(fill)?;
            report.filled += fill as u64;
            cursor += fill as u64;
        }
        self.cursor = Some(cursor);
        Ok(())
    }

    /// Drops queued samples below `index`; returns how many.
    fn skip_to(&mut self, index: u64) -> u64 {
        if self.fifo_first >= index {
            return 0;
        }
        let k = ((index - self.fifo_first) as usize).min(self.fifo.len());
        self.fifo.drain(..k);
        self.fifo_first = index;
        k as u64
    }

    fn play_silence(&mut self, n: usize) -> Result<(), SourceError> {
        let mut left = n;
        while left > 0 {
            let k = left.min(STEP);
            self.step[..k].fill(0.0);
            self.play_step(k)?;
            left -= k;
        }
        Ok(())
    }

    /// Converts `self.step[..n]` (n ≤ STEP + 1) and writes it to the device.
    fn play_step(&mut self, n: usize) -> Result<(), SourceError> {
        let mut done = 0;
        while done < n {
            let k = (n - done).min(STEP);
            let frames = self
                .resampler
                .process(&self.step[done..done + k], &mut self.device);
            done += k;
            if frames == 0 {
                continue;
            }
            let fb = self.pcm.frame_bytes();
            encode_mono(
                self.pcm.format,
                self.pcm.channels,
                &self.device[..frames],
                &mut self.bytes[..frames * fb],
            );
            let mut off = 0;
            while off < frames {
                let r = self
                    .pcm
                    .pcm
                    .io_bytes()
                    .writei(&self.bytes[off * fb..frames * fb]);
                match r {
                    Ok(w) => off += w,
                    Err(e) if e.errno() == libc::EAGAIN => {
                        // No room after all (the estimate was off by a frame or two): the rest
                        // is dropped rather than waiting.
                        break;
                    }
                    Err(e) if e.errno() == libc::EPIPE => {
                        self.underrun()?;
                    }
                    Err(e) => return Err(classify(&self.pcm.name, e)),
                }
            }
        }
        Ok(())
    }

    /// Recovers an underrun, counts it and resynchronizes at the next write.
    fn underrun(&mut self) -> Result<(), SourceError> {
        self.stats.xruns += 1;
        self.resync = true;
        self.pcm
            .recover(alsa::Error::new("snd_pcm_writei", libc::EPIPE))
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        if self.pcm.pcm.state() == State::Running {
            let _ = self.pcm.pcm.drop();
        }
    }
}
