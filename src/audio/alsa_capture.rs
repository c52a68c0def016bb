//! [`AlsaCapture`]: live capture from an ALSA device as an [`AudioSource`] (see
//! [`super::alsa_pcm`] for opening, formats, timestamps and errors).

use std::time::Duration;

use alsa::pcm::State;
use alsa::Direction;

use super::alsa_pcm::{classify, decode_mono, AlsaSettings, Pcm, QuietErrors};
use super::source::{AudioSource, Captured, SourceError};
use crate::clock::{MonotonicClock, Pts};

/// Converts an ALSA timestamp to [`Pts`] (`None` for the zero "no timestamp").
fn timespec_pts(ts: alsa::timespec) -> Option<Pts> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    (ns != 0).then_some(Pts::from_nanos(ns))
}

/// Live capture from an ALSA device: mono (channel mean) float samples at the device's rate,
/// stamped with their capture time on `CLOCK_MONOTONIC`.
pub struct AlsaCapture {
    pcm: Pcm,
    /// One period of interleaved device frames.
    bytes: Vec<u8>,
    xruns: u64,
    /// Expected capture time of the next sample, to measure what an xrun lost.
    next_time: Option<Pts>,
    /// An xrun happened since the last delivered samples.
    lost_pending: bool,
}

impl AlsaCapture {
    /// Opens `device` (an ALSA name such as `default` or `hw:1,0`) for capture and starts it.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when the device is missing or busy, [`SourceError::Config`]
    /// when it offers no usable format, [`SourceError::Failed`] otherwise.
    pub fn open(device: &str, settings: &AlsaSettings) -> Result<AlsaCapture, SourceError> {
        let pcm = Pcm::open(device, Direction::Capture, settings)?;
        {
            let _quiet = QuietErrors::new();
            pcm.pcm.prepare().map_err(|e| classify(&pcm.name, e))?;
            pcm.pcm.start().map_err(|e| classify(&pcm.name, e))?;
        }
        let bytes = vec![0u8; pcm.period * pcm.frame_bytes()];
        Ok(AlsaCapture {
            pcm,
            bytes,
            xruns: 0,
            next_time: None,
            lost_pending: false,
        })
    }

    /// `alsa://DEVICE`.
    pub fn name(&self) -> &str {
        &self.pcm.name
    }

    /// Overruns recovered so far.
    pub fn xruns(&self) -> u64 {
        self.xruns
    }

    /// The device's channel count (before mixing to mono).
    pub fn channels(&self) -> usize {
        self.pcm.channels
    }

    /// Device frames per period.
    pub fn period_frames(&self) -> usize {
        self.pcm.period
    }

    /// Device frames in the buffer.
    pub fn buffer_frames(&self) -> usize {
        self.pcm.buffer
    }

    /// Whether capture times come from the device (else from the clock).
    pub fn has_device_timestamps(&self) -> bool {
        self.pcm.htstamp
    }

    /// Capture time of the first of `n` frames just read.
    fn first_frame_time(&self, n: usize) -> Pts {
        let rate = u64::from(self.pcm.rate);
        let back = |now: Pts, frames: u64| {
            Pts::from_nanos(now.nanos().saturating_sub(frames * 1_000_000_000 / rate))
        };
        let now = MonotonicClock::read();
        if self.pcm.htstamp {
            if let Ok(status) = self.pcm.pcm.status() {
                if let Some(t) = timespec_pts(status.get_htstamp()) {
                    let avail = u64::try_from(status.get_avail().max(0)).unwrap_or(0);
                    let t_first = back(t, avail + n as u64);
                    // Trust it only when it is plausible: not in the future, not older than
                    // the buffer plus a second.
                    let oldest = back(now, (self.pcm.buffer + n) as u64 + rate);
                    if t_first <= now && t_first >= oldest {
                        return t_first;
                    }
                }
            }
        }
        let delay = self.pcm.pcm.delay().unwrap_or(0);
        back(now, u64::try_from(delay.max(0)).unwrap_or(0) + n as u64)
    }

