//! Where the live pipeline's audio comes from and goes: the continuous 16 kHz stream the motion
//! thread reads ([`AudioFeed`]: the capture thread, or samples in memory), and the delayed
//! playback ([`AudioOut`]: an ALSA device, reopened when it comes back).

use std::sync::Arc;
use std::time::Duration;

use crate::audio::capture::Capture;
use crate::audio::{Playback, PlaybackSettings, PlaybackUri, SourceError, SourceErrorKind, Timing};
use crate::clock::{Clock, Pts};

/// What the motion thread reads: a continuous 16 kHz mono stream, sample n captured at
/// `t0 + n/16000` (the capture keeps it continuous: silence fills device gaps).
pub trait AudioFeed: Send {
    /// Moves up to `out.len()` consecutive samples into `out` without blocking.
    fn pop(&mut self, out: &mut [f32]) -> FeedRead;
    /// Capture time of sample 0, once it has been captured.
    fn t0(&self) -> Option<Pts>;
    /// The source's counters, for the status.
    fn status(&self) -> FeedStatus {
        FeedStatus::default()
    }
    /// Whether samples arrive at the rate of a clock (a device) rather than as fast as they are
    /// read (memory): consumers of a live feed that fall behind lose audio, others are waited
    /// for.
    fn is_live(&self) -> bool {
        true
    }
}

/// One [`AudioFeed::pop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedRead {
    pub samples: usize,
    /// Absolute index of the first sample popped (later than expected after samples were
    /// dropped: the motion thread fills the gap with silence).
    pub first_index: u64,
    /// The stream has ended (a file source) and every sample was popped.
    pub end_of_stream: bool,
}

/// What a feed reports about its source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedStatus {
    pub device: Arc<str>,
    pub connected: bool,
    pub xruns: u64,
    pub dropped_samples: u64,
}

impl AudioFeed for Capture {
    fn pop(&mut self, out: &mut [f32]) -> FeedRead {
        let p = Capture::pop(self, out);
        FeedRead {
            samples: p.samples,
            first_index: p.first_index,
            end_of_stream: p.end_of_stream,
        }
    }

    fn t0(&self) -> Option<Pts> {
        Capture::t0(self)
    }

    fn status(&self) -> FeedStatus {
        let s = self.stats();
        FeedStatus {
            device: s.device_name,
            connected: s.device_connected,
            xruns: s.xruns,
            dropped_samples: s.ring_dropped_samples,
        }
    }
}

/// A feed over samples in memory, for tests: everything available at once, t0 = 0.
#[derive(Debug)]
pub struct MemoryFeed {
    samples: Vec<f32>,
    pos: usize,
    name: Arc<str>,
}

impl MemoryFeed {
    pub fn new(samples: Vec<f32>) -> MemoryFeed {
        MemoryFeed {
            samples,
            pos: 0,
            name: Arc::from("memory"),
        }
    }
}

impl AudioFeed for MemoryFeed {
    fn pop(&mut self, out: &mut [f32]) -> FeedRead {
        let n = out.len().min(self.samples.len() - self.pos);
        out[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        let first_index = self.pos as u64;
        self.pos += n;
        FeedRead {
            samples: n,
            first_index,
            end_of_stream: self.pos == self.samples.len(),
        }
    }

    fn t0(&self) -> Option<Pts> {
        Some(Pts::ZERO)
    }

    fn is_live(&self) -> bool {
        false
    }

    fn status(&self) -> FeedStatus {
        FeedStatus {
            device: Arc::clone(&self.name),
            connected: true,
            ..FeedStatus::default()
        }
    }
}

/// Delayed playback: sample n heard at `t0 + n/16000 + budget`.
pub trait AudioOut: Send {
    /// Queues `samples` (the first with index `first_index`; may be empty) and hands the device
    /// what is due. Called every few milliseconds; never blocks.
    fn write(&mut self, samples: &[f32], first_index: u64, timing: Timing);
    /// Device underruns so far.
    fn xruns(&self) -> u64;
}

/// An ALSA playback device that is opened again (every `retry`) when it is missing or goes
/// away; audio due meanwhile is not played. The loss and the return are logged once each.
pub struct PlaybackOut {
    uri: PlaybackUri,
    settings: PlaybackSettings,
    clock: Arc<dyn Clock>,
    retry: Duration,
    device: Option<Playback>,
    next_try: Pts,
    lost_logged: bool,
    /// Underruns of devices closed since.
    past_xruns: u64,
}

impl PlaybackOut {
    /// Opens `uri` now; a missing device is not an error (it is retried).
    ///
    /// # Errors
    /// A device that can never work ([`SourceErrorKind::Fatal`]).
    pub fn open(
        uri: PlaybackUri,
        settings: PlaybackSettings,
        clock: Arc<dyn Clock>,
        retry: Duration,
    ) -> Result<PlaybackOut, SourceError> {
        let mut out = PlaybackOut {
            uri,
            settings,
            next_try: clock.now(),
            clock,
            retry,
            device: None,
            lost_logged: false,
            past_xruns: 0,
        };
        match Playback::open(&out.uri, &out.settings, Arc::clone(&out.clock)) {
            Ok(d) => out.device = Some(d),
            Err(e) if e.kind() == SourceErrorKind::Fatal => return Err(e),
            Err(e) => out.lost(&e),
        }
        Ok(out)
    }

    fn lost(&mut self, e: &SourceError) {
        if !self.lost_logged {
            log::warn!(
                "{}; audio output paused, retrying every {:.1} s",
                crate::util::error_chain(e),
                self.retry.as_secs_f64()
            );
            self.lost_logged = true;
        }
        self.next_try = self.clock.now().after(self.retry);
    }
}

impl AudioOut for PlaybackOut {
    fn write(&mut self, samples: &[f32], first_index: u64, timing: Timing) {
        if self.device.is_none() && self.clock.now() >= self.next_try {
            match Playback::open(&self.uri, &self.settings, Arc::clone(&self.clock)) {
                Ok(d) => {
                    log::warn!("audio output alsa://{} is back", self.uri.device);
                    self.lost_logged = false;
                    self.device = Some(d);
                }
                Err(e) => self.lost(&e),
            }
        }
        let Some(device) = self.device.as_mut() else {
            return;
        };
        if let Err(e) = device.write(samples, first_index, timing) {
            self.past_xruns += device.stats().xruns;
            self.device = None;
            self.lost(&e);
        }
    }

    fn xruns(&self) -> u64 {
        self.past_xruns + self.device.as_ref().map_or(0, |d| d.stats().xruns)
    }
}