    /// Handles a read error: recovers xruns (counted, marked as a loss), returns the rest.
    fn read_error(&mut self, e: alsa::Error) -> Result<(), SourceError> {
        if matches!(e.errno(), libc::EPIPE | libc::ESTRPIPE) {
            self.xruns += 1;
            self.lost_pending = true;
            self.pcm.recover(e)?;
            return self
                .pcm
                .pcm
                .start()
                .map_err(|e| classify(&self.pcm.name, e));
        }
        Err(classify(&self.pcm.name, e))
    }
}

impl AudioSource for AlsaCapture {
    /// Fills `out` from the device (waiting for it; at most about one period per wait). Gives
    /// up with [`SourceError::Failed`] when the device delivers nothing for a second (or four
    /// buffers, whichever is longer). Does not allocate.
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        let fb = self.pcm.frame_bytes();
        let period_ms = (self.pcm.period as u64 * 1000 / u64::from(self.pcm.rate)).max(1);
        let wait_ms = u32::try_from((2 * period_ms).max(10)).unwrap_or(u32::MAX);
        let stall =
            Duration::from_secs(1).max(self.pcm.frames_duration(4 * self.pcm.buffer as i64));
        let mut idle = Duration::ZERO;
        let mut got = 0;
        let mut first_time = None;
        while got < out.len() {
            match self.pcm.pcm.wait(Some(wait_ms)) {
                Ok(true) => {}
                Ok(false) => {
                    idle += Duration::from_millis(u64::from(wait_ms));
                    if idle >= stall {
                        return Err(SourceError::Failed {
                            name: self.pcm.name.clone(),
                            source: format!(
                                "the device delivered no audio for {} ms",
                                idle.as_millis()
                            )
                            .into(),
                        });
                    }
                    continue;
                }
                Err(e) => {
                    self.read_error(e)?;
                    // Samples before the xrun are not contiguous with what follows.
                    got = 0;
                    first_time = None;
                    continue;
                }
            }
            let frames = (out.len() - got).min(self.pcm.period);
            let result = self
                .pcm
                .pcm
                .io_bytes()
                .readi(&mut self.bytes[..frames * fb]);
            match result {
                Ok(0) => {}
                Ok(n) => {
                    idle = Duration::ZERO;
                    if first_time.is_none() {
                        first_time = Some(self.first_frame_time(n));
                    }
                    decode_mono(
                        self.pcm.format,
                        self.pcm.channels,
                        &self.bytes[..n * fb],
                        &mut out[got..got + n],
                    );
                    got += n;
                }
                Err(e) if e.errno() == libc::EAGAIN => {}
                Err(e) => {
                    self.read_error(e)?;
                    got = 0;
                    first_time = None;
                }
            }
        }
        let timestamp = first_time.unwrap_or_else(MonotonicClock::read);
        let rate = u64::from(self.pcm.rate);
        let lost = if std::mem::take(&mut self.lost_pending) {
            let gap = self
                .next_time
                .map(|next| timestamp.nanos().saturating_sub(next.nanos()))
                .unwrap_or(0);
            (u128::from(gap) * u128::from(rate) / 1_000_000_000).max(1) as u64
        } else {
            0
        };
        self.next_time = Some(timestamp.after(self.pcm.frames_duration(got as i64)));
        Ok(Captured {
            samples: got,
            timestamp,
            lost,
        })
    }

    fn sample_rate(&self) -> u32 {
        self.pcm.rate
    }
}

impl Drop for AlsaCapture {
    fn drop(&mut self) {
        let _quiet = QuietErrors::new();
        if self.pcm.pcm.state() == State::Running {
            let _ = self.pcm.pcm.drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_device_is_unavailable() {
        match AlsaCapture::open("moda_edge_no_such_device", &AlsaSettings::default()) {
            Err(e @ SourceError::Unavailable { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "audio source alsa://moda_edge_no_such_device is not available"
                );
                let cause = std::error::Error::source(&e).unwrap().to_string();
                assert!(cause.contains("No such file or directory"), "{cause}");
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("opened a device that does not exist"),
        }
        assert!(matches!(
            AlsaCapture::open("a\0b", &AlsaSettings::default()),
            Err(SourceError::Config { .. })
        ));
    }
}
